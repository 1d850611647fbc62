"""End to end, offline: ``nimbus segment <item URL> --aux auto`` on the real 29RKH L2A item served from 127.0.0.1.

The item's band COGs (real pixels, ``../shared/realdata``) and DEM / tree-cover tiles laid out like the
public buckets are served by the loopback server; the mirrors and the cache are given through
``NIMBUS_COPDEM_URL``, ``NIMBUS_HANSEN_URL`` and ``NIMBUS_CACHE`` (what ``--aux auto`` uses). The model
takes L2A bands plus altitude and tree cover (the shipped default model needs B10, which L2A lacks).
The result must be a valid class map and a ``<stem>_item.json`` whose classification is the model's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from nimbus.fetch.copdem import COPDEM
from nimbus.fetch.grid import footprint, grid_of
from nimbus.fetch.hansen import HANSEN
from nimbus.fetch.mosaic import cells
from nimbus.modelspec import ModelSpec
from nimbus.validate import is_valid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auxtiles import make_copdem, make_tens  # noqa: E402
from httpserver import LoopbackServer  # noqa: E402
from onnx_builders import make_model  # noqa: E402

RKH = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
ITEM = "S2A_29RKH_20200219_0_L2A.json"
PREFIX = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A"
CHANNELS = ("B02", "B03", "B04", "B8A", "B11", "B12", "altitude", "treecover")


@pytest.fixture(scope="module")
def served(realdata: Path, tmp_path_factory: pytest.TempPathFactory):
    """(server, item URL): the real item with loopback hrefs, and the DEM/tree-cover buckets its tile needs."""
    pytest.importorskip("pystac")
    from nimbus.product import open_product

    folder = realdata / RKH
    root = tmp_path_factory.mktemp("buckets")
    fp = footprint(grid_of(open_product(folder), 60))
    make_copdem(root / "copdem", [(c.south, c.west) for c in cells(fp, COPDEM)])
    make_tens(root / "hansen", "treecover", [(c.south, c.west) for c in cells(fp, HANSEN)], [(fp.west, fp.south, fp.east, fp.north)])
    with LoopbackServer() as srv:
        base = srv.add_dir("/cogs", folder)
        item = json.loads((folder / ITEM).read_text())
        for asset in item["assets"].values():
            asset["href"] = asset["href"].replace(PREFIX, base)
        url = srv.add_file("items/" + ITEM, json.dumps(item).encode(), "application/json")
        srv.add_dir("/copdem", root / "copdem")
        srv.add_dir("/hansen", root / "hansen")
        yield srv, url


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nimbus", *args], capture_output=True, text=True, env=env, timeout=600)


def test_segment_item_url_with_aux_auto(served, tmp_path: Path) -> None:
    srv, url = served
    model = make_model(tmp_path / "l2a-aux.onnx", channels=CHANNELS, kind="softmax", resolution=60.0, name="l2a-aux", version="1")
    spec = ModelSpec.from_onnx(model)
    env = dict(os.environ, NIMBUS_COPDEM_URL=srv.url + "/copdem", NIMBUS_HANSEN_URL=srv.url + "/hansen",
               NIMBUS_CACHE=str(tmp_path / "cache"), GDAL_HTTP_RETRY_DELAY="0.05", GDAL_HTTP_MAX_RETRY="3",
               AWS_S3_ENDPOINT="127.0.0.1:9", AWS_HTTPS="NO", AWS_VIRTUAL_HOSTING="FALSE")  # fmt: skip
    out = tmp_path / "maps"
    srv.reset_log()
    proc = _run(["segment", url, "--aux", "auto", "--model", str(model), "--out", str(out)], env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    maps = sorted(out.glob("*_classes.tif"))
    assert len(maps) == 1 and is_valid(maps[0])
    with rasterio.open(maps[0]) as ds:
        classes = ds.read(1)
        assert ds.crs.to_epsg() == 32629 and ds.dtypes[0] == "uint8" and ds.nodata == 255
    assert set(np.unique(classes)) <= {0, 1, 2, 3, 255} and (classes != 255).mean() > 0.5
    # the auxiliary layers came from the served buckets, into the cache
    assert srv.requests("/copdem/") and srv.requests("/hansen/")
    cached = sorted((tmp_path / "cache" / "aux" / "29RKH").glob("*/29RKH_*_60m.tif"))
    assert [p.name for p in cached] == ["29RKH_altitude_60m.tif", "29RKH_treecover_60m.tif"]
    # the STAC Item beside the map: classification = the model's classes, derived from the served item
    item_file = maps[0].with_name(maps[0].name.replace("_classes.tif", "_item.json"))
    assert item_file.is_file(), f"no STAC item beside {maps[0].name}"
    item = json.loads(item_file.read_text())
    band = item["assets"]["classes"]["raster:bands"][0]
    got = [(c["value"], c["name"]) for c in band["classification:classes"] if not c.get("nodata")]
    assert got == [(c.value, c.name) for c in spec.classes] and band["nodata"] == 255
    assert [lk["href"] for lk in item["links"] if lk["rel"] == "derived_from"] == [url]
    # a second run on the same tile: the aux cache is warm, no DEM or tree-cover request at all
    srv.reset_log()
    proc = _run(["segment", url, "--aux", "auto", "--model", str(model), "--out", str(tmp_path / "again")], env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert not srv.requests("/copdem/") and not srv.requests("/hansen/")


def test_dask_retries_a_transient_failure_and_not_a_404(served, tmp_path: Path) -> None:
    """On Dask, a product whose read fails with a 5xx is tried again (--retries) and completes; a
    404 is a failed record at once, never retried."""
    pytest.importorskip("distributed")
    from nimbus.engine.records import read_report

    srv, url = served
    env = dict(os.environ, GDAL_HTTP_MAX_RETRY="0", GDAL_HTTP_RETRY_DELAY="0.05", AWS_S3_ENDPOINT="127.0.0.1:9", AWS_HTTPS="NO")
    srv.reset_log()
    srv.fault(ITEM, "500", times=1)  # no retry inside the process: only Dask can save the product
    out = tmp_path / "o"
    proc = _run(["segment", url, "--model", "rules", "--out", str(out), "--workers", "1", "--retries", "2", "--nostac_item"], env)
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_report(out / "nimbus-segment-report.jsonl")
    assert rec["status"] == "done" and is_valid(Path(rec["outputs"]["classes"]))
    item_requests = [r.status for r in srv.log if r.path.endswith(ITEM)]
    assert item_requests[:2] == [500, 200], item_requests
    srv.reset_log()
    missing = url.replace(ITEM, "missing.json")
    proc = _run(["segment", missing, "--model", "rules", "--out", str(tmp_path / "o2"), "--workers", "1", "--retries", "2"], env)
    assert proc.returncode == 1 and "404" in proc.stderr
    assert [r.status for r in srv.log if r.path.endswith("missing.json")] == [404]
