"""Metadata parsing: every real Sentinel-2 metadata file, the STAC item, AWS tileInfo, and bad input."""

from __future__ import annotations

import os
import re
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import pytest

from nimbus.bands import BANDS
from nimbus.errors import MetadataError
from nimbus.metadata import (
    ProductMetadata,
    TileMetadata,
    baseline_has_offsets,
    parse_aws_tile_info,
    parse_metadata,
    parse_product_metadata,
    parse_stac_item,
    parse_tile_metadata,
    parse_time,
    tile_from_name,
)

# the same folder as the ``realdata`` fixture (tests/conftest.py), needed at collection time
REALDATA = Path(os.environ.get("NIMBUS_REALDATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata")).resolve()

META_DIR = REALDATA / "stactools-sentinel2_SAFE_metadata_many_baselines"


def _real_xml_files() -> list[Path]:
    if not REALDATA.is_dir():
        return []
    files = [p for p in REALDATA.rglob("*.xml") if "QI_DATA" not in p.parts]
    return sorted(files)


def _expected_from_folder(path: Path) -> tuple[str, str, str]:
    """(level, baseline, tile) that the folder / file names promise, "" where they say nothing."""
    text = "/".join(path.parts[-3:])
    level = "L2A" if re.search(r"L2A|MSIL2A", text) else "L1C"
    m = re.search(r"_N(\d{2})(\d{2})_", text)
    baseline = f"{m.group(1)}.{m.group(2)}" if m else ""
    t = re.search(r"_T(\d{2}[A-Z]{3})(?=[_/.-]|$)", text)
    return level, baseline, t.group(1) if t else ""


@pytest.mark.parametrize("xml", _real_xml_files(), ids=lambda p: "/".join(p.parts[-2:])[-70:])
def test_every_real_metadata_file_parses(xml: Path) -> None:
    md = parse_metadata(xml)
    level, baseline, tile = _expected_from_folder(xml)
    assert md.level == level
    if isinstance(md, ProductMetadata):
        if baseline:
            assert md.baseline == baseline
        assert md.quantification == 10000.0
        assert set(md.offsets) == set(BANDS)
        offs = set(md.offsets.values())
        if baseline_has_offsets(md.baseline):
            assert md.offsets_from_metadata
            # stactools' fixture for T34LBQ deliberately carries -7000: what is written must be read
            assert offs == ({-7000.0} if "T34LBQ" in str(xml) else {-1000.0})
        else:
            assert offs == {0.0} and not md.offsets_from_metadata
        assert md.spacecraft in ("Sentinel-2A", "Sentinel-2B")
        assert md.sensing_time is not None and md.sensing_time.tzinfo is not None
        assert md.nodata == 0 and md.saturated == 65535
        assert md.image_files and all("B" in f or "TCI" in f or "SCL" in f or "AOT" in f or "WVP" in f for f in md.image_files)
    else:
        assert isinstance(md, TileMetadata)
        if tile:
            assert md.tile == tile
        assert re.fullmatch(r"\d{2}\.\d{2}", md.baseline)
        zone = int(md.tile[:2])
        north = md.tile[2] >= "N"
        assert md.epsg == (32600 if north else 32700) + zone
        assert md.sizes == {10: (10980, 10980), 20: (5490, 5490), 60: (1830, 1830)}
        uls = {(g[0], g[1]) for g in md.geoposition.values()}
        assert len(uls) == 1, "all three grids share the upper-left corner"
        for res in (10, 20, 60):
            t = md.transform(res)
            assert (t.a, t.e) == (res, -res)
            assert t.c % 20 == 0 and t.f % 20 == 0
        assert md.sensing_time is not None
        # the same grid as the one nimbus.grid derives from the MGRS code alone (stactools' T34LBQ
        # fixture is edited: it carries the geocoding of its neighbour 34LBP, and -7000 offsets)
        from nimbus.grid import tile_grid

        want = tile_grid("34LBP" if md.tile == "34LBQ" else md.tile, 10).transform
        assert md.transform(10) == want


def test_real_l1c_values(realdata: Path) -> None:
    safe = next((realdata / "eodag-cube_S2A_MSIL1C_T31TDH_20180101").glob("*.SAFE"))
    md = parse_product_metadata(safe / "MTD_MSIL1C.xml")
    assert (md.level, md.baseline, md.spacecraft) == ("L1C", "02.06", "Sentinel-2A")
    assert md.product_uri == "S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911"
    assert md.sensing_time == datetime(2018, 1, 1, 10, 54, 41, 26000, tzinfo=timezone.utc)
    assert md.cloud_cover == pytest.approx(11.9204)
    assert md.resolutions["B01"] == 60 and md.resolutions["B8A"] == 20 and md.resolutions["B02"] == 10
    tl = parse_tile_metadata(next(safe.glob("GRANULE/*/MTD_TL.xml")))
    assert (tl.tile, tl.epsg, tl.crs_name) == ("31TDH", 32631, "WGS84 / UTM zone 31N")
    assert tl.geoposition[60] == (399960.0, 4800000.0, 60.0, -60.0)
    assert tl.sun_zenith == pytest.approx(67.0354071200132)
    assert set(tl.view_angles) == set(BANDS)


def test_l2a_offsets_from_baseline_04(realdata: Path) -> None:
    old = parse_product_metadata(next(META_DIR.glob("S2B_MSIL2A_20191228*.SAFE")) / "MTD_MSIL2A.xml")
    new = parse_product_metadata(next(META_DIR.glob("S2B_MSIL2A_20220413*.SAFE")) / "MTD_MSIL2A.xml")
    assert (old.baseline, set(old.offsets.values())) == ("02.12", {0.0})
    assert (new.baseline, set(new.offsets.values())) == ("04.00", {-1000.0})
    # the DN -> reflectance rule: the same reflectance 0.25 is DN 2500 before and 3500 after 04.00
    assert (2500 + old.offsets["B04"]) / old.quantification == pytest.approx(0.25)
    assert (3500 + new.offsets["B04"]) / new.quantification == pytest.approx(0.25)


