"""Training labels: class maps from ExoLabs, S2cloudless, JRC water, L2A scene classification or a truth map.

Classes: 0 cloud, 1 ground, 2 snow, 3 water, 255 no data (ignored by training).

Inputs (any CRS and grid; reprojected by nearest neighbour onto the target grid, refused when they
do not overlap it at all):

- ExoLabs classification, band 1: 0 nodata, 2 dark region, 3 cloud, 4 snow; band 2: 1 no snow, 2 snow.
  "ExoLabs snow" is band 2 = 2 or band 1 = 4; "ExoLabs cloud" is band 1 = 3.
- S2cloudless cloud probability rasters, 0-100 (or 0-1), or computed locally from the product with
  the ``s2cloudless`` package, fed top-of-atmosphere reflectance (10 bands at 160 m, as it was trained).
- JRC global surface water: value 1 = water (or, with ``water_threshold``, occurrence >= threshold).

Rules, in the original order:

- with S2cloudless: start from cloud (0); ExoLabs no snow or dark region -> ground (1); water -> 3;
  ExoLabs snow -> 2; S2cloudless probability > ``threshold`` (default 0.5) -> cloud, overriding all.
- without S2cloudless: start from ground (1); water -> 3; ExoLabs snow -> 2; ExoLabs cloud -> 0.

``masked``: pixels with ExoLabs nodata (band 1 = 0) or without data in any label input become 255.
Without it they keep the class the rules give, and the output's metadata says how many there were
(``uncovered_pixels``). Pixels without image data (the product's nodata, or an auxiliary layer of
the arrays without a value) are 255 in every mode: no pixel without input data ever carries a class.

L2A scene classification (``SCL_TO_CLASS``), for users without ExoLabs: 8, 9 (cloud medium/high
probability) and 10 (thin cirrus) -> cloud; 11 snow -> snow; 6 water -> water; 2 dark area,
3 cloud shadow, 4 vegetation, 5 not vegetated -> ground; 0 nodata, 1 saturated/defective and
7 unclassified -> 255.

A truth map (``truth``): a class map already in Nimbus codes (0..3, 255 no data), e.g. the
``<product id>_truth.tif`` that :func:`nimbus.synthetic.make_product` writes beside a synthetic
product (``nimbus labels ARRAYS/<id> --truth`` finds it there), reprojected (nearest) onto the
target grid; any other value is refused.

The output is one uint8 COG (palette and class names of :data:`nimbus.legend.DEFAULT_LEGEND`, nodata 255) on the grid of the product's arrays (or of a
product at a chosen resolution), with the date read from the metadata, never from file names.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import reproject
from rasterio.windows import Window

from nimbus.atomic import atomic_path
from nimbus.auxiliary import read_layer
from nimbus.errors import LabelError
from nimbus.legend import DEFAULT_LEGEND

__all__ = [
    "CLOUD",
    "GROUND",
    "LabelReport",
    "NODATA",
    "S2CLOUDLESS_BANDS",
    "SCL_TO_CLASS",
    "SNOW",
    "WATER",
    "build_labels",
    "cloud_probability",
    "cloud_probability_coarse",
    "exolabs_rules",
    "find_truth",
    "scl_to_classes",
]

CLOUD, GROUND, SNOW, WATER = (DEFAULT_LEGEND.values[DEFAULT_LEGEND.names.index(n)] for n in ("cloud", "ground", "snow", "water"))
NODATA = 255

#: The bands ``s2cloudless`` expects (``all_bands=False``), in its order.
S2CLOUDLESS_BANDS: tuple[str, ...] = ("B01", "B02", "B04", "B05", "B08", "B8A", "B09", "B10", "B11", "B12")

#: L2A scene classification value -> Nimbus class.
SCL_TO_CLASS: dict[int, int] = {
    0: NODATA,  # no data
    1: NODATA,  # saturated or defective
    2: GROUND,  # dark area pixels (topographic shadows, dark features)
    3: GROUND,  # cloud shadows
    4: GROUND,  # vegetation
    5: GROUND,  # not vegetated
    6: WATER,  # water
    7: NODATA,  # unclassified
    8: CLOUD,  # cloud medium probability
    9: CLOUD,  # cloud high probability
    10: CLOUD,  # thin cirrus
    11: SNOW,  # snow / ice
}

_SCL_LUT = np.full(256, NODATA, np.uint8)
for _k, _v in SCL_TO_CLASS.items():
    _SCL_LUT[_k] = _v


def scl_to_classes(scl: np.ndarray) -> np.ndarray:
    """Map L2A scene classification values to Nimbus classes (``SCL_TO_CLASS``; anything else 255)."""
    scl = np.asarray(scl)
    out = _SCL_LUT[np.clip(scl, 0, 255).astype(np.uint8)]
    out[(scl < 0) | (scl > 255)] = NODATA
    return out


def exolabs_rules(
    exo_class: np.ndarray,
    exo_snow: np.ndarray,
    water: np.ndarray | None = None,
    cloud_prob: np.ndarray | None = None,
    threshold: float = 0.5,
) -> np.ndarray:
    """Apply the labelling rules to ExoLabs (+ water, + S2cloudless) arrays of one grid.

    Args:
        exo_class: ExoLabs band 1 (0 nodata, 2 dark region, 3 cloud, 4 snow).
        exo_snow: ExoLabs band 2 (1 no snow, 2 snow).
        water: boolean water mask (or None).
        cloud_prob: cloud probability 0..1 (or None: the rules without S2cloudless apply).
        threshold: probability above which a pixel is cloud.

    Returns:
        uint8 classes (no 255: masking is the caller's).
    """
    snow = (exo_snow == 2) | (exo_class == 4)
    if cloud_prob is not None:
        out = np.full(exo_class.shape, CLOUD, np.uint8)
        out[(exo_snow == 1) | (exo_class == 2)] = GROUND
        if water is not None:
            out[water] = WATER
        out[snow] = SNOW
        out[cloud_prob > threshold] = CLOUD
    else:
        out = np.full(exo_class.shape, GROUND, np.uint8)
        if water is not None:
            out[water] = WATER
        out[snow] = SNOW
        out[exo_class == 3] = CLOUD
    return out


def _block_mean(data: np.ndarray, valid: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over f x f blocks of valid pixels ((C, h, w) -> (C, ceil(h/f), ceil(w/f))), and the block validity."""
    c, h, w = data.shape
    H, W = -(-h // f), -(-w // f)
    d = np.zeros((c, H * f, W * f), np.float64)
    v = np.zeros((H * f, W * f), np.float64)
    d[:, :h, :w] = np.where(valid, data, 0)
    v[:h, :w] = valid
    sums = d.reshape(c, H, f, W, f).sum(axis=(2, 4))
    counts = v.reshape(H, f, W, f).sum(axis=(1, 3))
    ok = counts >= (f * f) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(ok, sums / np.maximum(counts, 1), 0).astype(np.float32)
    return mean, ok


def cloud_probability_coarse(product: Any, work_res: int = 160, strip_rows: int = 1024) -> tuple[np.ndarray, CRS, Affine]:
    """Cloud probability of a product at the detector's own resolution (``s2cloudless``).

    The detector gets top-of-atmosphere reflectance (``Product.read(kind="reflectance")``, offsets
    applied, divided by the quantification) of its 10 bands, averaged over blocks to ``work_res``
    metres (it was trained at 160 m). Blocks less than half covered by data are NaN.

    Args:
        product: an opened L1C product.
        work_res: the pixel size the detector runs at (a multiple of 10, 20 or 60).
        strip_rows: rows of the reading grid processed at a time (memory bound).

    Returns:
        ``(probability float32 (h, w) 0..1 or NaN, crs, transform)`` of the coarse grid.

    Raises:
        LabelError: the product lacks a band the detector needs (e.g. B10 in L2A).
        MissingExtraError: the ``s2cloudless`` package is not installed (extra ``[labels]``).
    """
    missing = [b for b in S2CLOUDLESS_BANDS if b not in set(product.bands)]
    if missing:
        raise LabelError(
            f"{getattr(product, 'path', product)}: s2cloudless needs {', '.join(missing)} (an L1C product); "
            f"give probability rasters (--cloudprob) or use the scene classification (--scl)"
        )
    from nimbus.extras import require

    S2PixelCloudDetector = require("labels", "s2cloudless").S2PixelCloudDetector

    base = max(r for r in (10, 20, 60) if work_res % r == 0)
    f = work_res // base
    gh, gw = product.shape(base)
    step = max(f, (strip_rows // f) * f)
    feats, oks = [], []
    for r0 in range(0, gh, step):
        rows = min(step, gh - r0)
        refl, valid = product.read(list(S2CLOUDLESS_BANDS), res=base, window=Window(0, r0, gw, rows), kind="reflectance")
        mean, ok = _block_mean(refl, valid, f)
        feats.append(mean)
        oks.append(ok)
    x = np.concatenate(feats, axis=1)
    ok = np.concatenate(oks, axis=0)
    detector = S2PixelCloudDetector(threshold=0.4, average_over=1, dilation_size=1, all_bands=False)
    prob = detector.get_cloud_probability_maps(np.moveaxis(x, 0, -1)[None])[0].astype(np.float32)
    prob[~ok] = np.nan
    return prob, CRS.from_user_input(product.crs), product.transform(base) @ Affine.scale(f)


def _warp_probability(coarse: tuple[np.ndarray, CRS, Affine], crs: CRS, transform: Affine, shape: tuple[int, int]) -> np.ndarray:
    prob, src_crs, src_transform = coarse
    out = np.full(tuple(shape), np.nan, np.float32)
    reproject(prob, out, src_transform=src_transform, src_crs=src_crs, src_nodata=np.nan,
              dst_transform=transform, dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.bilinear)
    return out


def cloud_probability(
    product: Any,
    crs: CRS | str,
    transform: Affine,
    shape: tuple[int, int],
    work_res: int = 160,
) -> np.ndarray:
    """Cloud probability (0..1, NaN without data) of a product, computed locally, on a target grid.

    :func:`cloud_probability_coarse` interpolated bilinearly onto the grid.

    Args:
        product: an opened L1C product.
        crs: the target grid's CRS.
        transform: the target grid's transform.
        shape: the target grid's (height, width).
        work_res: the pixel size the detector runs at.

    Returns:
        float32 (height, width).
    """
    return _warp_probability(cloud_probability_coarse(product, work_res), CRS.from_user_input(crs), transform, shape)


@dataclass
class LabelReport:
    """What :func:`build_labels` wrote.

    Attributes:
        path: the label COG.
        source: "exolabs+s2cloudless", "exolabs+cloudprob", "exolabs", "scl", "rules" or "truth".
        counts: pixels per class value (255 included).
        uncovered_pixels: pixels without ExoLabs data or without data in a label input.
        no_image_pixels: pixels without image data (always 255).
        reprojected: label inputs that were not on the target grid and were reprojected.
        date: the product's sensing date (ISO), from its metadata.
    """

    path: Path
    source: str
    counts: dict[int, int] = field(default_factory=dict)
    uncovered_pixels: int = 0
    no_image_pixels: int = 0
    reprojected: list[str] = field(default_factory=list)
    date: str | None = None


@dataclass
class _Target:
    crs: CRS
    transform: Affine
    shape: tuple[int, int]
    product_id: str
    date: str | None
    valid_rows: Callable[[int, int], np.ndarray]  # (r0, rows) -> image validity
    product_path: str | None


def _target_from(target: str | os.PathLike[str], res: int | None) -> _Target:
    folder = Path(target)
    if (folder / "meta.json").is_file():
        from nimbus.arrays import ArrayStack

        stack = ArrayStack(folder)
        if res is not None and int(res) != int(stack.meta["resolution"]):
            raise LabelError(
                f"{folder}: the arrays are at {stack.meta['resolution']} m, not {res} m; labels must align with the arrays"
            )

        def valid_rows(r0: int, rows: int) -> np.ndarray:
            ok = (np.asarray(stack.bands[:, r0 : r0 + rows]) != 0).all(axis=0)
            if stack.aux is not None:  # a pixel without an auxiliary value cannot be trained on either
                ok &= np.isfinite(np.asarray(stack.aux[:, r0 : r0 + rows])).all(axis=0)
            return ok

        return _Target(stack.crs, stack.transform, stack.shape, stack.meta["product_id"], stack.meta.get("date"),
                       valid_rows, stack.meta.get("source") or None)
    from nimbus.bands import BANDS
    from nimbus.product import open_product

    p = open_product(target)
    r = int(res or 10)
    bands = [b for b in BANDS if b in set(p.bands)]

    def product_valid_rows(r0: int, rows: int) -> np.ndarray:
        return p.read(bands, res=r, window=Window(0, r0, p.shape(r)[1], rows), kind="dn")[1]

    sensing = getattr(p, "sensing_time", None)
    return _Target(CRS.from_user_input(p.crs), p.transform(r), tuple(p.shape(r)), p.product_id,
                   sensing.date().isoformat() if sensing else None, product_valid_rows, str(p.path))


def _same_grid(path: str | os.PathLike[str], t: _Target) -> bool:
    with rasterio.open(path) as src:
        return src.crs == t.crs and src.transform.almost_equals(t.transform) and src.shape == t.shape


def _check_overlap(path: str | os.PathLike[str], t: _Target, band: int = 1) -> None:
    """Refuse an input that does not overlap the target grid at all (a coarse nearest read)."""
    f = max(1, min(t.shape) // 64)
    coarse = (-(-t.shape[0] // f), -(-t.shape[1] // f))
    _, ok = read_layer(path, t.crs, t.transform @ Affine.scale(f), coarse, Resampling.nearest, band=band)
    if not ok.any():
        raise LabelError(f"{path}: does not overlap the grid of {t.product_id} (another tile or area?); give the input of this tile")


def _write_cog(out: Path, t: _Target, write_strips: Callable[[Any], dict[str, str]]) -> None:
    h, w = t.shape
    with atomic_path(out.with_name(out.stem + ".strips.tif")) as tmp_strips:
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=t.crs, transform=t.transform,
                       nodata=NODATA, tiled=True, blockxsize=256, blockysize=256, compress="zstd")
        with rasterio.open(tmp_strips, "w", **profile) as dst:
            tags = write_strips(dst)
            dst.update_tags(**DEFAULT_LEGEND.tags(), **tags)
            dst.write_colormap(1, DEFAULT_LEGEND.gdal_colormap())
        with atomic_path(out) as tmp:
            from rasterio.shutil import copy as rio_copy

            rio_copy(tmp_strips, tmp, driver="COG", compress="ZSTD", predictor="2", blocksize=512,
                     overview_resampling="nearest")
        tmp_strips.unlink()


def _rule_source(target: str | os.PathLike[str], t: _Target) -> Callable[[int, int], np.ndarray]:
    """Rows ``[r0, r0 + rows)`` of rule labels: from the arrays (their bands, altitude when stacked) or the product."""
    from nimbus import rules

    folder = Path(target)
    if (folder / "meta.json").is_file():
        from nimbus.arrays import ArrayStack

        stack = ArrayStack(folder)
        names = list(stack.meta["bands"])
        alt_i = list(stack.meta.get("aux") or []).index("altitude") if "altitude" in (stack.meta.get("aux") or []) else None

        def from_arrays(r0: int, rows: int) -> np.ndarray:
            bands = np.asarray(stack.bands[:, r0 : r0 + rows])
            alt = None if alt_i is None else np.asarray(stack.aux[alt_i, r0 : r0 + rows])
            return rules.classify(bands, names, valid=(bands != 0).all(axis=0), altitude=alt, scale=1e-4)

        return from_arrays
    from nimbus.product import open_product

    product = open_product(t.product_path or target)
    res = int(round(abs(t.transform.a)))
    width = t.shape[1]

    def from_product(r0: int, rows: int) -> np.ndarray:
        return rules.rules_labels(product, res=res, window=Window(0, r0, width, rows))

    return from_product


def find_truth(product_path: str | os.PathLike[str] | None, product_id: str) -> Path:
    """The truth map :func:`nimbus.synthetic.make_product` wrote beside a product: ``<product id>_truth.tif``.

    Raises:
        LabelError: when no product is known or the file is not there.
    """
    if not product_path:
        raise LabelError(f"{product_id}: no source product known to find its truth map; give --truth PATH")
    folder = Path(product_path).parent
    path = folder / f"{product_id}_truth.tif"
    if not path.is_file():
        raise LabelError(f"{path}: no truth map beside the product (only synthetic products have one); give --truth PATH")
    return path


def _truth_classes(path: str | os.PathLike[str], vals: np.ndarray, ok: np.ndarray) -> np.ndarray:
    classes = np.where(ok, vals, NODATA).astype(np.int64)
    allowed = np.zeros(256, bool)
    allowed[list(DEFAULT_LEGEND.values) + [NODATA]] = True
    bad = np.unique(classes[(classes < 0) | (classes > 255) | ~allowed[np.clip(classes, 0, 255)]])
    if bad.size:
        raise LabelError(
            f"{path}: holds {', '.join(str(int(b)) for b in bad[:5])}, not Nimbus classes "
            f"({', '.join(f'{v} {n}' for v, n in DEFAULT_LEGEND.name_map().items())}); is it a truth map?"
        )
    return classes.astype(np.uint8)


def build_labels(
    target: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    exolabs: str | os.PathLike[str] | None = None,
    cloudprob: str | os.PathLike[str] | None = None,
    water: str | os.PathLike[str] | None = None,
    scl: bool | str | os.PathLike[str] = False,
    s2cloudless: bool = False,
    threshold: float = 0.5,
    masked: bool = False,
    res: int | None = None,
    water_threshold: float | None = None,
    strip_rows: int = 1024,
    rules: bool = False,
    truth: bool | str | os.PathLike[str] = False,
) -> LabelReport:
    """Build the class map of one product, aligned pixel for pixel with its arrays.

    Args:
        target: an arrays folder (``ARRAYS_DIR/<product_id>``, grid from ``meta.json``) or a product
            (grid at ``res``).
        out: the output COG; default ``<arrays folder>/labels.tif`` (required for a product target).
        exolabs: the ExoLabs classification raster (2 bands).
        cloudprob: an S2cloudless probability raster (0-100, or 0-1 when its maximum is <= 1).
        water: the JRC water raster (1 = water).
        scl: use the L2A scene classification instead of ExoLabs: True for the product's own SCL, or
            the path of an SCL raster.
        s2cloudless: compute the cloud probability locally from the product (L1C) when no
            ``cloudprob`` raster is given.
        threshold: cloud probability (0..1) above which a pixel is cloud.
        masked: ExoLabs nodata and label-input nodata become 255 instead of being counted only.
        res: the grid's pixel size for a product target (arrays folders carry their own).
        water_threshold: treat the water raster as occurrence (%) and call water where >= this.
        strip_rows: rows processed at a time.
        rules: label with the spectral rule classifier (:mod:`nimbus.rules`: Fmask 4.0, Sen2Cor,
            Let-It-Snow, MNDWI) from the bands themselves, for real products without ExoLabs /
            S2cloudless / JRC layers (weak labels; the DEM snow line when the arrays hold altitude).
        truth: take the labels from a truth map in Nimbus codes: True for the
            ``<product id>_truth.tif`` beside the source product (what ``nimbus synthetic``
            writes), or the path of such a map (any grid; reprojected by nearest neighbour).

    Returns:
        The :class:`LabelReport` (also written into the COG's tags).

    Raises:
        LabelError: inconsistent inputs, an input that does not overlap the grid, or no source.
    """
    t = _target_from(target, res)
    if out is None:
        if not (Path(target) / "meta.json").is_file():
            raise LabelError(f"{target}: give --out for a product target (arrays folders default to labels.tif inside)")
        out = Path(target) / "labels.tif"
    out = Path(out)
    if truth and (rules or scl or exolabs or cloudprob or water or s2cloudless):
        raise LabelError("--truth takes the labels from a truth map alone; it cannot be combined with other label sources")
    if truth is True:
        truth = find_truth(t.product_path, t.product_id)
    if rules and (scl or exolabs or cloudprob or water or s2cloudless):
        raise LabelError("--rules labels from the bands alone; it cannot be combined with --exolabs, --scl, --cloudprob, --s2cloudless or --water")
    if scl and exolabs:
        raise LabelError("give either ExoLabs rasters (--exolabs) or the scene classification (--scl), not both")
    if not scl and not exolabs and not rules and not truth:
        raise LabelError("no label source: give --exolabs FILE (optionally --cloudprob / --s2cloudless / --water), --scl, --rules or --truth")
    if scl is True:
        if not t.product_path:
            raise LabelError(f"{target}: no source product known for its SCL; give --scl PATH")
        from nimbus.product import open_product

        p = open_product(t.product_path)
        if "SCL" not in set(p.bands):
            raise LabelError(f"{t.product_path}: has no scene classification (SCL); it is an L2A layer")
        scl = p.band_file("SCL")
    inputs = {k: v for k, v in (("exolabs", exolabs), ("cloudprob", cloudprob), ("water", water), ("scl", scl or None),
                                ("truth", truth or None)) if v}
    for name, path in inputs.items():
        try:
            _check_overlap(path, t)
        except rasterio.errors.RasterioIOError as exc:
            raise LabelError(f"{path}: cannot be read as a raster ({exc})") from exc
    reprojected = [str(p) for p in inputs.values() if not _same_grid(p, t)]
    coarse = None
    prob_scale = 1.0
    if exolabs and cloudprob is None and s2cloudless:
        from nimbus.product import open_product

        if not t.product_path:
            raise LabelError(f"{target}: no source product known to compute s2cloudless; give --cloudprob rasters")
        coarse = cloud_probability_coarse(open_product(t.product_path))
    elif cloudprob is not None:
        with rasterio.open(cloudprob) as src:
            stats_max = float(np.nanmax(src.read(1, out_shape=(min(src.height, 256), min(src.width, 256)))))
        prob_scale = 100.0 if stats_max > 1.0 else 1.0
    rule_source = _rule_source(target, t) if rules else None
    source = "truth" if truth else "rules" if rules else "scl" if scl else ("exolabs+s2cloudless" if coarse is not None else "exolabs+cloudprob" if cloudprob else "exolabs")
    if source == "scl" and (cloudprob or water or s2cloudless):
        raise LabelError("--scl maps the scene classification alone; --cloudprob/--s2cloudless/--water apply to ExoLabs")
    report = LabelReport(out, source, date=t.date, reprojected=reprojected)
    counts = np.zeros(256, np.int64)
    h, w = t.shape

    def write_strips(dst: Any) -> dict[str, str]:
        for r0 in range(0, h, strip_rows):
            rows = min(strip_rows, h - r0)
            tr = t.transform @ Affine.translation(0, r0)
            shape = (rows, w)
            image_ok = t.valid_rows(r0, rows)
            uncovered = np.zeros(shape, bool)
            if rule_source is not None:
                classes = rule_source(r0, rows)
            elif source == "truth":
                vals, ok = read_layer(truth, t.crs, tr, shape, Resampling.nearest)
                classes = _truth_classes(truth, vals, ok)
            elif source == "scl":
                vals, ok = read_layer(scl, t.crs, tr, shape, Resampling.nearest)
                classes = scl_to_classes(np.where(ok, vals, 0).astype(np.int64))
            else:
                e1, ok1 = read_layer(exolabs, t.crs, tr, shape, Resampling.nearest, band=1)
                e2, ok2 = read_layer(exolabs, t.crs, tr, shape, Resampling.nearest, band=2)
                e1 = np.where(ok1, e1, 0).astype(np.int64)
                e2 = np.where(ok2, e2, 0).astype(np.int64)
                uncovered |= (e1 == 0) | ~ok1
                wmask = None
                if water:
                    wv, wok = read_layer(water, t.crs, tr, shape, Resampling.nearest)
                    wmask = (wv >= water_threshold) if water_threshold is not None else (wv == 1)
                    wmask &= wok
                    uncovered |= ~wok
                prob = None
                if coarse is not None:
                    prob = _warp_probability(coarse, t.crs, tr, shape)
                    uncovered |= ~np.isfinite(prob)
                elif cloudprob:
                    pv, pok = read_layer(cloudprob, t.crs, tr, shape, Resampling.nearest)
                    prob = np.where(pok, pv / prob_scale, np.nan)
                    uncovered |= ~pok
                if prob is not None:
                    prob = np.where(np.isfinite(prob), prob, -np.inf)  # no probability: no override
                classes = exolabs_rules(e1, e2, wmask, prob, threshold)
            report.uncovered_pixels += int((uncovered & image_ok).sum())
            if masked:
                classes[uncovered] = NODATA
            report.no_image_pixels += int((~image_ok).sum())
            classes[~image_ok] = NODATA
            counts[:] += np.bincount(classes.ravel(), minlength=256)
            dst.write(classes, 1, window=Window(0, r0, w, rows))
        report.counts = {int(k): int(counts[k]) for k in np.flatnonzero(counts)}
        return {
            "product_id": t.product_id,
            "date": t.date or "",
            "label_source": source,
            "masked": str(bool(masked)),
            "threshold": str(threshold),
            "uncovered_pixels": str(report.uncovered_pixels),
            "no_image_pixels": str(report.no_image_pixels),
            "class_counts": json.dumps(report.counts),
            "classes": ", ".join(f"{v} {n}" for v, n in DEFAULT_LEGEND.name_map().items()),
            "inputs": json.dumps({k: os.path.basename(str(v)) for k, v in inputs.items()}),
            "reprojected_inputs": json.dumps([os.path.basename(p) for p in reprojected]),
        }

    _write_cog(out, t, write_strips)
    return report
