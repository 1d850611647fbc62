"""The Sentinel-2 tiling grid computed from tile codes, checked against real products' geopositions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import rasterio

from nimbus.grid import TileCodeError, parse_tile, tile_grid

_GEOPOS = re.compile(r'<Geoposition resolution="(\d+)">\s*<ULX>(\d+)</ULX>\s*<ULY>(\d+)</ULY>')
_SIZE = re.compile(r'<Size resolution="(\d+)">\s*<NROWS>(\d+)</NROWS>\s*<NCOLS>(\d+)</NCOLS>')


def _tile_metadata(realdata: Path) -> dict[str, tuple[int, dict[int, tuple[int, int]], dict[int, tuple[int, int]], Path]]:
    """Tile code -> (EPSG, {res: (ULX, ULY)}, {res: (rows, cols)}, file) from every real tile metadata XML."""
    found = {}
    for f in sorted(realdata.rglob("*.xml")):
        text = f.read_text(errors="ignore")
        geo = {int(r): (int(x), int(y)) for r, x, y in _GEOPOS.findall(text)}
        if not geo:
            continue
        tiles = re.findall(r"_T(\d{2}[A-Z]{3})_N\d\d\.\d\d", text)
        epsg = int(re.search(r"HORIZONTAL_CS_CODE>EPSG:(\d+)<", text).group(1))
        size = {int(r): (int(h), int(w)) for r, h, w in _SIZE.findall(text)}
        found[tiles[-1]] = (epsg, geo, size, f)
    return found


def test_tile_grid_matches_real_geopositions(realdata: Path) -> None:
    meta = _tile_metadata(realdata)
    # the stactools fixture "T34LBQ" is a renamed copy of T34LBP (byte-identical once the code is
    # swapped), so it carries LBP's geoposition: check that, then leave it out
    lbq, lbp = meta.pop("34LBQ", None), meta.get("34LBP")
    if lbq is not None and lbp is not None:
        assert lbq[3].read_text().replace("LBQ", "LBP") == lbp[3].read_text()
    assert len(meta) >= 15
    assert {t[:2] for t in meta} >= {"01", "60"}, "expects tiles next to the antimeridian"
    assert any(t[2] < "N" for t in meta) and any(t[2] >= "N" for t in meta), "expects both hemispheres"
    for tile, (epsg, geo, size, path) in meta.items():
        for res, (ulx, uly) in geo.items():
            g = tile_grid(tile, res)
            assert g.crs.to_epsg() == epsg, (tile, path)
            assert (g.transform.c, g.transform.f) == (ulx, uly), (tile, res, path)
            assert (g.transform.a, g.transform.e) == (res, -res)
            if res in size:
                assert g.shape == size[res], (tile, res)


def test_tile_grid_matches_real_rasters(realdata: Path) -> None:
    cases = [
        ("rio-tiler-pds_S2_L2A_COG_29RKH_20200219/B02.tif", "29RKH"),
        ("rio-tiler-pds_S2_L1C_19UDP_20170729_900m/B01.jp2", "19UDP"),
        (next((realdata / "eodag-cube_S2A_MSIL1C_T31TDH_20180101").rglob("*_B01.jp2")), "31TDH"),
    ]
    for rel, tile in cases:
        with rasterio.open(realdata / rel) as src:
            g = tile_grid(tile, 10)
            assert src.crs == g.crs
            assert (src.transform.c, src.transform.f) == (g.transform.c, g.transform.f)
            # the decimated rasters still span exactly one tile
            assert src.width * src.transform.a == pytest.approx(109_800, abs=src.transform.a)
    # crops of 33UUU lie on the tile's 10 m lattice, inside the tile
    g = tile_grid("T33UUU", 10)
    left, bottom, right, top = g.bounds
    for f in sorted((realdata / "arosics_S2A_T33UUU_2016_10m_crops").glob("*.jp2")):
        with rasterio.open(f) as src:
            assert src.crs == g.crs
            b = src.bounds
            assert left <= b.left < b.right <= right and bottom <= b.bottom < b.top <= top
            assert (src.transform.c - left) % 10 == 0 and (top - src.transform.f) % 10 == 0


def test_tile_grid_shapes_and_codes() -> None:
    for res, n in ((10, 10980), (20, 5490), (60, 1830)):
        g = tile_grid("32TMS", res)
        assert g.shape == (n, n) and g.res == res
        assert g.transform.c == tile_grid("T32TMS", 10).transform.c
    assert tile_grid("32TMS").crs.to_epsg() == 32632
    assert tile_grid("01WCP").crs.to_epsg() == 32601
    assert tile_grid("60CWS").crs.to_epsg() == 32760
    assert parse_tile("t1CCV") == (1, "C", "C", "V")
    for bad in ("32IMS", "32TZZ", "99TMS", "32TIS", "hello", "32TAA"):  # A is not a zone-32 column letter
        with pytest.raises(TileCodeError):
            tile_grid(bad)
    with pytest.raises(TileCodeError):
        tile_grid("32TMS", 7)
