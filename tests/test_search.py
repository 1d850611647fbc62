"""`nimbus search` against a STAC API stub and a static catalogue, all on 127.0.0.1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from nimbus.errors import UsageError
from nimbus.search import format_table, search_items, write_items

sys.path.insert(0, str(Path(__file__).resolve().parent))
from httpserver import LoopbackServer  # noqa: E402

RKH = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
ITEM = "S2A_29RKH_20200219_0_L2A.json"
PREFIX = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A"
BBOX = "-11.5,24.5,-11.0,25.0"  # inside 29RKH


def _items(realdata: Path, base: str) -> list[dict]:
    """Four items: the real one (hrefs -> base), a cloudier one, a later one, one on another tile."""
    real = json.loads((realdata / RKH / ITEM).read_text())
    real["assets"] = {k: dict(v, href=v["href"].replace(PREFIX, base)) for k, v in real["assets"].items() if not k.endswith("-jp2")}
    real["links"] = []
    out = [real]
    for new_id, when, cloud, tile, bbox in (
        ("S2B_29RKH_20200224_0_L2A", "2020-02-24T11:34:20Z", 63.0, "29RKH", real["bbox"]),
        ("S2A_29RKH_20200310_0_L2A", "2020-03-10T11:34:20Z", 1.5, "29RKH", real["bbox"]),
        ("S2A_32TMS_20200219_0_L2A", "2020-02-19T10:30:00Z", 2.0, "32TMS", [7.6, 45.9, 9.0, 46.9]),
    ):
        it = json.loads(json.dumps(real))
        it["id"], it["bbox"] = new_id, bbox
        it["properties"].update({"datetime": when, "eo:cloud_cover": cloud, "grid:code": f"MGRS-{tile}"})
        out.append(it)
    return out


@pytest.fixture()
def api(realdata: Path):
    """A STAC API stub: landing page and /search (which ignores every filter but the collection)."""
    with LoopbackServer() as srv:
        base = srv.add_dir("/cogs", realdata / RKH)
        items = _items(realdata, base)
        landing = {
            "type": "Catalog", "id": "stub", "stac_version": "1.0.0", "description": "stub",
            "conformsTo": ["https://api.stacspec.org/v1.0.0/core", "https://api.stacspec.org/v1.0.0/item-search"],
            "links": [{"rel": "self", "href": srv.url + "/"}, {"rel": "root", "href": srv.url + "/"},
                      {"rel": "search", "href": srv.url + "/search", "method": "GET", "type": "application/geo+json"},
                      {"rel": "search", "href": srv.url + "/search", "method": "POST", "type": "application/geo+json"}],
        }  # fmt: skip
        bodies: list[dict] = []

        def search(method: str, query: str, body: bytes) -> tuple[int, dict, bytes]:
            req = json.loads(body or b"{}")
            bodies.append(req)
            feats = [it for it in items if not req.get("collections") or it["collection"] in req["collections"]]
            doc = {"type": "FeatureCollection", "features": feats, "links": []}
            return 200, {"Content-Type": "application/geo+json"}, json.dumps(doc).encode()

        srv.add_handler("/", lambda m, q, b: (200, {"Content-Type": "application/json"}, json.dumps(landing).encode()))
        srv.add_handler("/search", search)
        yield srv, bodies


def _static(root: Path, items: list[dict]) -> Path:
    """catalog.json -> collection.json -> one item JSON per item (relative links)."""
    coll_dir = root / "sentinel-2-l2a"
    coll_dir.mkdir(parents=True)
    (root / "catalog.json").write_text(json.dumps({"type": "Catalog", "id": "static", "stac_version": "1.0.0", "description": "x",
                                                   "links": [{"rel": "child", "href": "./sentinel-2-l2a/collection.json"}]}))  # fmt: skip
    links = []
    for it in items:
        (coll_dir / f"{it['id']}.json").write_text(json.dumps(it))
        links.append({"rel": "item", "href": f"./{it['id']}.json"})
    (coll_dir / "collection.json").write_text(json.dumps({"type": "Collection", "id": "sentinel-2-l2a", "stac_version": "1.0.0",
                                                          "description": "x", "license": "proprietary", "links": links,
                                                          "extent": {}}))  # fmt: skip
    return root / "catalog.json"


def test_api_search_filters_and_lists(api, tmp_path: Path) -> None:
    pytest.importorskip("pystac_client")
    srv, bodies = api
    items = search_items(bbox=BBOX, datetime="2020-02-01/2020-02-29", cloud_cover=20, collections="sentinel-2-l2a", catalog=srv.url + "/")
    assert [it["id"] for it in items] == ["S2A_29RKH_20200219_0_L2A"]
    assert bodies and bodies[0]["collections"] == ["sentinel-2-l2a"] and bodies[0]["bbox"] == [-11.5, 24.5, -11.0, 25.0]
    every = search_items(tile="29RKH", collections="sentinel-2-l2a", catalog=srv.url + "/")
    assert [it["id"] for it in every] == ["S2A_29RKH_20200219_0_L2A", "S2B_29RKH_20200224_0_L2A", "S2A_29RKH_20200310_0_L2A"]
    table = format_table(every)
    assert "S2B_29RKH_20200224_0_L2A" in table and "2020-02-24T11:34:20Z" in table and "63.00" in table and "L2A" in table


def test_cli_search_writes_items_that_open(api, tmp_path: Path) -> None:
    pytest.importorskip("pystac_client")
    import numpy as np

    from nimbus.cli import NimbusCLI
    from nimbus.product import open_product
    from nimbus.sources import find_products

    srv, _ = api
    out = tmp_path / "items.json"
    text = NimbusCLI().search(bbox=BBOX, datetime="2020-02-19", collection="sentinel-2-l2a", catalog=srv.url + "/", out=str(out))
    assert "S2A_29RKH_20200219_0_L2A" in text and "1 item(s)" in text and str(out) in text
    refs = find_products(str(out))
    assert refs == [f"{out}#S2A_29RKH_20200219_0_L2A"]
    p = open_product(refs[0])
    assert p.layout == "stac" and p.tile == "29RKH"
    data, valid = p.read(["B04"], res=60)
    assert valid.mean() > 0.9 and np.all(data[0][valid] > 0)
    assert srv.requests("/cogs/B04.tif"), "bands read from the server"


def test_static_catalogue_on_disk_and_over_http(realdata: Path, tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        base = srv.add_dir("/cogs", realdata / RKH)
        items = _items(realdata, base)
        cat = _static(tmp_path / "static", items)
        found = search_items(bbox=BBOX, cloud_cover=10, collections="sentinel-2-l2a", catalog=str(cat))
        assert [it["id"] for it in found] == ["S2A_29RKH_20200219_0_L2A", "S2A_29RKH_20200310_0_L2A"]
        srv.add_dir("/static", tmp_path / "static")
        over_http = search_items(datetime="2020-02-19/..", tile="T32TMS", collections="sentinel-2-l2a", catalog=srv.url + "/static/catalog.json")
        assert [it["id"] for it in over_http] == ["S2A_32TMS_20200219_0_L2A"]
        written = write_items(found, tmp_path / "out" / "items.json")
        assert [f["id"] for f in json.loads(written.read_text())["features"]] == [it["id"] for it in found]


def test_bad_filters_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--bbox"):
        search_items(bbox="1,2,3", catalog=str(tmp_path))
    with pytest.raises(UsageError, match="--datetime"):
        search_items(datetime="yesterday", catalog=str(tmp_path))
    with pytest.raises(UsageError, match="--cloud-cover"):
        search_items(cloud_cover=120, catalog=str(tmp_path))
    with pytest.raises(UsageError, match="--catalog"):
        search_items(catalog=str(tmp_path / "nope.json"))


def test_segment_takes_search_options_directly(api, tmp_path: Path) -> None:
    """`nimbus segment --bbox --datetime --catalog` segments what the search finds (one item here)."""
    pytest.importorskip("pystac_client")
    from nimbus.cli import NimbusCLI
    from nimbus.validate import is_valid

    srv, _ = api
    out = tmp_path / "maps"
    text = NimbusCLI().segment(bbox=BBOX, datetime="2020-02-19", collection="sentinel-2-l2a", catalog=srv.url + "/",
                               out=str(out), stac_item=False)  # fmt: skip
    (classes,) = sorted(out.glob("*_classes.tif"))
    assert "T29RKH_20200219" in classes.name and is_valid(classes) and str(classes) in text
    assert (out / "nimbus-search-items.json").is_file()  # what was searched is kept beside the maps
    from nimbus.errors import UsageError

    with pytest.raises(UsageError, match="found no item"):
        NimbusCLI().segment(bbox=BBOX, datetime="2020-02-19", collection="landsat-c2-l2", catalog=srv.url + "/", out=str(out))
