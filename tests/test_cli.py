"""The nimbus command line: help from docstrings, clean errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nimbus", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    res = run_cli("--help")
    assert "info" in res.stdout + res.stderr


def test_bad_product_is_a_clean_error(tmp_path) -> None:
    bogus = tmp_path / "not_a_product.txt"
    bogus.write_text("hello")
    res = run_cli("info", str(bogus))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "not_a_product.txt" in res.stderr


def test_import_nimbus_never_imports_torch() -> None:
    code = "import sys, nimbus, nimbus.cli; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_info_on_a_synthetic_product(synthetic_l2a_zip) -> None:
    res = run_cli("info", str(synthetic_l2a_zip.path))
    assert res.returncode == 0, res.stderr
    for want in ("32TMS", "L2A", "02.12", "EPSG:32632", "grid 20 m", "SCL", "cloud cover", "nodata", "offsets"):
        assert want in res.stdout, want


def test_synthetic_command_writes_a_readable_product(tmp_path) -> None:
    res = run_cli("synthetic", str(tmp_path), "--size", "60", "--level", "L2A", "--baseline", "05.10", "--seed", "3", "--nodata_swath")
    assert res.returncode == 0, res.stderr
    written = res.stdout.strip().splitlines()[-1]
    assert written.endswith(".SAFE") and "_N0510_" in written, "fire's float 5.1 kept as baseline 05.10"
    info = run_cli("info", written)
    assert info.returncode == 0 and "05.10" in info.stdout and "-1000" in info.stdout
    assert list(tmp_path.glob("*_truth.tif")) and list(tmp_path.glob("*_aux/32TMS_altitude_10m.tif"))


def test_cli_errors_are_one_line(tmp_path) -> None:
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    res = run_cli("info", str(bad))
    assert res.returncode != 0 and "Traceback" not in res.stderr and "broken.zip" in res.stderr
    res = run_cli("synthetic", str(tmp_path), "--size", "100")
    assert res.returncode != 0 and "Traceback" not in res.stderr and "multiple of 6" in res.stderr


def test_segment_with_the_shipped_rules_model_runs_on_l2a(tmp_path, synthetic_l2a_zip) -> None:
    res = run_cli("segment", str(synthetic_l2a_zip.path), "--model", "rules", "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    (m,) = tmp_path.glob("*_nimbus-rules-v1_classes.tif")
    res = run_cli("evaluate", str(m), str(synthetic_l2a_zip.truth_path), "--json")
    assert res.returncode == 0, res.stderr
    import json

    assert json.loads(res.stdout)["accuracy"] > 0.75
    res = run_cli("segment", str(synthetic_l2a_zip.path), "--model", "rulez")
    assert res.returncode == 1 and "rules" in res.stderr


def test_without_a_model_the_rules_model_segments_l1c_and_l2a(tmp_path, synthetic_l1c, synthetic_l2a_zip) -> None:
    res = run_cli("segment", str(synthetic_l1c.path), str(synthetic_l2a_zip.path), "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert len(list(tmp_path.glob("*_nimbus-rules-v1_classes.tif"))) == 2


def test_segment_takes_a_folder_of_products(tmp_path) -> None:
    from nimbus.synthetic import make_product

    store = tmp_path / "store"
    for seed in (31, 32):
        make_product(store, size=120, seed=seed, zipped=seed == 32)
    res = run_cli("segment", str(store), "--out", str(tmp_path / "maps"))
    assert res.returncode == 0, res.stderr
    assert len(list((tmp_path / "maps").glob("*_classes.tif"))) == 2
