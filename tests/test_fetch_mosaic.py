"""Fetched auxiliary layers: windows of public-bucket look-alikes served from 127.0.0.1, warped onto tile grids.

The buckets (``tests/auxtiles.py``) hold synthetic tiles on the real grids (GLO-30 1° tiles with the
latitude-dependent longitude spacing and the half-pixel origin, Hansen/JRC 10° tiles of 0.00025°).
Two target grids: 12 km of tile 32VNM across 60° N and 10° E (four DEM tiles of 2400 and 1800 columns)
and 12 km of tile 01KAB across the antimeridian at 17° S (one DEM tile missing: sea).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject
from rasterio.warp import transform as warp_transform

from nimbus.errors import AuxiliaryFetchError, NimbusWarning
from nimbus.fetch.copdem import COPDEM
from nimbus.fetch.grid import Grid, footprint
from nimbus.fetch.hansen import HANSEN
from nimbus.fetch.jrcwater import JRC_GSW
from nimbus.fetch.mosaic import cells, fetch_layer
from nimbus.grid import tile_grid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auxtiles import dem_height, make_copdem, make_tens  # noqa: E402
from httpserver import LoopbackServer  # noqa: E402

CHUNK = 16384  # GDAL's /vsicurl/ chunk


def _sub(tile: str, col: int, row: int, n: int = 200, res: int = 60) -> Grid:
    g = tile_grid(tile, res)
    return Grid(tile, g.crs, g.transform @ Affine.translation(col, row), (n, n))


NORTH = _sub("32VNM", 830, 703)  # around (10° E, 60° N)
DATELINE = _sub("01KAB", 1245, 1267)  # around (180°, 17° S)


@pytest.fixture(scope="module")
def buckets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("buckets")
    make_copdem(root / "copdem", [(59, 9), (59, 10), (60, 9), (60, 10)])
    make_copdem(root / "copdem-am", [(-18, -180), (-18, 179), (-17, -180)], ref=180.0)  # (-17, 179) is sea
    boxes = [(9.8, 59.9, 10.2, 60.1), (179.8, -17.2, 180.2, -16.8)]
    make_tens(root / "hansen", "treecover", [(50, 0), (50, 10), (60, 0), (60, 10), (-20, 170), (-20, -180)], boxes)
    make_tens(root / "jrc", "water", [(50, 0), (50, 10), (60, 0), (60, 10)], boxes)
    return root


@pytest.fixture()
def server(buckets: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "3")
    with LoopbackServer() as srv:
        for name in ("copdem", "copdem-am", "hansen", "jrc"):
            srv.add_dir("/" + name, buckets / name)
        yield srv


def _centres(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    h, w = grid.shape
    rr, cc = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    x, y = grid.transform @ (cc, rr)
    lon, lat = warp_transform(grid.crs, "EPSG:4326", x.ravel().tolist(), y.ravel().tolist())
    return np.asarray(lon).reshape(h, w), np.asarray(lat).reshape(h, w)


def _one_pass(files: list[Path], grid: Grid, resampling: Resampling) -> np.ndarray:
    """gdalwarp of whole tiles onto the grid, later files winning (what `gdalwarp a.tif b.tif out.tif` does)."""
    out = np.full(grid.shape, np.nan, np.float32)
    for f in files:
        part = np.full(grid.shape, np.nan, np.float32)
        with rasterio.open(f) as src:
            reproject(rasterio.band(src, 1), part, dst_transform=grid.transform, dst_crs=grid.crs, dst_nodata=np.nan,
                      src_nodata=src.nodata, resampling=resampling)  # fmt: skip
        ok = np.isfinite(part)
        out[ok] = part[ok]
    return out


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        return ds.read(1).astype(np.float32), ds.tags()


def test_dem_near_60n_is_the_one_pass_warp_and_follows_each_files_grid(server, buckets: Path, tmp_path: Path) -> None:
    out = tmp_path / "32VNM_altitude_60m.tif"
    report, pieces = fetch_layer(COPDEM, NORTH, out, server.url + "/copdem", tmp_path / "cache", tmp_path)
    assert report.missing == 0
    z, tags = _read(out)
    # the same tiles warped whole, in one pass: equal (the windows hold every pixel the warp uses)
    whole = sorted((buckets / "copdem").glob("*/*.tif"))
    np.testing.assert_allclose(z, _one_pass(whole, NORTH, Resampling.bilinear), atol=1e-3)
    # and the formula at the pixel centres: a half-pixel or spacing error would shift heights by ~0.5 m
    lon, lat = _centres(NORTH)
    err = z - dem_height(lon, lat)
    assert abs(float(err.mean())) < 0.05 and float(np.percentile(np.abs(err), 99)) < 0.25, (err.mean(), np.abs(err).max())
    # the tiles of 60-70° N have 1800 columns, those of 50-60° N 2400: both were read with their own grid
    widths = {p.name: p.size[1] for p in pieces}
    assert widths == {
        "Copernicus_DSM_COG_10_N59_00_E009_00_DEM.tif": 2400, "Copernicus_DSM_COG_10_N59_00_E010_00_DEM.tif": 2400,
        "Copernicus_DSM_COG_10_N60_00_E009_00_DEM.tif": 1800, "Copernicus_DSM_COG_10_N60_00_E010_00_DEM.tif": 1800,
    }  # fmt: skip
    assert tags["source_id"] == "copdem-glo30" and "Airbus" in tags["credit"] and "Copernicus DEM licence" in tags["licence"]
    assert tags["source_version"] == COPDEM.version and tags["units"] == "m above the geoid" and tags.get("sea_tiles", "") == ""


def test_only_the_blocks_of_the_windows_are_fetched(server, buckets: Path, tmp_path: Path) -> None:
    server.reset_log()
    out = tmp_path / "32VNM_altitude_60m.tif"
    _, pieces = fetch_layer(COPDEM, NORTH, out, server.url + "/copdem", tmp_path / "cache", tmp_path)
    fp = footprint(NORTH)
    for piece in pieces:
        path = next((buckets / "copdem").glob(f"*/{piece.name}"))
        with rasterio.open(path) as ds:
            # the window covers the footprint's part of the file and not much more
            (r0, r1), (c0, c1) = piece.window.toranges()
            west, north = ds.transform @ (c0, r0)
            east, south = ds.transform @ (c1, r1)
            b = ds.bounds
            assert west <= max(fp.west, b.left) and east >= min(fp.east, b.right)
            assert south <= max(fp.south, b.bottom) and north >= min(fp.north, b.top)
            assert piece.window.width * piece.window.height < 0.05 * ds.width * ds.height
            bw, bh = ds.block_shapes[0]
            need = set()
            for i in range(r0 // bh, (r1 - 1) // bh + 1):
                for j in range(c0 // bw, (c1 - 1) // bw + 1):
                    off = int(ds.get_tag_item(f"BLOCK_OFFSET_{j}_{i}", "TIFF", bidx=1))
                    size = int(ds.get_tag_item(f"BLOCK_SIZE_{j}_{i}", "TIFF", bidx=1))
                    need |= set(range(off // CHUNK - 1, (off + size) // CHUNK + 2))
            need |= {0, 1}  # the header (GDAL_INGESTED_BYTES_AT_OPEN = 32 kB)
            file_size = path.stat().st_size
        reqs = [r for r in server.requests(piece.name) if r.method == "GET"]
        assert reqs, piece.name
        for r in reqs:
            start, end = (int(x) for x in r.range.removeprefix("bytes=").split("-"))
            chunks = set(range(start // CHUNK, end // CHUNK + 1))
            assert chunks <= need, f"{piece.name}: {r.range} reads blocks outside the window"
        assert sum(r.sent for r in reqs) < file_size
    assert not server.requests("tileList.txt") or all(r.status == 200 for r in server.requests("tileList.txt"))


def test_treecover_and_water_equal_the_one_pass_warp(server, buckets: Path, tmp_path: Path) -> None:
    for source, bucket, name in ((HANSEN, "hansen", "treecover"), (JRC_GSW, "jrc", "water")):
        out = tmp_path / f"32VNM_{name}_60m.tif"
        report, pieces = fetch_layer(source, NORTH, out, f"{server.url}/{bucket}", tmp_path / "cache", tmp_path)
        got, tags = _read(out)
        whole = [buckets / bucket / source.path(c.south, c.west) for c in cells(footprint(NORTH), source)]
        ref = _one_pass(whole, NORTH, Resampling.bilinear if name == "treecover" else Resampling.nearest)
        assert report.missing == 0 and np.isfinite(ref).all()
        if name == "treecover":
            np.testing.assert_allclose(got, ref, atol=0.01)
        else:  # nearest: the same pixels, but for GDAL's approximate transformer (0.125 px) flipping a rare tie
            assert np.mean(got != np.rint(ref)) < 1e-3
        assert len(pieces) == 4 and all(p.window.width < 2000 and p.window.height < 2000 for p in pieces)
        assert tags["source_id"] == source.name and tags["licence"] and tags["credit"]


def test_antimeridian_and_a_missing_dem_tile_is_sea(server, tmp_path: Path) -> None:
    server.reset_log()
    out = tmp_path / "01KAB_altitude_60m.tif"
    fp = footprint(DATELINE)
    assert fp.west < 180.0 < fp.east or fp.west < -180.0 < fp.east  # across the antimeridian, unwrapped
    report, pieces = fetch_layer(COPDEM, DATELINE, out, server.url + "/copdem-am", tmp_path / "cache", tmp_path)
    z, tags = _read(out)
    assert report.missing == 0
    assert tags["sea_tiles"] == "Copernicus_DSM_COG_10_S17_00_E179_00_DEM.tif"
    assert not server.requests("S17_00_E179"), "a tile absent from tileList.txt is never requested"
    lon, lat = _centres(DATELINE)
    sea = (lat > -16.999) & (lon > 0) & (lon < 179.999)
    assert sea.sum() > 1000 and np.all(z[sea] == 0.0)
    land = (lat < -17.001) | ((lon < 0) & (lon > -179.999))
    err = (z - dem_height(lon, lat, ref=180.0))[land]
    assert abs(float(err.mean())) < 0.05 and float(np.percentile(np.abs(err), 99)) < 0.25
    assert {p.name for p in pieces} == {
        "Copernicus_DSM_COG_10_S18_00_E179_00_DEM.tif", "Copernicus_DSM_COG_10_S18_00_W180_00_DEM.tif",
        "Copernicus_DSM_COG_10_S17_00_W180_00_DEM.tif",
    }  # fmt: skip
    # tree cover from the 10° tiles on both sides of 180°
    tc = tmp_path / "01KAB_treecover_60m.tif"
    rep, parts = fetch_layer(HANSEN, DATELINE, tc, server.url + "/hansen", tmp_path / "cache", tmp_path)
    assert rep.missing == 0 and {p.name for p in parts} == {
        "Hansen_GFC-2023-v1.11_treecover2000_10S_170E.tif", "Hansen_GFC-2023-v1.11_treecover2000_10S_180W.tif",
    }  # fmt: skip


def test_a_404_is_a_named_error_and_500s_are_retried(server, buckets: Path, tmp_path: Path) -> None:
    # a tile listed in tileList.txt but absent on the mirror: not sea, an error naming the URL and the option
    listed = tmp_path / "listed"
    listed.mkdir()
    (listed / "tileList.txt").write_text((buckets / "copdem" / "tileList.txt").read_text())
    base = server.add_dir("/listed", listed)
    with pytest.raises(AuxiliaryFetchError, match=r"N59_00_E009_00_DEM\.tif: .*not found \(HTTP 404\).*NIMBUS_COPDEM_URL") as info:
        fetch_layer(COPDEM, NORTH, tmp_path / "a.tif", base, tmp_path / "cache", tmp_path)
    assert info.value.status == 404
    # a 10° tile missing: a named error too (tree cover is never silently 0)
    server.fault("treecover2000_60N_010E", "404", times=None)
    with pytest.raises(AuxiliaryFetchError, match=r"treecover2000_60N_010E\.tif.*404.*--mirror treecover=URL"):
        fetch_layer(HANSEN, NORTH, tmp_path / "b.tif", server.url + "/hansen", tmp_path / "cache", tmp_path)
    assert len(server.requests("treecover2000_60N_010E")) == 1, "a 404 is not retried"
    server.clear_faults()
    # 500s, a dropped transfer and a reset: retried, same pixels as a clean run
    clean = tmp_path / "clean.tif"
    fetch_layer(COPDEM, NORTH, clean, server.url + "/copdem", tmp_path / "cache", tmp_path)
    fresh = server.add_dir("/copdem-again", buckets / "copdem")  # new URLs: nothing in GDAL's block cache
    server.reset_log()
    server.fault("N59_00_E009_00_DEM.tif", "500", times=2)
    server.fault("N60_00_E010_00_DEM.tif", "drop", times=1)
    server.fault("N59_00_E010_00_DEM.tif", "reset", times=1)
    out = tmp_path / "faulty.tif"
    fetch_layer(COPDEM, NORTH, out, fresh, tmp_path / "cache", tmp_path)
    np.testing.assert_array_equal(_read(out)[0], _read(clean)[0])
    assert [r.status for r in server.requests("N59_00_E009")][:2] == [500, 500]
    assert any(r.status < 0 for r in server.requests("N60_00_E010")), "the drop happened"
    assert server.requests("N59_00_E010")[0].status == 0, "the reset happened"


def test_a_mirror_without_tile_list_takes_404_as_sea_with_a_warning(server, buckets: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    for name in ("Copernicus_DSM_COG_10_S18_00_E179_00_DEM", "Copernicus_DSM_COG_10_S18_00_W180_00_DEM",
                 "Copernicus_DSM_COG_10_S17_00_W180_00_DEM"):  # fmt: skip
        (bare / name).mkdir(parents=True)
        (bare / name / f"{name}.tif").symlink_to(buckets / "copdem-am" / name / f"{name}.tif")
    # a local folder laid out like the bucket is a mirror too
    with pytest.warns(NimbusWarning, match="tile list .* missing"):
        report, _ = fetch_layer(COPDEM, DATELINE, tmp_path / "x.tif", str(bare), tmp_path / "cache", tmp_path)
    z, tags = _read(tmp_path / "x.tif")
    assert report.missing == 0 and "S17_00_E179" in tags["sea_tiles"] and tags["source_url"] == str(bare)
    assert (z == 0).sum() > 1000 and (z != 0).sum() > 1000  # sea where the tile is missing, land elsewhere
