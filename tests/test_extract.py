"""`nimbus extract`: real archives, zip-slip, zip bombs, corrupt archives, re-runs and interruptions."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio

from nimbus.errors import CorruptArchiveError, ExtractError
from nimbus.extract import ExtractLimits, extract_all, extract_product, inspect_archive

EODAG_ID = "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"
OPER_ID = "S2A_OPER_PRD_MSIL1C_PDMC_20161013T075059_R111_V20161012T161812_20161012T161807"


@pytest.fixture(scope="module")
def eodag_zip(realdata: Path) -> Path:
    return next((realdata / "eodag-cube_S2A_MSIL1C_T31TDH_20180101").glob("*.zip"))


@pytest.fixture(scope="module")
def oper_zip(realdata: Path) -> Path:
    return next((realdata / "sentinelsat_S2A_L1C_oldformat_T01CEH_20161012_nodata").glob("*.zip"))


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _mtd(uri: str) -> bytes:
    return (
        '<?xml version="1.0"?><n1:Level-1C_User_Product xmlns:n1="x"><n1:General_Info><Product_Info>'
        f"<PRODUCT_URI>{uri}.SAFE</PRODUCT_URI><PROCESSING_BASELINE>05.10</PROCESSING_BASELINE>"
        "</Product_Info></n1:General_Info></n1:Level-1C_User_Product>"
    ).encode()


def test_real_archives_new_and_old_naming(tmp_path: Path, eodag_zip: Path, oper_zip: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for z in (eodag_zip, oper_zip):
        shutil.copy(z, src / z.name)
    summary = extract_all(src, tmp_path / "store", progress=False)
    assert (len(summary.extracted), len(summary.skipped), len(summary.failed)) == (2, 0, 0)
    new = tmp_path / "store" / "31TDH" / EODAG_ID
    old = tmp_path / "store" / "01CEH" / OPER_ID
    assert set(summary.extracted) == {new, old}
    # the SAFE content sits directly in the product folder, whatever the archive's layout
    assert (new / "MTD_MSIL1C.xml").is_file()
    b01 = next(new.rglob("*_B01.jp2"))
    with zipfile.ZipFile(eodag_zip) as zf:
        assert b01.read_bytes() == zf.read(str(b01.relative_to(new)))
    assert (old / "manifest.safe").is_file() and len(list(old.rglob("*.jp2"))) >= 13
    # the extracted products keep the archive's product id (OPER metadata names a granule in PRODUCT_URI)
    from nimbus.product import open_product

    assert open_product(old).product_id == open_product(oper_zip).product_id == OPER_ID
    assert open_product(new).product_id == open_product(eodag_zip).product_id == EODAG_ID
    # nothing else left behind (no temporary folders)
    assert sorted(p.name for p in (tmp_path / "store").rglob(".*")) == []
    # a re-run skips both
    again = extract_all(src, tmp_path / "store", progress=False)
    assert (len(again.extracted), len(again.skipped), len(again.failed)) == (0, 2, 0)
    assert "skipped 2" in str(again)


def test_two_passes_same_day_do_not_collide(tmp_path: Path) -> None:
    a = "S2A_MSIL1C_20230101T101010_N0509_R022_T32TMS_20230101T120000"
    b = "S2B_MSIL1C_20230101T101010_N0509_R065_T32TMS_20230101T130000"
    for pid in (a, b):
        _zip(tmp_path / f"{pid}.zip", {f"{pid}.SAFE/MTD_MSIL1C.xml": _mtd(pid), f"{pid}.SAFE/GRANULE/x.txt": pid.encode()})
    summary = extract_all(tmp_path, tmp_path / "store", progress=False)
    assert len(summary.extracted) == 2
    assert (tmp_path / "store/32TMS" / a / "GRANULE/x.txt").read_text() == a
    assert (tmp_path / "store/32TMS" / b / "GRANULE/x.txt").read_text() == b


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/evil_abs.txt", "GRANULE/../../evil.txt"])
def test_zip_slip_refused_others_continue(tmp_path: Path, eodag_zip: Path, evil: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pid = "S2A_MSIL1C_20230101T101010_N0509_R022_T32TMS_20230101T120000"
    _zip(src / "a_evil.zip", {f"{pid}.SAFE/MTD_MSIL1C.xml": _mtd(pid), evil: b"owned"})
    shutil.copy(eodag_zip, src / eodag_zip.name)
    store = tmp_path / "deep" / "store"
    summary = extract_all(src, store, progress=False)
    assert len(summary.failed) == 1 and "zip-slip" in summary.failed[0][1]
    assert len(summary.extracted) == 1
    assert not (tmp_path / "deep" / "evil.txt").exists() and not (store / "evil.txt").exists()
    assert not Path("/tmp/evil_abs.txt").exists()
    assert not (store / "32TMS").exists()


def test_zip_bombs_refused(tmp_path: Path, eodag_zip: Path) -> None:
    pid = "S2A_MSIL1C_20230101T101010_N0509_R022_T32TMS_20230101T120000"
    bomb = _zip(tmp_path / "bomb.zip", {f"{pid}.SAFE/MTD_MSIL1C.xml": _mtd(pid), f"{pid}.SAFE/zeros.bin": bytes(4 << 20)})
    with pytest.raises(ExtractError, match="zip bomb"):
        inspect_archive(bomb)
    # total size limit (the real archive expands to 2.9 MB)
    with pytest.raises(ExtractError, match="zip bomb"):
        extract_product(eodag_zip, tmp_path / "store", limits=ExtractLimits(max_total_bytes=1_000_000))
    with pytest.raises(ExtractError, match="entries"):
        extract_product(eodag_zip, tmp_path / "store", limits=ExtractLimits(max_entries=3))
    assert not (tmp_path / "store" / "31TDH" / EODAG_ID).exists()


def test_corrupt_and_truncated_archives_reported_and_skipped(tmp_path: Path, eodag_zip: Path, oper_zip: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = eodag_zip.read_bytes()
    (src / "a_truncated.zip").write_bytes(data[: len(data) // 2])
    # flip bytes inside the B01 entry's compressed data: the listing is intact, the CRC is not
    with zipfile.ZipFile(eodag_zip) as zf:
        info = next(i for i in zf.infolist() if i.filename.endswith("_B01.jp2"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 1000
    damaged = bytearray(data)
    damaged[start : start + 64] = bytes(64)
    (src / "b_crc.zip").write_bytes(bytes(damaged))
    (src / "c_notzip.zip").write_bytes(b"this is not an archive at all")
    shutil.copy(oper_zip, src / oper_zip.name)
    store = tmp_path / "store"
    summary = extract_all(src, store, progress=False)
    failed = {p.name: why for p, why in summary.failed}
    assert set(failed) == {"a_truncated.zip", "b_crc.zip", "c_notzip.zip"}
    assert all("a_truncated.zip" in why or "b_crc.zip" in why or "c_notzip.zip" in why for why in failed.values())
    assert summary.extracted == [store / "01CEH" / OPER_ID]
    # the damaged product left nothing under its final name, nor a temporary folder
    assert not (store / "31TDH").exists() or list((store / "31TDH").iterdir()) == []
    with pytest.raises(CorruptArchiveError):
        extract_product(src / "b_crc.zip", store)


_KILLER = """
import os, signal, sys
from nimbus.extract import extract_product
def on_entry(i, name):
    if i == int(sys.argv[3]):
        os.kill(os.getpid(), signal.SIGKILL)