def test_antimeridian_tiles_zone_01(realdata: Path) -> None:
    tl = parse_tile_metadata(next(META_DIR.glob("S2A_MSIL2A_20230821T221941*.SAFE/GRANULE/*/MTD_TL.xml")))
    assert (tl.tile, tl.epsg) == ("01KAB", 32701)
    assert tl.transform(10).c == 99960.0


def test_old_format_metadata_inside_zip(realdata: Path) -> None:
    zpath = next((realdata / "sentinelsat_S2A_L1C_oldformat_T01CEH_20161012_nodata").glob("*.zip"))
    with zipfile.ZipFile(zpath) as zf:
        prod = next(n for n in zf.namelist() if "MTD_SAFL1C" in n)
        tile = next(n for n in zf.namelist() if "MTD_L1C_TL" in n)
        md = parse_product_metadata(zf.read(prod), name=prod)
        tl = parse_tile_metadata(zf.read(tile), name=tile)
    assert (md.level, md.baseline, md.product_format) == ("L1C", "02.04", "SAFE")
    assert (tl.tile, tl.epsg, tl.baseline) == ("01CEH", 32701, "02.04")
    assert tl.geoposition[10][:2] == (499980.0, 800020.0)


def test_stac_item(realdata: Path) -> None:
    md, tl = parse_stac_item(realdata / "rio-tiler-pds_S2_L2A_COG_29RKH_20200219" / "S2A_29RKH_20200219_0_L2A.json")
    assert (md.level, md.baseline, md.spacecraft) == ("L2A", "02.14", "Sentinel-2A")
    assert set(md.offsets.values()) == {0.0}
    assert (tl.tile, tl.epsg) == ("29RKH", 32629)
    assert tl.sizes[20] == (5490, 5490) and tl.geoposition[60] == (199980.0, 2800020.0, 60.0, -60.0)
    assert md.cloud_cover == pytest.approx(4.051854)


def test_stac_item_offsets_by_baseline() -> None:
    item = {"type": "Feature", "id": "x", "assets": {}, "properties": {
        "s2:product_type": "S2MSI2A", "s2:processing_baseline": "05.09", "grid:code": "MGRS-32TMS",
        "proj:epsg": 32632, "datetime": "2023-06-01T10:00:00Z", "platform": "sentinel-2b"}}  # fmt: skip
    md, tl = parse_stac_item(item)
    assert set(md.offsets.values()) == {-1000.0} and md.spacecraft == "Sentinel-2B" and tl.tile == "32TMS"
    item["properties"]["earthsearch:boa_offset_applied"] = True
    md, _ = parse_stac_item(item)
    assert set(md.offsets.values()) == {0.0}


def test_aws_tile_info(realdata: Path) -> None:
    md, tl = parse_aws_tile_info(realdata / "rio-tiler-pds_S2_L1C_19UDP_20170729_900m" / "tileInfo.json")
    assert (md.level, md.baseline, md.spacecraft) == ("L1C", "02.05", "Sentinel-2A")
    assert (tl.tile, tl.epsg) == ("19UDP", 32619)
    assert tl.geoposition[10][:2] == (399960.0, 5400000.0)


def test_broken_xml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "MTD_MSIL1C.xml"
    bad.write_text("<n1:Level-1C_User_Product><General_Info>")
    with pytest.raises(MetadataError, match="MTD_MSIL1C.xml"):
        parse_product_metadata(bad)


def test_wrong_kind_of_xml(tmp_path: Path) -> None:
    other = tmp_path / "other.xml"
    other.write_text("<root><a>1</a></root>")
    with pytest.raises(MetadataError, match="other.xml"):
        parse_metadata(other)
    with pytest.raises(MetadataError, match="not a tile-level"):
        parse_tile_metadata(b"<n1:Level-1C_User_Product xmlns:n1='x'/>", name="p.xml")


def test_missing_file_and_missing_grid(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match="nope.xml"):
        parse_metadata(tmp_path / "nope.xml")
    xml = b"<n1:Level-2A_Tile_ID xmlns:n1='x'><TILE_ID>S2A_OPER_MSI_L2A_TL_X_T32TMS_N05.10</TILE_ID><HORIZONTAL_CS_CODE>EPSG:32632</HORIZONTAL_CS_CODE></n1:Level-2A_Tile_ID>"
    with pytest.raises(MetadataError, match="Size/Geoposition"):
        parse_tile_metadata(xml, name="t.xml")


def test_parse_time_and_names() -> None:
    assert parse_time("2023-06-25T23:47:55.578328Z") == datetime(2023, 6, 25, 23, 47, 55, 578328, tzinfo=timezone.utc)
    assert parse_time("2018-01-01T10:54:41Z").tzinfo is not None
    assert parse_time("2018-01-01T10:54:41.5Z").microsecond == 500000
    assert parse_time(None) is None
    assert tile_from_name("S2A_MSIL1C_20180101T105441_N0206_R051_T31TDH_20180101T124911.SAFE") == "31TDH"
    assert tile_from_name("T33UUQ_20170414T101021_B02_10m.jp2") == "33UUQ"
    assert tile_from_name("B02.tif") == ""
    assert baseline_has_offsets("04.00") and baseline_has_offsets("05.10") and not baseline_has_offsets("03.01")
