"""Batches on real Dask processes: a `dask scheduler` and `dask worker` processes bound to 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

pytest.importorskip("distributed")

from nimbus.engine.records import read_report  # noqa: E402

RULES = "rules"


def _start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _wait_workers(scheduler_file: Path, n: int, timeout: float = 90.0) -> None:
    from distributed import Client

    t0 = time.time()
    while not scheduler_file.exists():
        if time.time() - t0 > timeout:
            raise TimeoutError("the scheduler did not start")
        time.sleep(0.2)
    with Client(scheduler_file=str(scheduler_file), timeout="30s") as c:
        c.wait_for_workers(n, timeout=timeout)


class Cluster:
    """A real scheduler process and worker processes (no nanny: a killed worker stays dead)."""

    def __init__(self, tmp: Path, workers: int = 2, resources: dict[int, str] | None = None) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.file = tmp / "scheduler.json"
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.procs.append(_start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                  "--no-dashboard", "--scheduler-file", str(self.file)], tmp / "scheduler.log"))  # fmt: skip
        for i in range(workers):
            w = _start([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(self.file), "--host", "127.0.0.1",
                        "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                        *(["--resources", resources[i]] if resources and i in resources else [])], tmp / f"worker{i}.log")  # fmt: skip
            self.workers.append(w)
            self.procs.append(w)
        _wait_workers(self.file, workers)

    def close(self) -> None:
        _stop(self.procs)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    c = Cluster(tmp_path_factory.mktemp("dask"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    from nimbus.synthetic import make_product

    root = tmp_path_factory.mktemp("products")
    return [make_product(root, size=180, seed=s, date=f"2023-07-{10 + s:02d}").path for s in range(3)]


def _nimbus(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nimbus", *args], capture_output=True, text=True, timeout=timeout)


def _maps(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.glob("*_classes.tif"))}


def _same_maps(a: Path, b: Path) -> None:
    ma, mb = _maps(a), _maps(b)
    assert ma.keys() == mb.keys() and ma
    for name in ma:
        with rasterio.open(ma[name]) as da, rasterio.open(mb[name]) as db:
            assert np.array_equal(da.read(), db.read()), name
            assert da.transform == db.transform and da.crs == db.crs
            assert da.tags() == db.tags()
            for i in (1,):
                assert [o for o in da.overviews(i)] == [o for o in db.overviews(i)]


def test_scheduler_outputs_equal_single_process(cluster: Cluster, products: list[Path], tmp_path: Path) -> None:
    single = _nimbus("segment", *map(str, products), "--model", RULES, "--out", str(tmp_path / "single"), "--nostac_item")
    assert single.returncode == 0, single.stderr
    dist = _nimbus("segment", *map(str, products), "--model", RULES, "--out", str(tmp_path / "dask"), "--nostac_item",
                   "--scheduler", str(cluster.file))  # fmt: skip
    assert dist.returncode == 0, dist.stderr
    _same_maps(tmp_path / "single", tmp_path / "dask")
    for name in _maps(tmp_path / "dask"):  # bit for bit, not just the pixels
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes()
    recs = read_report(tmp_path / "dask" / "nimbus-segment-report.jsonl")
    assert sorted(r["status"] for r in recs) == ["done"] * 3
    assert {r["worker"].split("://")[0] for r in recs} == {"tcp"}  # ran on the workers, not here
    # a re-run skips what is done and complete
    again = _nimbus("segment", *map(str, products), "--model", RULES, "--out", str(tmp_path / "dask"), "--nostac_item",
                    "--scheduler", str(cluster.file))  # fmt: skip
    assert again.returncode == 0 and again.stdout.count("skipped") == 3


def test_environment_variable_names_the_scheduler(cluster: Cluster, products: list[Path], tmp_path: Path) -> None:
    addr = json.loads(cluster.file.read_text())["address"]
    env = dict(os.environ, DASK_SCHEDULER_ADDRESS=addr)
    r = subprocess.run([sys.executable, "-m", "nimbus", "segment", str(products[0]), "--model", RULES, "--out", str(tmp_path),
                        "--nostac_item"], capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (rec,) = read_report(tmp_path / "nimbus-segment-report.jsonl")
    assert rec["worker"].startswith("tcp://127.0.0.1:")


def test_broken_product_is_reported_not_retried(cluster: Cluster, products: list[Path], tmp_path: Path) -> None:
    import shutil

    from distributed import Client

    broken = tmp_path / "in" / products[1].name
    shutil.copytree(products[1], broken)
    jp2 = sorted(broken.rglob("*_B04.jp2"))[0]
    jp2.write_bytes(jp2.read_bytes()[: jp2.stat().st_size // 3])  # truncated band
    r = _nimbus("segment", str(products[0]), str(broken), str(products[2]), "--model", RULES, "--out", str(tmp_path / "o"),
                "--nostac_item", "--scheduler", str(cluster.file), "--retries", "3")  # fmt: skip
    assert r.returncode == 1
    assert "1 of 3 product(s) failed" in r.stderr and "B04" in r.stderr
    recs = {Path(x["product"]).name + ("-broken" if "/in/" in x["product"] else ""): x for x in read_report(tmp_path / "o" / "nimbus-segment-report.jsonl")}
    assert recs[products[1].name + "-broken"]["status"] == "failed" and not recs[products[1].name + "-broken"]["transient"]
    assert len(_maps(tmp_path / "o")) == 2
    with Client(scheduler_file=str(cluster.file)) as c:  # the scheduler ran the broken product's task once
        log = c.run_on_scheduler(lambda dask_scheduler: [str(t[0]) for t in dask_scheduler.transition_log if t[2] == "processing"])
    starts = [k for k in log if "nimbus-segment-" + broken.name[:60] in k]  # earlier tests ran the same name
    assert starts and all(starts.count(k) == 1 for k in starts), starts  # no task of that name ran twice


def test_killed_worker_product_completes_elsewhere(products: list[Path], tmp_path: Path) -> None:
    """Kill the worker process holding a product's output lock: the product completes on the other
    worker, and no output under a final name is ever incomplete."""
    from nimbus.synthetic import make_product
    from nimbus.validate import is_valid

    big = make_product(tmp_path / "big", size=732, seed=11)
    c = Cluster(tmp_path / "c", workers=2)
    out = tmp_path / "o"
    try:
        proc = subprocess.Popen([sys.executable, "-m", "nimbus", "segment", str(big.path), "--model", "default", "--aux", str(big.aux_dir),
                                 "--out", str(out), "--nostac_item", "--tta", "2", "--scheduler", str(c.file)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        killed = None
        t0 = time.time()
        while killed is None and time.time() - t0 < 240 and proc.poll() is None:
            for lock in out.glob("*.lock") if out.exists() else []:
                try:
                    owner = json.loads(lock.read_text())
                except (OSError, ValueError):
                    continue
                pids = {w.pid: w for w in c.workers}
                if owner.get("pid") in pids:
                    time.sleep(1.0)  # mid-product
                    os.kill(owner["pid"], signal.SIGKILL)
                    pids[owner["pid"]].wait()  # reaped, as a nanny or the shell would
                    killed = owner["pid"]
                    break
            for f in out.glob("*_classes.tif") if out.exists() else []:
                assert is_valid(f), f"incomplete output under a final name: {f}"
            time.sleep(0.05)
        assert killed is not None, "no worker took the product"
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        (final,) = _maps(out).values()
        assert is_valid(final)
        assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporaries left
        (rec,) = read_report(out / "nimbus-segment-report.jsonl")
        assert rec["status"] == "done" and str(killed) not in rec["worker"]
    finally:
        c.close()


def test_local_cluster_equals_single_process(products: list[Path], tmp_path: Path) -> None:
    single = _nimbus("segment", *map(str, products[:2]), "--model", RULES, "--out", str(tmp_path / "single"), "--nostac_item")
    assert single.returncode == 0, single.stderr
    local = _nimbus("segment", *map(str, products[:2]), "--model", RULES, "--out", str(tmp_path / "local"), "--nostac_item",
                    "--workers", "2")  # fmt: skip
    assert local.returncode == 0, local.stderr
    _same_maps(tmp_path / "single", tmp_path / "local")


def test_arrays_and_extract_on_a_local_cluster(products: list[Path], tmp_path: Path) -> None:
    """Batch commands other than segment take --workers too, with the same lines and results."""
    import zipfile

    zips = tmp_path / "zips"
    zips.mkdir()
    for p in products[:2]:
        with zipfile.ZipFile(zips / (p.name.replace(".SAFE", "") + ".zip"), "w") as z:
            for f in sorted(p.rglob("*")):
                if f.is_file():
                    z.write(f, f.relative_to(p.parent))
    (zips / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")
    r = _nimbus("extract", str(zips), str(tmp_path / "store"), "--workers", "2")
    assert r.returncode == 1 and "1 of 3 archive(s) failed" in r.stderr and "broken.zip" in r.stderr
    assert len(list((tmp_path / "store").glob("*/*/MTD_MSIL1C.xml"))) == 2
    single = _nimbus("arrays", str(products[0]), str(tmp_path / "a1"), "--res", "20")
    dist = _nimbus("arrays", str(products[0]), str(tmp_path / "a2"), "--res", "20", "--workers", "1")
    assert single.returncode == 0 and dist.returncode == 0, dist.stderr
    (b1,) = (tmp_path / "a1").glob("*/bands.npy")
    (b2,) = (tmp_path / "a2").glob("*/bands.npy")
    assert b1.read_bytes() == b2.read_bytes()


def test_products_go_to_workers_that_advertise_a_gpu(products: list[Path], tmp_path: Path) -> None:
    """Workers advertising GPU=1 take every product (one at a time per GPU) when the run may use CUDA;
    a CPU-only run uses every worker."""
    from distributed import Client

    c = Cluster(tmp_path / "c", workers=2, resources={0: "GPU=1"})
    try:
        with Client(scheduler_file=str(c.file)) as client:
            gpu = [a for a, w in client.scheduler_info()["workers"].items() if w.get("resources", {}).get("GPU")]
        assert len(gpu) == 1
        r = _nimbus("segment", *map(str, products), "--model", RULES, "--out", str(tmp_path / "o"), "--nostac_item",
                    "--provider", "auto", "--scheduler", str(c.file))  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert {x["worker"] for x in read_report(tmp_path / "o" / "nimbus-segment-report.jsonl")} == set(gpu)
    finally:
        c.close()


def test_labels_of_an_arrays_root_on_a_local_cluster(products: list[Path], tmp_path: Path) -> None:
    """`nimbus labels ARRAYS_ROOT --truth --workers 2` labels every arrays folder, one task each,
    exactly as the single-folder command does."""
    arrays = tmp_path / "arrays"
    r = _nimbus("arrays", ",".join(map(str, products[:2])), str(arrays), "--res", "20")
    assert r.returncode == 0, r.stderr
    folders = sorted(p for p in arrays.iterdir() if p.is_dir())
    one = _nimbus("labels", str(folders[0]), "--truth")
    assert one.returncode == 0, one.stderr
    want = (folders[0] / "labels.tif").read_bytes()
    (folders[0] / "labels.tif").unlink()
    many = _nimbus("labels", str(arrays), "--truth", "--workers", "2")
    assert many.returncode == 0, many.stderr
    assert all((f / "labels.tif").is_file() for f in folders)
    with rasterio.open(folders[0] / "labels.tif") as a:
        got = a.read()
    import io

    with rasterio.open(io.BytesIO(want)) as b:
        assert np.array_equal(got, b.read())
    bad = _nimbus("labels", str(arrays), "--exolabs", "x.tif")
    assert bad.returncode == 2 and "arrays root" in bad.stderr
