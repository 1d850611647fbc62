"""STAC items read in place: the real 29RKH Earth Search item served from 127.0.0.1 (never the internet).

The item's band hrefs are rewritten to a loopback server that serves the real COGs of
``../shared/realdata/rio-tiler-pds_S2_L2A_COG_29RKH_20200219`` with Range support, a request log and
injected faults. The harmonisation rules are checked on small COG crops of the same pixels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from rasterio.windows import Window

from nimbus.bands import BANDS, L2A_BANDS
from nimbus.errors import ProductError
from nimbus.product import open_product
from nimbus.remote import RemoteReadError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from httpserver import LoopbackServer  # noqa: E402

RKH = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
ITEM = "S2A_29RKH_20200219_0_L2A.json"
PREFIX = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A"
CHUNK = 16384  # GDAL's /vsicurl/ chunk: ranges are rounded to it


def _item(folder: Path, base: str) -> dict:
    item = json.loads((folder / ITEM).read_text())
    for asset in item["assets"].values():
        asset["href"] = asset["href"].replace(PREFIX, base)
    return item


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any s3:// href a test forgot to rewrite goes to a dead loopback port, never to AWS."""
    monkeypatch.setenv("AWS_S3_ENDPOINT", "127.0.0.1:9")
    monkeypatch.setenv("AWS_HTTPS", "NO")
    monkeypatch.setenv("AWS_VIRTUAL_HOSTING", "FALSE")


@pytest.fixture()
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GDAL_HTTP_RETRY_DELAY", "0.05")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "3")


@pytest.fixture()
def served(realdata: Path):
    """(server, item URL, local folder): the real item with its COG hrefs on a loopback server."""
    folder = realdata / RKH
    with LoopbackServer() as srv:
        base = srv.add_dir("/cogs", folder)
        url = srv.add_file("items/" + ITEM, json.dumps(_item(folder, base)).encode(), "application/json")
        yield srv, url, folder


def test_item_url_reads_the_same_pixels_as_the_cog_folder(served) -> None:
    srv, url, folder = served
    remote, local = open_product(url), open_product(folder)
    assert remote.layout == "stac" and remote.harmonization.startswith("Earth Search sentinel-2-l2a")
    assert (remote.product_id, remote.tile, remote.level, remote.baseline) == (local.product_id, "29RKH", "L2A", "02.14")
    assert set(remote.bands) == set(L2A_BANDS) and remote.crs == local.crs
    for res in (10, 20, 60):
        assert remote.shape(res) == local.shape(res) and remote.transform(res) == local.transform(res)
    names = ["B01", "B02", "B05", "B8A", "B11", "SCL"]
    a, va = remote.read(names, res=20)
    b, vb = local.read(names, res=20)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(va, vb)
    assert all(r.status in (200, 206) for r in srv.log)


def test_windowed_read_fetches_only_the_tiles_it_needs(served) -> None:
    import rasterio

    srv, url, folder = served
    p = open_product(url)
    srv.reset_log()
    win = Window(600, 600, 64, 64)  # inside tile (1, 1) of the 512x512-tiled 1098^2 B04
    data, _ = p.read(["B04"], res=10, window=win, kind="dn")
    with rasterio.open(folder / "B04.tif") as ds:
        off = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
        np.testing.assert_array_equal(data[0], ds.read(1, window=win))
    file_size = (folder / "B04.tif").stat().st_size
    reqs = srv.requests()
    assert reqs and all(r.path.endswith("/B04.tif") for r in reqs), "only the band read is fetched"
    lo, hi = off // CHUNK * CHUNK, -(-(off + size) // CHUNK) * CHUNK
    for r in reqs:
        start, end = (int(x) for x in r.range.removeprefix("bytes=").split("-"))
        assert lo <= start and end < hi, f"{r.range} outside the needed tile [{off}, {off + size})"
    fetched = srv.bytes_sent()
    assert fetched <= size + 2 * CHUNK and fetched < file_size / 4
    print(f"windowed read 64x64 of B04: {fetched} bytes fetched in {len(reqs)} request(s); tile {size} bytes; file {file_size} bytes")


def test_500s_and_dropped_connections_are_retried(served, fast_retries) -> None:
    srv, url, folder = served
    p, local = open_product(url), open_product(folder)
    srv.reset_log()
    srv.fault("/cogs/B02.tif", "500", times=2)
    srv.fault("/cogs/B03.tif", "drop", times=1)
    srv.fault("/cogs/B08.tif", "reset", times=1)
    win = Window(0, 0, 300, 200)
    a, _ = p.read(["B02", "B03", "B08"], window=win, kind="dn")
    b, _ = local.read(["B02", "B03", "B08"], window=win, kind="dn")
    np.testing.assert_array_equal(a, b)
    statuses = {band: [r.status for r in srv.requests(f"/{band}.tif")] for band in ("B02", "B03", "B08")}
    assert statuses["B02"][:2] == [500, 500] and statuses["B02"][-1] == 206
    assert statuses["B03"][0] == -206 and statuses["B03"][-1] == 206  # cut short, then read again
    assert statuses["B08"][0] == 0 and statuses["B08"][-1] == 206  # reset, then read again


