"""Remote reading: bytes fetched and wall time of a 20 m segmentation from a served COG item, and a
cold vs warm auxiliary-layer cache.

Everything is served from 127.0.0.1 by ``tests/httpserver.py`` (nothing touches the internet):

- the real 29RKH L2A bands of ``../shared/realdata`` transcoded to COGs (DEFLATE, 512² blocks,
  overviews), with the real Earth Search STAC item whose hrefs are rewritten to the server;
- DEM (Copernicus GLO-30 layout, 3600² float32 COG tiles) and tree-cover (Hansen layout, sparse
  40000² tiles) look-alikes from ``tests/auxtiles.py`` covering the tile.

Measured (bytes = body bytes the server sent; the bands' total size = sum of the served band files):

1. ``nimbus segment ITEM_URL --model rules`` (8 bands at 20 m) in a fresh process;
2. ``nimbus segment ITEM_URL --model L2A+aux --aux auto`` with an empty cache (cold), then again (warm);
3. :func:`nimbus.fetch.auto_aux` alone, cold and warm.

The real item's bands are decimated 10× upstream (the "20 m" grid is 549² pixels of 200 m), so the
figures are for a tenth of a tile's width; the ratios (bytes fetched / bands' size) are what carries over.

Usage:
    python benchmarks/bench_remote.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
REALDATA = Path(os.environ.get("NIMBUS_REALDATA", ROOT.parent / "shared" / "realdata"))
RKH = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
ITEM = "S2A_29RKH_20200219_0_L2A.json"
PREFIX = "https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/29/R/KH/2020/2/S2A_29RKH_20200219_0_L2A"


def _cogs(src: Path, dst: Path) -> None:
    from rasterio.shutil import copy as rio_copy

    dst.mkdir(parents=True, exist_ok=True)
    for tif in sorted(src.glob("*.tif")):
        rio_copy(tif, dst / tif.name, driver="COG", compress="DEFLATE", blocksize=512, overviews="AUTO")


def _segment(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nimbus", "segment", *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"nimbus segment failed:\n{proc.stderr}{proc.stdout}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_remote.json"))
    args = ap.parse_args()
    from auxtiles import make_copdem, make_tens
    from httpserver import LoopbackServer
    from onnx_builders import make_model

    from nimbus.fetch import auto_aux
    from nimbus.fetch.copdem import COPDEM
    from nimbus.fetch.grid import footprint, grid_of
    from nimbus.fetch.hansen import HANSEN
    from nimbus.fetch.mosaic import cells
    from nimbus.product import open_product

    folder = REALDATA / RKH
    if not folder.is_dir():
        raise SystemExit(f"real data not found at {folder} (set NIMBUS_REALDATA)")
    results: dict[str, object] = {"machine": f"{platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}"}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        _cogs(folder, tmp / "cogs")
        product = open_product(folder)  # the same grid as the served item
        fp = footprint(grid_of(product, 20))
        make_copdem(tmp / "copdem", [(c.south, c.west) for c in cells(fp, COPDEM)])
        make_tens(tmp / "hansen", "treecover", [(c.south, c.west) for c in cells(fp, HANSEN)], [(fp.west, fp.south, fp.east, fp.north)])
        model = make_model(tmp / "l2a-aux.onnx", channels=("B02", "B03", "B04", "B8A", "B11", "B12", "altitude", "treecover"),
                           kind="softmax", resolution=20.0, name="l2a-aux", version="1")  # fmt: skip
        with LoopbackServer() as srv:
            base = srv.add_dir("/cogs", tmp / "cogs")
            item = json.loads((folder / ITEM).read_text())
            for asset in item["assets"].values():
                asset["href"] = asset["href"].replace(PREFIX, base)
            url = srv.add_file("items/" + ITEM, json.dumps(item).encode(), "application/json")
            mirrors = {"altitude": srv.add_dir("/copdem", tmp / "copdem"), "treecover": srv.add_dir("/hansen", tmp / "hansen")}
            env = dict(os.environ, NIMBUS_COPDEM_URL=mirrors["altitude"], NIMBUS_HANSEN_URL=mirrors["treecover"],
                       NIMBUS_CACHE=str(tmp / "cache-seg"), PYTHONPATH=str(ROOT))  # fmt: skip
            sizes = {p.name: p.stat().st_size for p in (tmp / "cogs").glob("*.tif")}
            rules_bands = ("B02", "B03", "B04", "B05", "B08", "B8A", "B11", "B12")
            aux_bands = ("B02", "B03", "B04", "B8A", "B11", "B12")

            def run(name: str, cmd: list[str], bands: tuple[str, ...]) -> None:
                srv.reset_log()
                wall = _segment(cmd, env)
                got = {k: srv.bytes_sent(k) for k in ("/cogs/", "/copdem/", "/hansen/", "/items/")}
                need = sum(sizes[f"{b}.tif"] for b in bands)
                results[name] = {"wall_s": round(wall, 2), "bytes": got, "requests": len(srv.log),
                                 "bands_size": need, "all_bands_size": sum(sizes.values()),
                                 "fetched_over_bands": round(got["/cogs/"] / need, 3)}  # fmt: skip
                print(name, json.dumps(results[name]))

            run("segment_rules_20m", [url, "--model", "rules", "--out", str(tmp / "m1")], rules_bands)
            run("segment_aux_auto_cold", [url, "--model", str(model), "--aux", "auto", "--out", str(tmp / "m2")], aux_bands)
            run("segment_aux_auto_warm", [url, "--model", str(model), "--aux", "auto", "--out", str(tmp / "m3")], aux_bands)
            for state in ("cold", "warm"):
                srv.reset_log()
                t0 = time.perf_counter()
                auto_aux(product, ["altitude", "treecover"], 20, cache=tmp / "cache-aux", mirrors=mirrors)
                wall = time.perf_counter() - t0
                results[f"auto_aux_{state}"] = {"wall_s": round(wall, 3), "bytes": srv.bytes_sent(), "requests": len(srv.log),
                                                "dem_files_size": sum(p.stat().st_size for p in (tmp / "copdem").rglob("*.tif"))}  # fmt: skip
                print(f"auto_aux_{state}", json.dumps(results[f"auto_aux_{state}"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
