"""Real failures through the real CLI: a full disk, Ctrl-C, a bad product in a batch, two processes.

Each test runs ``python -m nimbus`` in a subprocess on real-format synthetic products and checks
the promise that matters: nothing incomplete under a final name, the other products still done,
the work done once.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from nimbus.validate import is_valid, validate_path
from onnx_builders import make_model

CHANNELS = ("B02", "B03", "B04", "B08")
SUFFIXES = ("_classes.tif", "_probabilities.tif", "_uncertainty.tif", "_quicklook.png", "_classes.qml", "_classes.tif.aux.xml", "_item.json")
REPORT = "nimbus-segment-report.jsonl"  # the run's log, not an output of a product


def _cli(*args: str, fsize: int | None = None, **kw) -> subprocess.CompletedProcess:
    def limit() -> None:  # a disk that is full after `fsize` bytes per file, for real (no root needed)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "nimbus", *map(str, args)], capture_output=True, text=True, timeout=600,
        preexec_fn=limit if fsize else None, env=env, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = np.random.default_rng(3).normal(0, 1e-3, (4, len(CHANNELS)))
    return make_model(tmp_path_factory.mktemp("model") / "tiny.onnx", channels=CHANNELS, kind="softmax", weights=w, window=128, name="tiny")


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from nimbus.synthetic import make_product

    root = tmp_path_factory.mktemp("products")
    return [Path(make_product(root, size=240, seed=s).path) for s in (11, 12, 13)]


@pytest.fixture(scope="module")
def big_product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nimbus.synthetic import make_product

    return Path(make_product(tmp_path_factory.mktemp("big"), size=1098, seed=21).path)


def _finals(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*") if not p.name.startswith(".") and p.name != REPORT) if out.exists() else []


def _all_or_nothing(out: Path) -> str:
    """'all' when every output exists and validates, 'none' when none exists; fails otherwise."""
    finals = _finals(out)
    if not finals:
        return "none"
    names = sorted(p.name[p.name.index("_tiny-") + len("_tiny-v1"):] for p in finals)
    assert names == sorted(SUFFIXES), f"a partial set of outputs: {names}"
    for p in finals:
        validate_path(p)
    return "all"


# ----------------------------------------------------------------------------- disk full


def test_segment_on_a_full_disk_fails_loudly_and_leaves_nothing(tmp_path: Path, model: Path, products: list[Path]) -> None:
    product = products[0]
    outcomes = []
    for limit in (4_000, 30_000, 80_000, 150_000, 400_000):
        out = tmp_path / f"out{limit}"
        res = _cli("segment", product, "--model", model, "--out", out, "--probabilities", "float16", "--uncertainty",
                   "--quicklook", fsize=limit)  # fmt: skip
        state = _all_or_nothing(out)
        if res.returncode == 0:
            assert state == "all", res.stderr
        else:
            assert state == "none", res.stderr
            assert "Traceback" not in res.stderr and product.name in res.stderr
            assert "disk" in res.stderr or "File too large" in res.stderr, res.stderr
            assert not [p for p in out.glob(".*")], "temporary files and locks are removed"
            # a re-run with space redoes it and produces valid outputs
            again = _cli("segment", product, "--model", model, "--out", out, "--probabilities", "float16", "--uncertainty", "--quicklook")
            assert again.returncode == 0, again.stderr
            assert "skipped (exists" not in again.stdout and _all_or_nothing(out) == "all"
        outcomes.append(res.returncode)
    assert any(outcomes), "at least one limit must really fill the disk"


def test_invalid_final_file_is_redone_not_skipped(tmp_path: Path, model: Path, products: list[Path]) -> None:
    out = tmp_path / "out"
    assert _cli("segment", products[0], "--model", model, "--out", out).returncode == 0
    classes = next(out.glob("*_classes.tif"))
    classes.write_bytes(classes.read_bytes()[: classes.stat().st_size // 2])  # e.g. an old run's broken file
    res = _cli("segment", products[0], "--model", model, "--out", out)
    assert res.returncode == 0 and "skipped (exists" not in res.stdout
    assert is_valid(classes)
    res = _cli("segment", products[0], "--model", model, "--out", out)
    assert "skipped (exists" in res.stdout, "a complete map is skipped"


def test_extract_cog_on_a_full_disk(tmp_path: Path) -> None:
    from nimbus.synthetic import make_product

    src = tmp_path / "zips"
    make_product(src, size=240, seed=5, zipped=True)
    store = tmp_path / "store"
    res = _cli("extract", src, store, "--cog", fsize=60_000)
    assert res.returncode != 0 and "Traceback" not in res.stderr
    assert not [p for p in store.rglob("*") if p.is_file() and ".tmp-" not in str(p)], "no product folder under its final name"
    res = _cli("extract", src, store, "--cog")
    assert res.returncode == 0, res.stderr
    (folder,) = [p for p in store.glob("*/*") if p.is_dir() and not p.name.startswith(".")]
    tifs = list(folder.rglob("*.tif"))
    assert len(tifs) >= 13 and all(is_valid(t) for t in tifs)


def test_arrays_on_a_full_disk(tmp_path: Path, products: list[Path]) -> None:
    out = tmp_path / "arrays"
    res = _cli("arrays", products[0], out, "--res", 20, fsize=100_000)
    assert res.returncode != 0 and "Traceback" not in res.stderr and "disk" in res.stderr
    assert _finals(out) == []
    res = _cli("arrays", products[0], out, "--res", 20)
    assert res.returncode == 0 and "written" in res.stdout, res.stderr
    (folder,) = _finals(out)
    validate_path(folder)
    assert np.load(folder / "bands.npy", mmap_mode="r").shape[1:] == (120, 120)


# ----------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("after", [0.0, 0.15, 0.4, 0.8])
def test_sigint_while_writing_leaves_all_or_nothing(tmp_path: Path, model: Path, big_product: Path, after: float) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nimbus", "segment", str(big_product), "--model", str(model), "--out", str(out),
           "--probabilities", "float16", "--uncertainty", "--quicklook"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # wait until the raw outputs are being written
        if out.exists() and any(".raw-" in p.name for p in out.iterdir()):
            break
        time.sleep(0.005)
    time.sleep(after)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    state = _all_or_nothing(out)
    if proc.returncode == 0:
        assert state == "all"
    else:
        assert proc.returncode == 130 and "interrupted" in err, err
        assert state == "none"
    assert not [p.name for p in out.glob(".*")], "no temporary file or lock is left behind"


# ----------------------------------------------------------------------------- batch isolation


def _truncated_band(src: Path, dst_root: Path) -> Path:
    dst = dst_root / src.name
    shutil.copytree(src, dst)
    (band,) = [p for p in dst.rglob("*_B04.jp2")]
    band.write_bytes(band.read_bytes()[: band.stat().st_size // 2])
    return dst


def _missing_band(src: Path, dst_root: Path) -> Path:
    dst = dst_root / src.name
    shutil.copytree(src, dst)
    for p in dst.rglob("*_B08.jp2"):
        p.unlink()
    return dst


def _corrupt_zip(src: Path, dst_root: Path) -> Path:
    z = dst_root / (src.name.replace(".SAFE", ".zip"))
    shutil.make_archive(str(z.with_suffix("")), "zip", src.parent, src.name)
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 3])
    return z


def _not_a_product(src: Path, dst_root: Path) -> Path:
    p = dst_root / "holiday-photos"
    p.mkdir()
    (p / "a.txt").write_text("no product here")
    return p


@pytest.mark.parametrize("make_bad", [_truncated_band, _missing_band, _corrupt_zip, _not_a_product])
def test_bad_middle_product_does_not_stop_the_batch(tmp_path: Path, model: Path, products: list[Path], make_bad) -> None:
    bad = make_bad(products[1], tmp_path)
    out = tmp_path / "maps"
    res = _cli("segment", products[0], bad, products[2], "--model", model, "--out", out)
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("nimbus: error:")]
    assert len(errors) == 2 and errors[0].startswith(f"nimbus: error: {bad}: ")
    assert "See previous exception" not in errors[0] or "cause:" in errors[0], "the root cause is shown"
    assert errors[-1].startswith("nimbus: error: 1 of 3 product(s) failed (2 done, 0 skipped)")
    maps = sorted(out.glob("*_classes.tif"))
    assert len(maps) == 2 and all(is_valid(m) for m in maps)
    ids = {p.name.split(".")[0] for p in (products[0], products[2])}
    assert {m.name.split("_tiny")[0] for m in maps} == ids


def test_debug_shows_the_failure_traceback(tmp_path: Path, model: Path, products: list[Path]) -> None:
    bad = _truncated_band(products[1], tmp_path)
    res = _cli("segment", bad, "--model", model, "--out", tmp_path / "o", "--debug")
    assert res.returncode == 1
    assert "Traceback" in res.stderr and "_read_raw" in res.stderr, "the traceback of the failure, not of the summary"


def test_truncated_jpeg2000_names_the_real_cause(tmp_path: Path, model: Path, products: list[Path]) -> None:
    bad = _truncated_band(products[1], tmp_path)
    res = _cli("segment", bad, "--model", model, "--out", tmp_path / "o")
    line = next(x for x in res.stderr.splitlines() if x.startswith(f"nimbus: error: {bad}"))
    assert "B04" in line and "corrupt or truncated" in line
    assert "cause:" in line or "See previous exception" not in line


def test_model_and_product_checked_before_any_work(tmp_path: Path, products: list[Path]) -> None:
    l1c_model = make_model(tmp_path / "l1c.onnx", channels=("B02", "B03", "B04", "B10"), kind="softmax")
    from nimbus.synthetic import make_product

    l2a = make_product(tmp_path / "l2a", size=240, level="L2A", seed=4).path
    res = _cli("segment", l2a, "--model", l1c_model, "--out", tmp_path / "o")
    assert res.returncode == 1 and "B10" in res.stderr and "L2A" in res.stderr
    assert _finals(tmp_path / "o") == []


# ----------------------------------------------------------------------------- two processes


def test_two_processes_on_one_output_do_the_work_once(tmp_path: Path, model: Path, big_product: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nimbus", "segment", str(big_product), "--model", str(model), "--out", str(out), "--probabilities"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    done = [o for o, _ in results if "windows" in o]
    skipped = [o for o, _ in results if "skipped (exists" in o]
    assert len(done) == 1 and len(skipped) == 1, results
    assert any("nimbus: waiting: pid" in e for _, e in results), "the second process waited on the lock"
    assert _finals(out) and all(is_valid(p) for p in _finals(out))
    assert not list(out.glob(".*.lock"))


# ----------------------------------------------------------------------------- a really full filesystem (root only)


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 160 kB tmpfs mounted for the test (root only; skipped elsewhere)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_segment_and_arrays_on_a_full_tmpfs(small_fs: Path, model: Path, products: list[Path]) -> None:
    out = small_fs / "maps"
    res = _cli("segment", products[0], "--model", model, "--out", out, "--probabilities", "float16", "--uncertainty", "--quicklook")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "No space left" in res.stderr or "disk" in res.stderr, res.stderr
    assert _all_or_nothing(out) == "none" and not list(out.glob(".*"))
    arrays = small_fs / "arrays"
    res = _cli("arrays", products[0], arrays, "--res", 10)  # 13 x 240 x 240 x 2 bytes: far beyond 160 kB
    assert res.returncode == 1 and "Traceback" not in res.stderr and res.returncode != -7, res.stderr  # not SIGBUS
    assert _finals(arrays) == []
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
    res = _cli("segment", products[0], "--model", model, "--out", out, "--probabilities", "float16", "--uncertainty", "--quicklook")
    assert res.returncode == 0 and _all_or_nothing(out) == "all", res.stderr
    res = _cli("arrays", products[0], arrays, "--res", 10)
    assert res.returncode == 0, res.stderr
    validate_path(_finals(arrays)[0])


def test_a_killed_run_leaves_its_lock_and_the_next_run_clears_its_temporaries(tmp_path: Path, model: Path, big_product: Path) -> None:
    """SIGKILL (no cleanup possible) mid-write: the next run takes the dead process's lock over,
    removes its temporaries and writes complete outputs."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "nimbus", "segment", str(big_product), "--model", str(model), "--out", str(out), "--probabilities"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if out.exists() and [p for p in out.glob(".*") if not p.name.endswith(".lock")]:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    left = sorted(p.name for p in out.glob(".*"))
    if not any(n.endswith(".lock") for n in left):
        pytest.skip("the run finished before it could be killed")
    assert _finals(out) == [] or all(is_valid(p) for p in _finals(out))
    again = _cli("segment", big_product, "--model", model, "--out", out, "--probabilities")
    assert again.returncode == 0, again.stderr
    assert not [p.name for p in out.glob(".*")], "the dead run's lock and temporaries are gone"
    assert _finals(out) and all(is_valid(p) for p in _finals(out))