def test_a_404_is_a_named_error(served, fast_retries) -> None:
    srv, url, folder = served
    base = srv.add_dir("/gone", folder)
    srv.fault("/gone/B05.tif", "404", times=None)
    bad = srv.add_file("items/gone.json", json.dumps(_item(folder, base)).encode(), "application/json")
    with pytest.raises(RemoteReadError, match=r"/gone/B05\.tif.*404") as info:
        open_product(bad)
    assert isinstance(info.value, ProductError) and info.value.status == 404
    assert len(srv.requests("/gone/B05.tif")) == 1, "a 404 is not retried"
    with pytest.raises(RemoteReadError, match="items/missing.json"):
        open_product(srv.url + "/items/missing.json")


def test_item_json_file_and_pystac_item(realdata: Path, tmp_path: Path) -> None:
    folder = realdata / RKH
    here = tmp_path / "item"
    here.mkdir()
    for tif in folder.glob("*.tif"):
        (here / tif.name).symlink_to(tif)
    item = _item(folder, ".")  # relative hrefs ("./B04.tif"), resolved against the item file
    item["links"] = [lk for lk in item["links"] if lk["rel"] not in ("self", "canonical")]
    path = here / "item.json"
    path.write_text(json.dumps(item))
    from_file = open_product(path)
    assert from_file.layout == "stac" and from_file.harmonization.startswith("Earth Search sentinel-2-l2a: baseline 02.14")
    local = open_product(folder)
    np.testing.assert_array_equal(from_file.read(["B04", "B11"], res=60)[0], local.read(["B04", "B11"], res=60)[0])
    pystac = pytest.importorskip("pystac")
    pitem = pystac.Item.from_dict(item)
    pitem.set_self_href(str(path))  # relative asset hrefs resolve against it
    np.testing.assert_array_equal(open_product(pitem).read(["B04"], res=60)[0], local.read(["B04"], res=60)[0])
    # an ItemCollection (what `nimbus search --out` writes): FILE#ID picks one item
    coll = here / "items.json"
    coll.write_text(json.dumps({"type": "FeatureCollection", "features": [item]}))
    assert open_product(f"{coll}#{item['id']}").product_id == local.product_id


def test_info_says_which_harmonisation_rule(served) -> None:
    from nimbus.cli import NimbusCLI

    _, url, _ = served
    text = NimbusCLI().info(url)
    assert "harmonisation Earth Search sentinel-2-l2a: baseline 02.14 < 04.00: no offset" in text
    assert "(stac)" in text and "/cogs/B04.tif" in text


# ----------------------------------------------------------------------------- harmonisation


def _crop_folder(realdata: Path, out: Path, shift: int) -> Path:
    """Small COGs of the real bands (10 m: 240^2, 20 m: 120^2, 60 m: 40^2), DN + ``shift`` where valid."""
    import rasterio
    from rasterio.windows import transform as wtransform

    out.mkdir(parents=True, exist_ok=True)
    sizes = {"B01": 40, "B02": 240, "B03": 240, "B04": 240, "B08": 240, "B05": 120, "B8A": 120, "B11": 120, "B12": 120}
    for band, n in sizes.items():
        with rasterio.open(realdata / RKH / f"{band}.tif") as src:
            win = Window(0, 0, n, n)
            arr = src.read(1, window=win).astype(np.int32)
            arr = np.where(arr > 0, np.clip(arr + shift, 1, 65535), 0).astype(np.uint16)
            profile = dict(driver="GTiff", width=n, height=n, count=1, dtype="uint16", crs=src.crs,
                           transform=wtransform(win, src.transform), nodata=0, tiled=True, blockxsize=128, blockysize=128)  # fmt: skip
            with rasterio.open(out / f"{band}.tif", "w", **profile) as dst:
                dst.write(arr, 1)
    return out


def _variant(realdata: Path, folder: Path, **props) -> dict:
    item = json.loads((realdata / RKH / ITEM).read_text())
    keep = {k: v for k, v in item["assets"].items() if not k.endswith("-jp2")}
    assets = {}
    for key, asset in keep.items():
        name = Path(asset["href"]).name
        if (folder / name).exists():
            assets[key] = dict(asset, href=str(folder / name))
    item["assets"] = assets
    collection = props.pop("collection", None)
    if collection:
        item["collection"] = collection
    item["properties"].update(props)
    return item


