"""The product reader on real Sentinel-2 data (every layout) and on synthetic products."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from nimbus.bands import BANDS, L2A_BANDS, NATIVE_RESOLUTION
from nimbus.errors import CorruptArchiveError, MetadataError, MissingBandError, NotAProductError, ProductError
from nimbus.product import find_band_files, find_metadata_files, open_product

# the same folder as the ``realdata`` fixture (tests/conftest.py), needed at collection time
REALDATA = Path(os.environ.get("NIMBUS_REALDATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata")).resolve()

EODAG = "eodag-cube_S2A_MSIL1C_T31TDH_20180101"
OPER = "sentinelsat_S2A_L1C_oldformat_T01CEH_20161012_nodata"
COG = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
UDP = "rio-tiler-pds_S2_L1C_19UDP_20170729_900m"


def _csvs() -> list[Path]:
    d = REALDATA / "sentinelhub-py_SAFE_file_lists" / "aws_safe"
    return sorted(d.glob("*.csv")) if d.is_dir() else []


# ----------------------------------------------------------------------------- real data


def test_real_safe_folder_and_zip_give_identical_pixels(realdata: Path) -> None:
    folder = open_product(next((realdata / EODAG).glob("*.SAFE")))
    zipped = open_product(next((realdata / EODAG).glob("*.zip")))
    assert folder.layout == "safe" and zipped.layout == "zip"
    for attr in ("product_id", "tile", "level", "baseline", "sensing_time", "spacecraft", "offsets", "quantification", "cloud_cover"):
        assert getattr(folder, attr) == getattr(zipped, attr), attr
    assert folder.product_id == "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"
    assert (folder.tile, folder.level, folder.baseline, folder.crs.to_epsg()) == ("31TDH", "L1C", "02.06", 32631)
    assert folder.shape(60) == (1830, 1830) and folder.shape(10) == (10980, 10980)
    assert tuple(folder.transform(60)) [:6] == (60.0, 0.0, 399960.0, 0.0, -60.0, 4800000.0)
    a = folder.read_band("B01")
    b = zipped.read_band("B01")
    assert a.dtype == np.uint16 and a.shape == (1830, 1830)
    np.testing.assert_array_equal(a, b)
    assert 0 < a.max() < 20000 and a[a > 0].std() > 10, "real pixels, not a constant"
    assert zipped.band_file("B01").startswith("/vsizip/")


def test_zip_is_read_in_place(realdata: Path, tmp_path: Path) -> None:
    z = tmp_path / "copy.zip"
    shutil.copy(next((realdata / EODAG).glob("*.zip")), z)
    p = open_product(z)
    p.read(["B01"], res=60, window=Window(100, 100, 50, 50))
    p.close()
    assert [f.name for f in tmp_path.iterdir()] == ["copy.zip"], "nothing extracted next to the zip"


def test_real_band_resampled_to_10m(realdata: Path) -> None:
    p = open_product(next((realdata / EODAG).glob("*.SAFE")))
    data, valid = p.read(["B01"], res=10, window=Window(3000, 3000, 120, 120), kind="dn")
    native = p.read_band("B01", window=Window(500, 500, 20, 20))
    assert data.shape == (1, 120, 120) and valid.all()
    # nearest-neighbour upsampling replicates each 60 m pixel into 6x6
    near, _ = p.read(["B01"], res=10, window=Window(3000, 3000, 120, 120), kind="dn", resampling="nearest")
    np.testing.assert_array_equal(near[0, ::6, ::6], native)
    assert np.abs(data[0].astype(int) - near[0].astype(int)).mean() < 0.05 * native.mean()


def test_missing_band_is_named(realdata: Path) -> None:
    p = open_product(next((realdata / EODAG).glob("*.SAFE")))
    assert p.bands == ("B01",), "only B01 was kept upstream"
    with pytest.raises(MissingBandError, match="B02"):
        p.read(["B01", "B02"])
    with pytest.raises(MissingBandError, match=EODAG):
        p.read_band("B8A")


def test_old_oper_product_reads_as_all_nodata(realdata: Path) -> None:
    p = open_product(next((realdata / OPER).glob("*.zip")))
    assert p.product_id.startswith("S2A_OPER_PRD_MSIL1C_PDMC_20161013T075059")
    assert (p.tile, p.level, p.baseline, p.metadata.product_format) == ("01CEH", "L1C", "02.04", "SAFE")
    assert p.bands == BANDS
    assert p.crs.to_epsg() == 32701
    for b in BANDS:
        assert p._band_shape(b) == p.shape(NATIVE_RESOLUTION[b]), "full-size band files"
    data, valid = p.read(list(BANDS), res=10, window=Window(5000, 7000, 96, 96))
    assert data.shape == (13, 96, 96) and not data.any() and not valid.any()
    refl, valid = p.read(["B02", "B12"], res=60, window=Window(0, 0, 30, 30), kind="reflectance")
    assert refl.dtype == np.float32 and not refl.any() and not valid.any()


def test_cog_folder_layout(realdata: Path) -> None:
    p = open_product(realdata / COG)
    assert p.layout == "cog"
    assert (p.tile, p.level, p.baseline, p.crs.to_epsg()) == ("29RKH", "L2A", "02.14", 32629)
    assert set(p.offsets.values()) == {0.0}
    assert set(p.bands) == set(L2A_BANDS)
    # files are decimated 10x upstream; the grids come from the files
    assert (p.shape(10), p.shape(20), p.shape(60)) == ((1098, 1098), (549, 549), (183, 183))
    assert p.band_resolution("B01") == 60 and p.band_resolution("B8A") == 20 and p.band_resolution("WVP") == 10
    data, valid = p.read(["B01", "B8A", "B04", "SCL"], res=10, window=Window(200, 300, 256, 128))
    assert data.shape == (4, 128, 256) and valid.all()
    scl = p.read_band("SCL")
    assert {5, 7, 8, 9, 10} <= set(np.unique(scl).tolist())
    # SCL is categorical: upsampled by nearest, so only existing classes appear
    assert set(np.unique(data[3]).tolist()) <= set(np.unique(scl).tolist())


@pytest.mark.parametrize(("band", "res"), [("B8A", 10), ("B01", 10), ("B09", 20), ("AOT", 20)])
def test_cog_resampling_matches_gdal(realdata: Path, band: str, res: int) -> None:
    import rasterio
    from rasterio.warp import Resampling, reproject

    p = open_product(realdata / COG)
    mine, _ = p.read([band], res=res, kind="dn")
    with rasterio.open(p.band_file(band)) as src:
        ref = np.zeros(p.shape(res), np.uint16)
        reproject(rasterio.band(src, 1), ref, dst_transform=p.transform(res), dst_crs=p.crs, resampling=Resampling.bilinear)
    inner = (slice(6, -6), slice(6, -6))
    assert np.abs(mine[0][inner].astype(int) - ref[inner].astype(int)).max() <= 1


def test_strips_equal_whole_band_on_real_cog(realdata: Path) -> None:
    p = open_product(realdata / COG)
    bands = ["B01", "B05", "B02", "SCL"]
    for method in ("bilinear", "cubic"):
        whole, wvalid = p.read(bands, res=10, resampling=method)
        parts = [p.read(bands, res=10, window=Window(0, r, 1098, min(100, 1098 - r)), resampling=method) for r in range(0, 1098, 100)]
        np.testing.assert_array_equal(np.concatenate([d for d, _ in parts], axis=1), whole)
        np.testing.assert_array_equal(np.concatenate([v for _, v in parts], axis=0), wvalid)


def test_geotiffs_named_jp2_read_by_content(realdata: Path) -> None:
    p = open_product(realdata / UDP)
    assert (p.tile, p.level, p.baseline, p.layout) == ("19UDP", "L1C", "02.05", "cog")
    assert p.bands == BANDS
    data, valid = p.read(list(BANDS), res=10, kind="reflectance")
    assert data.shape == (13, 122, 122)
    assert 0.3 < valid.mean() < 0.9, "real data coverage of this tile is 62 %"
    assert 0.05 < float(data[1][valid].mean()) < 0.5


@pytest.mark.parametrize("csv_path", _csvs(), ids=lambda p: p.stem)
def test_every_aws_safe_layout_resolves_its_bands(csv_path: Path) -> None:
    with open(csv_path, newline="") as fh:
        paths = [row[1] for row in csv.reader(fh, delimiter=";") if len(row) > 1]
    per_tile = find_band_files(paths)
    level = "L2A" if csv_path.stem.startswith("L2A") else "L1C"
    assert per_tile, f"{csv_path.name}: no bands found"
    if csv_path.stem == "L1C_02.04_old":
        assert set(per_tile) == {"04MGV", "04MHV"}, "an OPER product with two granules"
    else:
        assert len(per_tile) == 1
    for tile, files in per_tile.items():
        assert len(tile) == 5
        want = set(BANDS) if level == "L1C" else set(L2A_BANDS)
        assert set(files) == want, f"{csv_path.name}: {sorted(want - set(files))} missing"
        for band, bf in files.items():
            if band in BANDS:
                assert bf.resolution == NATIVE_RESOLUTION[band], (band, bf.path)
            assert "QI_DATA" not in bf.path and tile in bf.path
    products, tiles = find_metadata_files(paths)
    assert tiles, "tile metadata found"
    if csv_path.stem != "L1C_02.01_tile":
        assert products, "product metadata found"


def test_band_discovery_rules() -> None:
    files = find_band_files([
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/IMG_DATA/R10m/T32TMS_20230101T102031_B02_10m.jp2",
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/IMG_DATA/R20m/T32TMS_20230101T102031_B02_20m.jp2",
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/IMG_DATA/R20m/T32TMS_20230101T102031_B01_20m.jp2",
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/IMG_DATA/R60m/T32TMS_20230101T102031_B01_60m.jp2",
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/IMG_DATA/R20m/T32TMS_20230101T102031_B05_20m.jp2",
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/IMG_DATA/R60m/T32TMS_20230101T102031_B05_60m.jp2",
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/QI_DATA/T32TMS_B02.jp2",
        "X.SAFE/GRANULE/L2A_T32TMS_A1_20230101T000000/IMG_DATA/R10m/T32TMS_20230101T102031_TCI_10m.jp2",
        "cog/B8A.tif",
    ])  # fmt: skip
    t = files["32TMS"]
    assert t["B02"].resolution == 10 and t["B01"].resolution == 60 and t["B05"].resolution == 20
    assert "QI_DATA" not in t["B02"].path and "TCI" not in t
    assert files[""]["B8A"].resolution == 20


# ----------------------------------------------------------------------------- synthetic products


def test_synthetic_folder_reads(synthetic_l1c) -> None:
    p = open_product(synthetic_l1c.path)
    assert (p.product_id, p.tile, p.level, p.baseline) == (synthetic_l1c.product_id, "32TMS", "L1C", "05.10")
    assert p.bands == BANDS and set(p.offsets.values()) == {-1000.0} and p.metadata.offsets_from_metadata
    assert p.shape(10) == (240, 240) and p.shape(20) == (120, 120) and p.shape(60) == (40, 40)
    assert tuple(p.transform(10))[:6] == synthetic_l1c.transform
    assert p.crs.to_string() == synthetic_l1c.crs
    assert p.sensing_time == synthetic_l1c.sensing_time


def test_kinds_dn_harmonized_reflectance(synthetic_l1c) -> None:
    p = open_product(synthetic_l1c.path)
    dn, valid = p.read(["B02", "B11"], kind="dn")
    harm, v2 = p.read(["B02", "B11"], kind="harmonized")
    refl, v3 = p.read(["B02", "B11"], kind="reflectance")
    assert dn.dtype == np.uint16 and harm.dtype == np.uint16 and refl.dtype == np.float32
    np.testing.assert_array_equal(valid, v2)
    np.testing.assert_array_equal(valid, v3)
    np.testing.assert_array_equal(harm[:, valid], np.maximum(dn[:, valid].astype(int) - 1000, 1))
    np.testing.assert_allclose(refl[:, valid], (dn[:, valid].astype(np.float32) - 1000) / 10000, atol=1e-6)
    assert not harm[:, ~valid].any() and not refl[:, ~valid].any()


def test_harmonized_values_do_not_jump_across_baselines(tmp_path: Path) -> None:
    from nimbus.synthetic import make_product

    old = open_product(make_product(tmp_path / "old", size=60, baseline="02.14", seed=7).path)
    new = open_product(make_product(tmp_path / "new", size=60, baseline="05.10", seed=7).path)
    for band in BANDS:
        res = NATIVE_RESOLUTION[band]
        a, va = old.read([band], res=res, kind="harmonized")
        b, vb = new.read([band], res=res, kind="harmonized")
        raw = new.read_band(band)
        np.testing.assert_array_equal(va, vb)
        above = a[0] > 1  # old baselines clip reflectance <= 0.0001 to DN 1; 04.00+ keep down to -0.1
        assert above.mean() > (0.5 if band == "B10" else 0.95), band
        np.testing.assert_array_equal(a[0][above], b[0][above])
        np.testing.assert_array_equal(raw[above].astype(int) - 1000, a[0][above])


def test_synthetic_zip_reads(synthetic_l2a_zip) -> None:
    p = open_product(synthetic_l2a_zip.path)
    assert (p.layout, p.level, p.baseline) == ("zip", "L2A", "02.12")
    assert set(p.bands) == set(L2A_BANDS) and "B10" not in p.bands
    assert set(p.offsets.values()) == {0.0}
    data, valid = p.read(["B02", "B8A", "B09", "SCL", "AOT", "WVP"], res=20)
    assert data.shape == (6, 120, 120) and valid.all()


def test_strips_equal_whole_band_synthetic(synthetic_l1c) -> None:
    p = open_product(synthetic_l1c.path)
    for res, step in ((10, 37), (20, 11), (60, 7)):
        h, w = p.shape(res)
        for method in ("nearest", "bilinear", "cubic"):
            whole, wv = p.read(list(BANDS), res=res, resampling=method)
            strips = [p.read(list(BANDS), res=res, window=Window(0, r, w, min(step, h - r)), resampling=method) for r in range(0, h, step)]
            np.testing.assert_array_equal(np.concatenate([s for s, _ in strips], axis=1), whole)
            np.testing.assert_array_equal(np.concatenate([v for _, v in strips], axis=0), wv)


def test_nodata_swath_is_invalid_everywhere(tmp_path: Path) -> None:
    from nimbus.synthetic import make_product

    s = make_product(tmp_path, size=120, seed=4, nodata_swath=True)
    p = open_product(s.path)
    for method in ("nearest", "bilinear", "cubic"):
        data, valid = p.read(list(BANDS), res=10, resampling=method)
        np.testing.assert_array_equal(valid, s.truth != 255)
        assert not data[:, ~valid].any()
        assert (data[:, valid] > 0).all(), "no nodata bleeds into valid pixels"


def test_window_beyond_the_grid_is_nodata(synthetic_l1c) -> None:
    p = open_product(synthetic_l1c.path)
    data, valid = p.read(["B02", "B01"], window=Window(230, -5, 20, 20))
    inside, _ = p.read(["B02", "B01"], window=Window(230, 0, 10, 15))
    assert not valid[:5].any() and not valid[:, 10:].any()
    np.testing.assert_array_equal(data[:, 5:, :10], inside)


def test_describe_lists_everything(synthetic_l2a_zip) -> None:
    text = open_product(synthetic_l2a_zip.path).describe()
    for want in ("32TMS", "L2A", "02.12", "Sentinel-2A", "EPSG:32632", "grid 10 m", "grid 60 m", "SCL", "B8A", "offsets", "cloud cover", "nodata", "R20m"):
        assert want in text, want


def test_bad_arguments(synthetic_l1c) -> None:
    p = open_product(synthetic_l1c.path)
    with pytest.raises(ValueError, match="kind"):
        p.read(["B02"], kind="toa")
    with pytest.raises(ValueError, match="resolution"):
        p.read(["B02"], res=30)
    with pytest.raises(MissingBandError, match="B13"):
        p.read(["B13"])
    with pytest.raises(MissingBandError, match="SCL"):
        p.read(["SCL"])


# ----------------------------------------------------------------------------- errors


def test_not_a_product(tmp_path: Path) -> None:
    with pytest.raises(NotAProductError, match="missing.SAFE"):
        open_product(tmp_path / "missing.SAFE")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(NotAProductError, match="notes.txt"):
        open_product(txt)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NotAProductError, match="empty"):
        open_product(empty)


def test_truncated_zip(realdata: Path, tmp_path: Path) -> None:
    src = next((realdata / EODAG).glob("*.zip"))
    cut = tmp_path / "truncated.SAFE.zip"
    data = src.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptArchiveError, match="truncated.SAFE.zip"):
        open_product(cut)


def test_corrupt_member_in_zip(tmp_path: Path) -> None:
    import zipfile

    from nimbus.synthetic import make_product

    s = make_product(tmp_path / "p", size=60, zipped=True, seed=3)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(s.path) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            payload = zin.read(info)
            if info.filename.endswith("_B03.jp2"):
                payload = payload[:40] + b"\x00" * (len(payload) - 40)
            zout.writestr(info, payload)
    p = open_product(bad)
    with pytest.raises(CorruptArchiveError, match="bad.zip"):
        p.read(["B03"])


def test_missing_and_broken_files_in_a_folder(tmp_path: Path) -> None:
    from nimbus.synthetic import make_product

    s = make_product(tmp_path / "p", size=60, seed=3)
    b03 = next(s.path.rglob("*_B03.jp2"))
    b03.unlink()
    p = open_product(s.path)
    assert "B03" not in p.bands
    with pytest.raises(MissingBandError, match="B03"):
        p.read(["B02", "B03"])
    b04 = next(s.path.rglob("*_B04.jp2"))
    b04.write_bytes(b"not a jpeg2000 file at all")
    with pytest.raises(ProductError, match="_B04.jp2"):
        open_product(s.path).read(["B04"])
    mtd = s.path / "MTD_MSIL1C.xml"
    mtd.write_text(mtd.read_text()[:500])
    with pytest.raises(MetadataError, match="MTD_MSIL1C.xml"):
        open_product(s.path)


def test_zip_without_metadata(tmp_path: Path) -> None:
    import zipfile

    z = tmp_path / "bands.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("B02.jp2", b"x")
    with pytest.raises(NotAProductError, match="bands.zip"):
        open_product(z)


def test_multi_granule_oper_product_and_tile_choice(tmp_path: Path) -> None:
    from nimbus.synthetic import make_product

    s = make_product(tmp_path / "p", size=60, seed=2)
    root = s.path
    compact = next(root.glob("GRANULE/*"))
    for tile in ("32TMS", "32TMT"):
        gname = f"S2A_OPER_MSI_L1C_TL_SYNT_20230101T000000_A000001_T{tile}_N05.10"
        img = root / "GRANULE" / gname / "IMG_DATA"
        img.mkdir(parents=True)
        for f in (compact / "IMG_DATA").glob("*.jp2"):
            shutil.copy(f, img / f"{gname[:-7]}_{f.stem.split('_')[-1]}.jp2")
        xml = (compact / "MTD_TL.xml").read_text().replace("T32TMS", f"T{tile}")
        (root / "GRANULE" / gname / f"S2A_OPER_MTD_L1C_TL_SYNT_20230101T000000_A000001_T{tile}.xml").write_text(xml)
    shutil.rmtree(compact)
    first = open_product(root)
    assert (first.tile, first.other_tiles) == ("32TMS", ("32TMT",))
    second = open_product(root, tile="T32TMT")
    assert second.tile == "32TMT" and second.tile_metadata.tile == "32TMT"
    assert "_T32TMT_" in second.band_file("B02")
    np.testing.assert_array_equal(first.read(["B02", "B8A"])[0], second.read(["B02", "B8A"])[0])
    with pytest.raises(MissingBandError, match="33XYZ"):
        open_product(root, tile="33XYZ")


def test_15bit_scl_jpeg2000_via_a_band_folder(realdata: Path, tmp_path: Path) -> None:
    (tmp_path / "SCL.jp2").symlink_to(realdata / "sentinelhub-py_SAFE_file_lists" / "SCL_60m_real_partial_tile_img-15bit.jp2")
    p = open_product(tmp_path)
    assert (p.level, p.bands, p.shape(10)) == ("L2A", ("SCL",), (1830, 1830))
    scl = p.read_band("SCL")
    classes = set(np.unique(scl).tolist())
    assert {0, 2, 4, 5, 8, 9, 10, 11} <= classes <= set(range(12)), classes
    assert (scl == 0).mean() > 0.5, "mostly nodata"


def test_real_crop_with_nodata_edge_non_square(realdata: Path, tmp_path: Path) -> None:
    (tmp_path / "B08.jp2").symlink_to(realdata / "arosics_S2A_T33UUU_2016_10m_crops" / "tgt_S2A_20160529T153631_T33UUU_sub.jp2")
    p = open_product(tmp_path)
    assert p.shape(10) == (3152, 2074) and p.crs.to_epsg() == 32633 and p.transform(10).c == 335440.0
    whole, valid = p.read(["B08"], res=10, window=Window(0, 0, 2074, 600))
    assert 0.05 < valid.mean() < 0.95, "the crop holds a nodata swath edge"
    strips = [p.read(["B08"], res=10, window=Window(c, 0, min(500, 2074 - c), 600))[0] for c in range(0, 2074, 500)]
    np.testing.assert_array_equal(np.concatenate(strips, axis=2), whole)
    coarse, cvalid = p.read(["B08"], res=20, window=Window(0, 0, 1037, 300))
    assert coarse.shape == (1, 300, 1037) and 0.05 < cvalid.mean() < 0.95


def test_band_that_disagrees_with_the_tile_metadata(tmp_path: Path) -> None:
    from nimbus.synthetic import _write_jp2, make_product

    s = make_product(tmp_path / "p", size=60, seed=3)
    b05 = next(s.path.rglob("*_B05.jp2"))
    _write_jp2(b05, np.ones((10, 10), np.uint16), 32632, s.transform)
    p = open_product(s.path)
    p.read(["B02"])
    with pytest.raises(ProductError, match="_B05.jp2.*10x10.*30x30"):
        p.read(["B05"])


def test_product_pickles_for_worker_processes(synthetic_l2a_zip) -> None:
    import pickle

    p = open_product(synthetic_l2a_zip.path)
    before = p.read(["B02", "SCL"], res=20)[0]
    q = pickle.loads(pickle.dumps(p))
    np.testing.assert_array_equal(q.read(["B02", "SCL"], res=20)[0], before)
    assert q.product_id == p.product_id and q.transform(10) == p.transform(10)


def test_old_oper_product_as_a_folder(realdata: Path, tmp_path: Path) -> None:
    import zipfile

    zpath = next((realdata / OPER).glob("*.zip"))
    with zipfile.ZipFile(zpath) as zf:
        zf.extractall(tmp_path)
    safe = next(tmp_path.glob("*.SAFE"))
    folder, zipped = open_product(safe), open_product(zpath)
    assert folder.product_id == zipped.product_id == safe.name[:-5]
    assert folder.bands == zipped.bands == BANDS and folder.layout == "safe"
    assert folder.transform(20) == zipped.transform(20) and folder.shape(60) == (1830, 1830)
    data, valid = folder.read(["B8A", "B11"], res=20, window=Window(2000, 2000, 64, 64))
    assert not data.any() and not valid.any()


def test_describe_warns_about_missing_bands(realdata, tmp_path) -> None:
    """The real eodag-cube SAFE keeps only B01; a copy without any band file is metadata only."""
    import shutil

    from nimbus.errors import NimbusWarning
    from nimbus.product import open_product

    (safe,) = (realdata / "eodag-cube_S2A_MSIL1C_T31TDH_20180101").glob("*.SAFE")
    with pytest.warns(NimbusWarning, match=r"lacks band\(s\) B02, B03"):
        text = open_product(safe).describe()
    assert "missing: B02" in text
    bare = tmp_path / safe.name
    shutil.copytree(safe, bare)
    for jp2 in bare.rglob("*.jp2"):
        jp2.unlink()
    try:
        product = open_product(bare)
    except Exception as exc:  # refusing a band-less product outright is as good as a warning
        assert bare.name in str(exc)
        return
    with pytest.warns(NimbusWarning, match="metadata only"):
        product.describe()