extract_product(sys.argv[1], sys.argv[2], on_entry=on_entry)
"""


def test_interrupted_run_leaves_no_product_and_rerun_completes(tmp_path: Path, oper_zip: Path) -> None:
    store = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-c", _KILLER, str(oper_zip), str(store), "40"], capture_output=True)
    assert proc.returncode == -9
    tile_dir = store / "01CEH"
    assert not (tile_dir / OPER_ID).exists()
    leftovers = [p for p in tile_dir.iterdir() if p.name.startswith(f".{OPER_ID}.tmp-")]
    assert len(leftovers) == 1 and any(leftovers[0].rglob("*"))  # it was killed mid-way
    # a temporary folder whose owner still runs (here: our parent process) is left alone
    busy = tile_dir / f".{OPER_ID}.tmp-busy"
    busy.mkdir()
    (busy / ".nimbus-extract.pid").write_text(str(os.getppid()))
    folder, done = extract_product(oper_zip, store)
    assert done and folder == tile_dir / OPER_ID
    assert sorted(p.name for p in tile_dir.iterdir()) == sorted([OPER_ID, busy.name])
    assert not (folder / ".nimbus-extract.pid").exists()
    with zipfile.ZipFile(oper_zip) as zf:
        n_files = sum(1 for i in zf.infolist() if not i.is_dir())
    assert sum(1 for p in folder.rglob("*") if p.is_file()) == n_files


def test_cog_transcoding_keeps_pixels_and_is_readable(tmp_path: Path, eodag_zip: Path) -> None:
    folder, done = extract_product(eodag_zip, tmp_path / "store", cog=True)
    assert done
    assert list(folder.rglob("*.jp2")) == []
    tif = next(folder.rglob("*_B01.tif"))
    with rasterio.open(tif) as cog, rasterio.open(f"/vsizip/{eodag_zip}/{tif.relative_to(folder).with_suffix('.jp2')}") as jp2:
        assert cog.profile["compress"].lower() == "zstd"
        assert cog.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR", cog.profile.get("predictor")) in ("2", 2, None)
        assert cog.crs == jp2.crs and cog.transform == jp2.transform and cog.shape == jp2.shape == (1830, 1830)
        assert np.array_equal(cog.read(1), jp2.read(1))
    try:
        from nimbus.product import open_product
    except ImportError:
        pytest.skip("nimbus.product not available yet")
    product = open_product(folder)
    assert product.tile == "31TDH"
    with rasterio.open(tif) as cog:
        assert np.array_equal(product.read_band("B01"), cog.read(1))
    assert os.path.basename(product.band_file("B01")).endswith(".tif")


def test_cli_extract_reports_and_exits_nonzero_on_failures(tmp_path: Path, oper_zip: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nimbus.cli import main

    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(oper_zip, src / oper_zip.name)
    main(["extract", str(src), str(tmp_path / "store")])
    assert "extracted 1, skipped 0, failed 0" in capsys.readouterr().out
    (src / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(SystemExit) as exc:
        main(["extract", str(src), str(tmp_path / "store")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "extracted 0, skipped 1, failed 1" in err and "bad.zip" in err


def test_cog_store_of_an_l2a_reads_like_the_zip(tmp_path: Path, synthetic_l2a_zip) -> None:
    from nimbus.product import open_product

    folder, done = extract_product(synthetic_l2a_zip.path, tmp_path / "store", cog=True)
    assert done and folder.parent.name == "32TMS"
    original, extracted = open_product(synthetic_l2a_zip.path), open_product(folder)
    assert extracted.product_id == original.product_id == folder.name
    assert extracted.bands == original.bands and extracted.level == "L2A"
    assert all(extracted.band_file(b).endswith(".tif") for b in extracted.bands)
    for kind in ("harmonized", "reflectance"):
        a, va = original.read(["B02", "B8A", "B09", "SCL"], res=20, kind=kind)
        b, vb = extracted.read(["B02", "B8A", "B09", "SCL"], res=20, kind=kind)
        assert np.array_equal(a, b) and np.array_equal(va, vb)