def _reference(realdata: Path, tmp_path: Path) -> tuple[np.ndarray, np.ndarray]:
    return open_product(_crop_folder(realdata, tmp_path / "ref", 0)).read(["B02", "B11"], res=20, kind="dn")


def test_c1_l2a_offset_from_raster_bands_applied_once(realdata: Path, tmp_path: Path) -> None:
    ref, ref_valid = _reference(realdata, tmp_path)
    folder = _crop_folder(realdata, tmp_path / "c1", 1000)  # Collection 1: DN carry the +1000
    item = _variant(realdata, folder, collection="sentinel-2-c1-l2a", **{"s2:processing_baseline": "05.10", "processing:version": "05.10"})
    item["properties"] = {k: v for k, v in item["properties"].items() if not k.startswith("earthsearch:")}
    for asset in item["assets"].values():
        for rb in asset.get("raster:bands", []):
            if rb.get("scale") == 0.0001:
                rb["offset"] = -0.1
    p = open_product(item)
    assert set(p.offsets.values()) == {-1000.0} and "raster:bands offset/scale = -1000 DN" in p.harmonization
    data, valid = p.read(["B02", "B11"], res=20)
    np.testing.assert_array_equal(valid, ref_valid)
    np.testing.assert_array_equal(data[:, valid], np.clip(ref[:, valid], 1, None))  # once: not -2000
    refl, _ = p.read(["B02"], res=20, kind="reflectance")
    np.testing.assert_allclose(refl[0][valid], ref[0][valid] / 10000.0, rtol=1e-6)


@pytest.mark.parametrize("shift, flag, expect", [(0, False, 0.0), (1000, True, -1000.0)])
def test_earth_search_l2a_flag_wrong_both_ways_pixels_decide(realdata: Path, tmp_path: Path, shift: int, flag: bool, expect: float) -> None:
    ref, _ = _reference(realdata, tmp_path)
    folder = _crop_folder(realdata, tmp_path / f"es{shift}", shift)
    item = _variant(realdata, folder, **{"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": flag})
    p = open_product(item)
    assert set(p.offsets.values()) == {expect}, p.harmonization
    assert "pixels" in p.harmonization and f"flag said {flag}" in p.harmonization
    data, valid = p.read(["B02", "B11"], res=20)
    np.testing.assert_array_equal(data[:, valid], np.clip(ref[:, valid], 1, None))


def test_planetary_computer_and_cdse_keys_use_the_baseline(realdata: Path, tmp_path: Path) -> None:
    folder = _crop_folder(realdata, tmp_path / "pc", 1000)
    ref, _ = _reference(realdata, tmp_path)
    base = _variant(realdata, folder, **{"s2:processing_baseline": "04.00"})
    base["properties"] = {k: v for k, v in base["properties"].items() if not k.startswith("earthsearch:")}
    from nimbus.sources.stac import COMMON_NAMES

    pc = dict(base, assets={COMMON_NAMES[k] if COMMON_NAMES.get(k, "").startswith("B") else k: v for k, v in base["assets"].items()})
    pc["links"] = [{"rel": "self", "href": "https://planetarycomputer.microsoft.com/api/stac/v1/collections/sentinel-2-l2a/items/x"}]
    for asset in pc["assets"].values():
        asset.pop("raster:bands", None)
    p = open_product(pc)
    assert set(p.bands) >= {"B01", "B02", "B04", "B8A", "B11"} and p.harmonization.startswith("Planetary Computer: baseline 04.00")
    np.testing.assert_array_equal(p.read(["B02", "B11"], res=20)[0], open_product(_variant(realdata, folder, **{"s2:processing_baseline": "04.00"})).read(["B02", "B11"], res=20)[0])
    # CDSE spelling: B04_10m, B04_20m...: the native resolution is picked
    cdse = dict(pc, assets={}, links=[{"rel": "self", "href": "https://stac.dataspace.copernicus.eu/v1/collections/sentinel-2-l2a/items/x"}])
    for key, asset in pc["assets"].items():
        if key.startswith("B"):
            res = 10 if key in ("B02", "B03", "B04", "B08") else 20 if key in ("B05", "B8A", "B11", "B12") else 60
            cdse["assets"][f"{key}_{res}m"] = asset
            cdse["assets"][f"{key}_60m" if res != 60 else f"{key}_20m"] = dict(asset, href=str(folder / "missing.tif"))
    q = open_product(cdse)
    assert q.harmonization.startswith("CDSE: baseline 04.00 >= 04.00: -1000") and set(q.offsets.values()) == {-1000.0}
    data, valid = q.read(["B02", "B11"], res=20)
    np.testing.assert_array_equal(data[:, valid], np.clip(ref[:, valid], 1, None))
    assert set(BANDS) >= set(q.bands)
