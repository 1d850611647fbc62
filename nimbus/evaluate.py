"""Accuracy of a class map against a reference raster (``nimbus evaluate``).

The prediction is a Nimbus class map (uint8: 0 cloud, 1 ground, 2 snow, 3 water, 255 no data).
The reference may lie on any grid: it is brought onto the prediction's grid by nearest neighbour
(``rasterio.warp.reproject``), strip by strip, so a 10980 x 10980 map is evaluated in bounded
memory. Prediction pixels that the reference does not cover are not compared.

Reference kinds (``ref_kind``):

- ``"nimbus"``: the Nimbus class codes (0..3; 255 is no data). Any other value is refused (wrong
  kind?) unless it is listed in ``ignore``.
- ``"scl"``: the Sen2Cor scene classification, mapped with :data:`nimbus.labels.SCL_TO_CLASS`:
  0 no data; 1 saturated/defective and 7 unclassified are ignored; 2 dark area / topographic
  shadow, 3 cloud shadow, 4 vegetation, 5 not vegetated -> ground (a shadowed pixel is ground seen
  in shadow, not cloud); 6 -> water; 8, 9 cloud medium/high probability -> cloud; 10 thin cirrus
  -> ``cirrus`` (``"cloud"`` as in the training labels, ``"ground"``, or ``"ignore"``); 11 -> snow.
  Values above 11 are ignored.
- ``"cloud-binary"``, ``"snow-binary"``, ``"water-binary"``: a mask of one class: 0 = not that
  class, 1 or 255 = that class (so 0/1 and 0/255 masks both work; but a mask that *declares* 255
  as its nodata loses its positives: the declared nodata always wins, and ``notes`` says so).
  The prediction is binarised to "that class vs not" and the metrics are those of the two-class
  problem (classes 0 "not <class>", 1 "<class>").

Pixels left out of the comparison, counted separately (a pixel is counted in the first that
applies): ``prediction_nodata`` (255, or the file's declared nodata unless it is a class value),
``outside_reference`` (the reference does not cover it), ``reference_nodata`` (the reference's
declared nodata or mask, 255 for the ``nimbus`` kind, SCL 0), ``reference_ignored`` (values in
``ignore``, which are *raw* reference values, e.g. SCL codes for the ``scl`` kind, and the values
a kind ignores: SCL 1, 7, > 11, and 10 with ``cirrus="ignore"``).

Metrics: overall accuracy, Cohen's kappa ``(p_o - p_e) / (1 - p_e)``, per class IoU, F1,
precision, recall and support (reference pixels), mean IoU (over the classes with a defined IoU),
the confusion matrix (rows reference, columns prediction). An undefined value (0 / 0: a class
absent from both rasters, kappa when both rasters hold one single same class) is NaN in Python,
``null`` in JSON, ``n/a`` in text.

Outputs with ``out`` (``<name>`` defaults to the prediction's file stem), each written atomically:

- ``OUT/<name>_evaluation.json``: :meth:`Evaluation.to_dict`.
- ``OUT/<name>_difference.tif``: uint8 COG on the prediction's grid: ``reference * 10 +
  prediction`` where compared (0, 11, 22, 33 agree; e.g. 2 = reference cloud predicted snow,
  20 = reference snow predicted cloud; binary kinds: 0, 1, 10, 11), 255 not compared. Palette:
  agreement in the class colour (binary kinds: grey / the class colour), disagreement magenta:
  dark where reference cloud (binary kinds: the class) is missed, bright for every other
  disagreement; every code is named in the metadata (``CODE_<value>`` tags).
- ``OUT/<name>_evaluation.png``: reference, prediction and agreement quicklooks side by side, with
  the confusion matrix and the scores below.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from nimbus.atomic import atomic_path
from nimbus.errors import EvaluationError
from nimbus.labels import CLOUD, GROUND, NODATA, SCL_TO_CLASS, SNOW, WATER
from nimbus.legend import DEFAULT_LEGEND, NODATA_RGB, Legend

__all__ = [
    "CIRRUS_CHOICES",
    "Evaluation",
    "EvaluationError",
    "REF_KINDS",
    "confusion_metrics",
    "evaluate",
    "parse_ignore",
    "scl_lookup",
]

#: The reference kinds :func:`evaluate` understands.
REF_KINDS: tuple[str, ...] = ("nimbus", "scl", "cloud-binary", "snow-binary", "water-binary")

#: What SCL 10 (thin cirrus) becomes.
CIRRUS_CHOICES: tuple[str, ...] = ("cloud", "ground", "ignore")

_BINARY_CLASS = {"cloud-binary": CLOUD, "snow-binary": SNOW, "water-binary": WATER}
_NODATA_RGB = NODATA_RGB
_NOT_CLASS_RGB = (170, 170, 170)
_MISS_RGB = (140, 0, 140)
_WRONG_RGB = (255, 0, 255)
_AGREE_RGB = (225, 225, 225)
_SOURCE_BUDGET = 16_000_000  # reference pixels read per strip at most (about), when warping
_IGNORED_KEYS = ("prediction_nodata", "outside_reference", "reference_nodata", "reference_ignored")


def scl_lookup(cirrus: str = "cloud") -> dict[int, int]:
    """The SCL -> Nimbus class table of :data:`nimbus.labels.SCL_TO_CLASS` with a cirrus choice.

    Args:
        cirrus: what SCL 10 (thin cirrus) becomes: ``"cloud"`` (the training labels' choice),
            ``"ground"`` or ``"ignore"`` (255).

    Returns:
        ``{scl value: class}`` for SCL 0..11 (255 = not compared).

    Raises:
        EvaluationError: ``cirrus`` is not one of :data:`CIRRUS_CHOICES`.
    """
    if cirrus not in CIRRUS_CHOICES:
        raise EvaluationError(f"cirrus must be one of {', '.join(CIRRUS_CHOICES)}, got {cirrus!r}")
    table = dict(SCL_TO_CLASS)
    table[10] = {"cloud": CLOUD, "ground": GROUND, "ignore": NODATA}[cirrus]
    return table


def parse_ignore(ignore: Any) -> tuple[int, ...]:
    """Reference values to ignore from a CLI or Python value.

    Args:
        ignore: None, an int, a comma/space-separated string (``"7,8"``) or an iterable of those.

    Returns:
        The sorted distinct integers.

    Raises:
        EvaluationError: a value is not an integer.
    """
    if ignore is None or ignore == "":
        return ()
    items: list[Any] = list(ignore) if isinstance(ignore, Iterable) and not isinstance(ignore, (str, bytes)) else [ignore]
    out: set[int] = set()
    for item in items:
        parts = str(item).replace(",", " ").split() if isinstance(item, str) else [item]
        for p in parts:
            try:
                f = float(p)
            except (TypeError, ValueError):
                f = math.nan
            if not math.isfinite(f) or f != int(f):
                raise EvaluationError(f"--ignore takes integer reference values (e.g. 7,8), got {item!r}")
            out.add(int(f))
    return tuple(sorted(out))


def _nan_to_none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def confusion_metrics(confusion: np.ndarray) -> dict[str, Any]:
    """Scores of a confusion matrix (rows reference, columns prediction).

    Args:
        confusion: ``(K, K)`` counts.

    Returns:
        ``accuracy``, ``kappa``, ``mean_iou`` (floats, NaN when undefined) and per-class arrays
        ``iou``, ``f1``, ``precision``, ``recall`` (float64, NaN when undefined), ``support``
        (int64, reference pixels per class).
    """
    cm = np.asarray(confusion, np.float64)
    n = cm.sum()
    tp = np.diag(cm)
    ref = cm.sum(axis=1)
    pred = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = tp.sum() / n if n else math.nan
        pe = float((ref * pred).sum() / (n * n)) if n else math.nan
        kappa = (accuracy - pe) / (1.0 - pe) if n and pe < 1.0 else math.nan
        precision = tp / pred
        recall = tp / ref
        f1 = 2 * tp / (ref + pred)
        iou = tp / (ref + pred - tp)
    mean_iou = float(np.nanmean(iou)) if np.isfinite(iou).any() else math.nan
    return {
        "accuracy": float(accuracy),
        "kappa": float(kappa),
        "mean_iou": mean_iou,
        "iou": iou,
        "f1": f1,
        "precision": precision,
        "recall": recall,
        "support": ref.astype(np.int64),
    }


@dataclass
class Evaluation:
    """The comparison of a prediction with a reference, as :func:`evaluate` returns it.

    Attributes:
        prediction: the prediction raster's path.
        reference: the reference raster's path.
        ref_kind: the reference kind (see :data:`REF_KINDS`).
        classes: the class values of the confusion matrix's rows and columns (binary kinds: 0, 1).
        class_names: their names (binary kinds: ``"not cloud"``, ``"cloud"``...).
        confusion: ``(K, K)`` int64 counts, rows reference, columns prediction.
        total: pixels of the prediction's grid.
        ignored: pixels not compared, by reason (keys ``prediction_nodata``, ``outside_reference``,
            ``reference_nodata``, ``reference_ignored``).
        ignore: the reference values given to leave out.
        cirrus: what SCL thin cirrus became (``scl`` kind).
        reprojected: whether the reference was warped (another CRS, pixel size or phase).
        outputs: files written: ``json``, ``difference``, ``png``.
        notes: warnings about the inputs (e.g. a class absent from the reference).
    """

    prediction: str
    reference: str
    ref_kind: str
    classes: tuple[int, ...]
    class_names: tuple[str, ...]
    confusion: np.ndarray
    total: int
    ignored: dict[str, int] = field(default_factory=dict)
    ignore: tuple[int, ...] = ()
    cirrus: str = "cloud"
    reprojected: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> int:
        """Pixels compared (the sum of the confusion matrix)."""
        return int(np.asarray(self.confusion).sum())

    @property
    def ignored_total(self) -> int:
        """Pixels of the prediction's grid not compared."""
        return int(sum(self.ignored.values()))

    @property
    def metrics(self) -> dict[str, Any]:
        """:func:`confusion_metrics` of the confusion matrix."""
        return confusion_metrics(self.confusion)

    @property
    def accuracy(self) -> float:
        """Overall accuracy: compared pixels on the diagonal / compared pixels."""
        return self.metrics["accuracy"]

    @property
    def kappa(self) -> float:
        """Cohen's kappa (NaN when the chance agreement is 1)."""
        return self.metrics["kappa"]

    def per_class(self) -> dict[str, dict[str, Any]]:
        """``{class name: {value, iou, f1, precision, recall, support}}`` (NaN when undefined)."""
        m = self.metrics
        return {
            name: {
                "value": int(v),
                "iou": float(m["iou"][i]),
                "f1": float(m["f1"][i]),
                "precision": float(m["precision"][i]),
                "recall": float(m["recall"][i]),
                "support": int(m["support"][i]),
            }
            for i, (v, name) in enumerate(zip(self.classes, self.class_names))
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN as None)."""
        m = self.metrics
        per = {
            name: {k: (_nan_to_none(v) if isinstance(v, float) else v) for k, v in d.items()}
            for name, d in self.per_class().items()
        }
        return {
            "prediction": self.prediction,
            "reference": self.reference,
            "ref_kind": self.ref_kind,
            "cirrus": self.cirrus if self.ref_kind == "scl" else None,
            "ignore": list(self.ignore),
            "reprojected": self.reprojected,
            "classes": list(self.classes),
            "class_names": list(self.class_names),
            "pixels": {"total": self.total, "compared": self.compared, "ignored": self.ignored_total,
                       **{k: int(self.ignored.get(k, 0)) for k in _IGNORED_KEYS}},
            "accuracy": _nan_to_none(m["accuracy"]),
            "kappa": _nan_to_none(m["kappa"]),
            "mean_iou": _nan_to_none(m["mean_iou"]),
            "per_class": per,
            "confusion_matrix": {
                "rows": "reference",
                "columns": "prediction",
                "labels": list(self.class_names),
                "counts": np.asarray(self.confusion, np.int64).tolist(),
            },
            "difference_codes": "reference * 10 + prediction where compared, 255 not compared",
            "outputs": dict(self.outputs),
            "notes": list(self.notes),
        }

    def to_json(self, indent: int = 2) -> str:
        """The evaluation as JSON text (:meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_text(self) -> str:
        """A readable report: pixel counts, scores, per-class table and confusion matrix."""

        def f(x: float) -> str:
            return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"

        m = self.metrics
        kind = self.ref_kind + (f", cirrus -> {self.cirrus}" if self.ref_kind == "scl" else "")
        lines = [
            f"prediction: {self.prediction}",
            f"reference:  {self.reference} ({kind}{', reprojected' if self.reprojected else ''})",
            f"pixels: {self.total} total, {self.compared} compared, {self.ignored_total} not compared ("
            + ", ".join(f"{k.replace('_', ' ')} {self.ignored.get(k, 0)}" for k in _IGNORED_KEYS)
            + (f"; ignored values {list(self.ignore)}" if self.ignore else "")
            + ")",
            f"overall accuracy {f(m['accuracy'])}   Cohen's kappa {f(m['kappa'])}   mean IoU {f(m['mean_iou'])}",
            "",
        ]
        w = max(9, *(len(n) for n in self.class_names)) + 2
        lines.append(f"{'class':<{w}}{'IoU':>9}{'F1':>9}{'precision':>11}{'recall':>9}{'support':>14}")
        for i, name in enumerate(self.class_names):
            lines.append(f"{name:<{w}}{f(m['iou'][i]):>9}{f(m['f1'][i]):>9}{f(m['precision'][i]):>11}"
                         f"{f(m['recall'][i]):>9}{int(m['support'][i]):>14}")
        cm = np.asarray(self.confusion, np.int64)
        cw = max(12, *(len(n) + 2 for n in self.class_names), len(str(cm.max(initial=0))) + 2)
        lines += ["", "confusion matrix (rows reference, columns prediction)",
                  f"{'':<{w}}" + "".join(f"{n:>{cw}}" for n in self.class_names)]
        for i, name in enumerate(self.class_names):
            lines.append(f"{name:<{w}}" + "".join(f"{int(v):>{cw}}" for v in cm[i]))
        if self.notes:
            lines += [""] + [f"note: {n}" for n in self.notes]
        if self.outputs:
            lines += [""] + [f"{k}: {v}" for k, v in self.outputs.items()]
        return "\n".join(lines)


# --------------------------------------------------------------------------- reading


def _open(path: str | os.PathLike[str], role: str) -> Any:
    import rasterio

    if not Path(path).exists() and "://" not in str(path) and not str(path).startswith("/vsi"):
        raise EvaluationError(f"{path}: the {role} raster does not exist")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise EvaluationError(f"{path}: the {role} cannot be read as a raster ({exc})") from exc


def _aligned_offset(src: Any, crs: Any, transform: Any) -> tuple[int, int] | None:
    """(col, row) of ``transform``'s origin in ``src``'s grid when both share CRS, pixel size and phase."""
    s, d = src.transform, transform
    if src.crs != crs or s.b or s.d or d.b or d.d:
        return None
    if not (math.isclose(s.a, d.a, rel_tol=1e-9) and math.isclose(s.e, d.e, rel_tol=1e-9)):
        return None
    col, row = (d.c - s.c) / s.a, (d.f - s.f) / s.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return int(round(col)), int(round(row))


def _reference_bounds_in(ref: Any, crs: Any) -> tuple[float, float, float, float]:
    from rasterio.warp import transform_bounds

    if ref.crs == crs:
        return tuple(ref.bounds)
    return transform_bounds(ref.crs, crs, *ref.bounds, densify_pts=21)


def _read_reference(ref: Any, offset: tuple[int, int] | None, crs: Any, transform: Any,
                    shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference band 1 on a target window: ``(values float32, covered bool, nodata bool)``.

    float32 holds every integer code up to 2**24 exactly (larger ones never equal a class code).
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject
    from rasterio.windows import Window, from_bounds

    h, w = shape
    if offset is not None:
        col, row = offset
        values = np.zeros((h, w), np.float32)
        covered = np.zeros((h, w), bool)
        nodata = np.zeros((h, w), bool)
        r0, r1 = max(row, 0), min(row + h, ref.height)
        c0, c1 = max(col, 0), min(col + w, ref.width)
        if r1 > r0 and c1 > c0:
            arr = ref.read(1, window=Window(c0, r0, c1 - c0, r1 - r0), masked=True)
            sl = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
            values[sl] = np.ma.getdata(arr)
            covered[sl] = True
            nodata[sl] = np.ma.getmaskarray(arr)
        return values, covered, nodata
    # warp: read the part of the reference under the window (plus a margin), mark its nodata with
    # -inf, warp into NaN: NaN = outside the reference, -inf = reference nodata
    from rasterio.transform import array_bounds
    from rasterio.warp import transform_bounds

    west, south, east, north = array_bounds(h, w, transform)
    bounds = (min(west, east), min(south, north), max(west, east), max(south, north))

    sb = transform_bounds(crs, ref.crs, *bounds, densify_pts=21) if ref.crs != crs else bounds
    win = from_bounds(*sb, transform=ref.transform)
    c0 = max(int(math.floor(win.col_off)) - 2, 0)
    r0 = max(int(math.floor(win.row_off)) - 2, 0)
    c1 = min(int(math.ceil(win.col_off + win.width)) + 2, ref.width)
    r1 = min(int(math.ceil(win.row_off + win.height)) + 2, ref.height)
    dst = np.full((h, w), np.nan, np.float32)
    if c1 > c0 and r1 > r0:
        sw = Window(c0, r0, c1 - c0, r1 - r0)
        arr = ref.read(1, window=sw, masked=True)
        src = np.where(np.ma.getmaskarray(arr), -np.inf, np.ma.getdata(arr).astype(np.float32))
        reproject(src, dst, src_transform=ref.transform @ Affine.translation(c0, r0), src_crs=ref.crs, src_nodata=np.nan,
                  dst_transform=transform, dst_crs=crs, dst_nodata=np.nan, resampling=Resampling.nearest)
    covered = ~np.isnan(dst)
    nodata = np.isneginf(dst)
    values = np.where(covered & ~nodata, dst, np.float32(0))
    return values, covered, nodata


def _map_reference(values: np.ndarray, valid: np.ndarray, kind: str, lut: dict[int, int], ignore: tuple[int, ...],
                   path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw reference values -> ``(class int16 (-1 where not compared), kind nodata bool, ignored bool)``."""
    v = values[valid]
    if v.size and not np.all(v == np.round(v)):
        bad = v[v != np.round(v)][0]
        raise EvaluationError(f"{path}: holds the non-integer value {bad}; the reference must hold class codes")
    raw = np.zeros(values.shape, np.int32)
    raw[valid] = np.clip(v, -(2**31), 2**31 - 1).astype(np.int32)
    ignored = valid & np.isin(raw, np.asarray(ignore, np.int64)) if ignore else np.zeros(values.shape, bool)
    use = valid & ~ignored
    cls = np.full(values.shape, -1, np.int16)
    kind_nodata = np.zeros(values.shape, bool)
    if kind == "nimbus":
        kind_nodata = use & (raw == NODATA)
        use &= ~kind_nodata
        bad = use & ((raw < 0) | (raw > 3))
        if bad.any():
            raise EvaluationError(
                f"{path}: holds value {int(raw[bad][0])}, not a Nimbus class (0 cloud, 1 ground, 2 snow, 3 water, "
                "255 no data); give --ref-kind scl or a binary kind, or leave values out with --ignore"
            )
        cls[use] = raw[use]
    elif kind == "scl":
        kind_nodata = use & (raw == 0)
        use &= ~kind_nodata
        table = np.full(256, -1, np.int16)
        for k, c in lut.items():
            table[k] = -1 if c == NODATA else c
        mapped = np.full(values.shape, -1, np.int16)
        inside = use & (raw >= 0) & (raw <= 255)
        mapped[inside] = table[raw[inside]]
        ignored |= use & (mapped < 0)
        cls[use] = mapped[use]
    else:
        bad = use & ~np.isin(raw, (0, 1, 255))
        if bad.any():
            raise EvaluationError(
                f"{path}: holds value {int(raw[bad][0])}; a {kind} reference is a 0/1 or 0/255 mask "
                "(0 = not the class); leave other values out with --ignore"
            )
        cls[use] = (raw[use] != 0).astype(np.int16)
    return cls, kind_nodata, ignored


# --------------------------------------------------------------------------- outputs


def _difference_palette(classes: tuple[int, ...], names: tuple[str, ...], target: int | None, legend: Legend = DEFAULT_LEGEND
                        ) -> tuple[dict[int, tuple[int, int, int, int]], dict[str, str]]:
    binary = target is not None
    cmap: dict[int, tuple[int, int, int, int]] = {v: (0, 0, 0, 255) for v in range(256)}
    tags: dict[str, str] = {}
    colors = _class_colors(classes, target, legend)
    for i, r in enumerate(classes):
        for j, p in enumerate(classes):
            code = r * 10 + p
            if r == p:
                cmap[code] = (*colors[r], 255)
            else:
                cmap[code] = (*(_MISS_RGB if r == (1 if binary else CLOUD) else _WRONG_RGB), 255)
            tags[f"CODE_{code}"] = f"reference {names[i]}, prediction {names[j]}"
    cmap[NODATA] = (0, 0, 0, 0)
    tags["CODE_255"] = "not compared"
    return cmap, tags


def _class_colors(classes: tuple[int, ...], target: int | None, legend: Legend = DEFAULT_LEGEND) -> dict[int, tuple[int, int, int]]:
    """Colours of the evaluation's classes: the legend's, or grey / the class colour (binary kinds)."""
    if target is None:
        return {v: legend.color(v) for v in classes}
    return {0: _NOT_CLASS_RGB, 1: legend.color(target)}


class _DiffWriter:
    """The difference map: a hidden tiled GeoTIFF written by strips, turned into a COG at the end."""

    def __init__(self, final: Path, crs: Any, transform: Any, shape: tuple[int, int]) -> None:
        import rasterio

        self.final = final
        self.raw = final.parent / f".{final.stem}.raw-{uuid.uuid4().hex[:10]}.tif"
        final.parent.mkdir(parents=True, exist_ok=True)
        self.ds = rasterio.open(self.raw, "w", driver="GTiff", width=shape[1], height=shape[0], count=1, dtype="uint8",
                                crs=crs, transform=transform, nodata=NODATA, tiled=True, blockxsize=256,
                                blockysize=256, compress="deflate", BIGTIFF="IF_SAFER")

    def write(self, codes: np.ndarray, r0: int) -> None:
        from rasterio.windows import Window

        self.ds.write(codes, 1, window=Window(0, r0, codes.shape[1], codes.shape[0]))

    def finish(self, cmap: dict[int, tuple[int, int, int, int]], tags: dict[str, str]) -> None:
        import rasterio.shutil

        self.ds.update_tags(**tags)
        self.ds.write_colormap(1, cmap)
        self.ds.close()
        with atomic_path(self.final) as tmp:
            rasterio.shutil.copy(self.raw, tmp, driver="COG", compress="ZSTD", BLOCKSIZE=512, BIGTIFF="IF_SAFER",
                                 NUM_THREADS="ALL_CPUS", overview_resampling="mode")
        self.remove()

    def remove(self) -> None:
        if not self.ds.closed:
            self.ds.close()
        try:
            self.raw.unlink()
        except FileNotFoundError:
            pass


def _write_png(ev: Evaluation, diff_path: Path, out_path: Path, target: int | None, size: int = 512,
               legend: Legend = DEFAULT_LEGEND) -> None:
    import rasterio
    from PIL import Image, ImageDraw, ImageFont
    from rasterio.enums import Resampling

    with rasterio.open(diff_path) as src:
        scale = min(1.0, size / max(src.height, src.width))
        oh, ow = max(1, round(src.height * scale)), max(1, round(src.width * scale))
        codes = src.read(1, out_shape=(oh, ow), resampling=Resampling.nearest)
    colors = _class_colors(ev.classes, target, legend)
    compared = codes != NODATA
    ref, pred = codes // 10, codes % 10
    panels = []
    for values in (ref, pred):
        rgb = np.zeros((oh, ow, 3), np.uint8)
        rgb[:] = _NODATA_RGB
        for v, c in colors.items():
            rgb[compared & (values == v)] = c
        panels.append(rgb)
    agree = np.zeros((oh, ow, 3), np.uint8)
    agree[:] = _NODATA_RGB
    agree[compared & (ref == pred)] = _AGREE_RGB
    agree[compared & (ref != pred)] = _WRONG_RGB
    panels.append(agree)
    font = ImageFont.load_default()
    pad, line = 8, 16
    k = len(ev.classes)
    cw = max(90, 7 * max(len(n) for n in ev.class_names) + 12)
    table_h = line * (k + 4) + 2 * pad
    width = max(3 * ow + 4 * pad, (k + 1) * cw + 2 * pad)
    canvas = Image.new("RGB", (width, oh + 2 * pad + line + table_h), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (title, rgb) in enumerate(zip(("reference", "prediction", "agreement (magenta: differ)"), panels)):
        x = pad + i * (ow + pad)
        draw.text((x, pad), title, fill=(0, 0, 0), font=font)
        canvas.paste(Image.fromarray(rgb), (x, pad + line))
    y = oh + 2 * pad + line
    m = ev.metrics

    def f(x: float) -> str:
        return "n/a" if not math.isfinite(x) else f"{x:.4f}"

    draw.text((pad, y), f"accuracy {f(m['accuracy'])}   kappa {f(m['kappa'])}   mean IoU {f(m['mean_iou'])}   "
              f"compared {ev.compared} px", fill=(0, 0, 0), font=font)
    y += line
    draw.text((pad, y), "confusion matrix: rows reference, columns prediction", fill=(0, 0, 0), font=font)
    y += line
    cm = np.asarray(ev.confusion, np.int64)
    row_tot = np.maximum(cm.sum(axis=1, keepdims=True), 1)
    for j, name in enumerate(ev.class_names):
        draw.text((pad + (j + 1) * cw, y), name, fill=(0, 0, 0), font=font)
    for i, name in enumerate(ev.class_names):
        yy = y + (i + 1) * line
        draw.text((pad, yy), name, fill=(0, 0, 0), font=font)
        for j in range(k):
            share = cm[i, j] / row_tot[i, 0]
            shade = int(255 - 150 * share)
            x = pad + (j + 1) * cw
            fill = (shade, 255, shade) if i == j else (255, shade, 255)
            draw.rectangle([x - 2, yy - 1, x + cw - 6, yy + line - 3], fill=fill)
            draw.text((x, yy), str(int(cm[i, j])), fill=(0, 0, 0), font=font)
    with atomic_path(out_path) as tmp:
        canvas.save(tmp, format="PNG")


# --------------------------------------------------------------------------- the evaluation


def _no_overlap(ref_path: str, pred_path: str) -> str:
    return f"{ref_path}: does not overlap the prediction {pred_path} (another tile or area?); give a reference of the same area"


def evaluate(
    pred: str | os.PathLike[str],
    ref: str | os.PathLike[str],
    ref_kind: str = "nimbus",
    ignore: Any = (),
    cirrus: str = "cloud",
    out: str | os.PathLike[str] | None = None,
    name: str | None = None,
    strip_rows: int = 512,
    legend: Legend | None = None,
) -> Evaluation:
    """Compare a Nimbus class map with a reference raster on the class map's grid.

    The reference is reprojected onto the prediction's grid by nearest neighbour, strip by strip
    (bounded memory); prediction pixels it does not cover are not compared. See the module
    documentation for the reference kinds, the pixels left out and the output files.

    Args:
        pred: the prediction, a Nimbus class map (0 cloud, 1 ground, 2 snow, 3 water, 255 no data).
        ref: the reference raster (band 1), any CRS, pixel size and extent overlapping ``pred``.
        ref_kind: ``"nimbus"`` (same class codes), ``"scl"`` (Sen2Cor scene classification) or
            ``"cloud-binary"``, ``"snow-binary"``, ``"water-binary"`` (0 = not the class, 1 or
            255 = the class; the prediction is binarised to that class vs the rest).
        ignore: raw reference values to leave out (besides no data), e.g. ``(3,)`` to skip SCL
            cloud shadows; an int, ``"7,8"`` or a list.
        cirrus: ``scl`` kind: SCL 10 (thin cirrus) counts as ``"cloud"``, ``"ground"`` or is
            ``"ignore"``-d.
        out: folder for ``<name>_evaluation.json``, ``<name>_difference.tif`` (COG: reference * 10
            + prediction, 255 not compared) and ``<name>_evaluation.png``; None writes nothing.
        name: the output files' prefix (default: the prediction's file stem).
        strip_rows: prediction rows processed at a time.
        legend: the class names and colours of the outputs (default :data:`nimbus.legend.DEFAULT_LEGEND`;
            e.g. ``Legend.scheme("colorblind")``). The class codes are always 0 cloud .. 3 water.

    Returns:
        The :class:`Evaluation` (``.to_text()``, ``.to_json()``).

    Raises:
        EvaluationError: a raster is missing or unreadable, the reference does not overlap the
            prediction, no pixel is left to compare, a raster holds values its kind does not
            allow, or an option is invalid.
    """
    if ref_kind not in REF_KINDS:
        raise EvaluationError(f"--ref-kind must be one of {', '.join(REF_KINDS)}, got {ref_kind!r}")
    lut = scl_lookup(cirrus)
    ignore_values = parse_ignore(ignore)
    if int(strip_rows) < 1:
        raise EvaluationError(f"strip_rows must be >= 1, got {strip_rows}")
    target = _BINARY_CLASS.get(ref_kind)
    binary = target is not None
    legend = legend or DEFAULT_LEGEND
    if binary:
        classes: tuple[int, ...] = (0, 1)
        names: tuple[str, ...] = (f"not {legend.name(target)}", legend.name(target))
    else:
        classes = legend.values
        names = legend.names
    k = len(classes)
    pred_path, ref_path = str(pred), str(ref)
    out_dir = Path(out) if out is not None else None
    stem = name or Path(pred_path).name.split(".")[0]
    with _open(pred_path, "prediction") as psrc, _open(ref_path, "reference") as rsrc:
        if psrc.crs is None or rsrc.crs is None:
            which = pred_path if psrc.crs is None else ref_path
            raise EvaluationError(f"{which}: has no coordinate reference system; it cannot be placed on a map")
        crs, transform, (h, w) = psrc.crs, psrc.transform, psrc.shape
        if not np.issubdtype(np.dtype(psrc.dtypes[0]), np.integer):
            raise EvaluationError(f"{pred_path}: is {psrc.dtypes[0]}, not a Nimbus class map (uint8 classes)")
        rb = _reference_bounds_in(rsrc, crs)
        pb = psrc.bounds
        if rb[0] >= pb.right or rb[2] <= pb.left or rb[1] >= pb.top or rb[3] <= pb.bottom:
            raise EvaluationError(_no_overlap(ref_path, pred_path))
        from rasterio.windows import Window

        offset = _aligned_offset(rsrc, crs, transform)
        step = int(strip_rows)
        if offset is None:  # a finer reference: fewer rows per strip, so the source window stays bounded
            ref_px = max((rb[2] - rb[0]) * (rb[3] - rb[1]) / max(rsrc.width * rsrc.height, 1), 1e-12)
            ratio = max(1.0, abs(transform.a * transform.e) / ref_px)
            step = max(1, min(step, int(_SOURCE_BUDGET / (w * ratio))))
        # a declared nodata that is a class value (e.g. 0) is not honoured: Nimbus maps use 255
        pred_nodata = psrc.nodata
        pred_extra_nodata = None
        if pred_nodata is not None and math.isfinite(pred_nodata) and pred_nodata == int(pred_nodata) \
                and not 0 <= pred_nodata <= 3:
            pred_extra_nodata = int(pred_nodata)
        confusion = np.zeros(k * k, np.int64)
        ignored = dict.fromkeys(_IGNORED_KEYS, 0)
        diff = _DiffWriter(out_dir / f"{stem}_difference.tif", crs, transform, (h, w)) if out_dir is not None else None
        try:
            for r0 in range(0, h, step):
                rows = min(step, h - r0)
                p = psrc.read(1, window=Window(0, r0, w, rows)).astype(np.int32)
                p_nodata = p == NODATA
                if pred_extra_nodata is not None:
                    p_nodata |= p == pred_extra_nodata
                bad = ~p_nodata & ((p < 0) | (p > 3))
                if bad.any():
                    raise EvaluationError(
                        f"{pred_path}: holds value {int(p[bad][0])}, not a Nimbus class map "
                        "(0 cloud, 1 ground, 2 snow, 3 water, 255 no data)"
                    )
                strip_offset = None if offset is None else (offset[0], offset[1] + r0)
                values, covered, ref_nodata = _read_reference(rsrc, strip_offset, crs, transform @ Affine.translation(0, r0),
                                                              (rows, w))
                cls, kind_nodata, ref_ignored = _map_reference(values, covered & ~ref_nodata, ref_kind, lut,
                                                               ignore_values, ref_path)
                ignored["prediction_nodata"] += int(p_nodata.sum())
                rest = ~p_nodata
                ignored["outside_reference"] += int((rest & ~covered).sum())
                rest &= covered
                ignored["reference_nodata"] += int((rest & (ref_nodata | kind_nodata)).sum())
                rest &= ~(ref_nodata | kind_nodata)
                ignored["reference_ignored"] += int((rest & ref_ignored).sum())
                rest &= ~ref_ignored
                if binary:
                    p = (p == target).astype(np.int32)
                use = rest & (cls >= 0)
                pairs = cls[use].astype(np.int64) * k + p[use]
                confusion += np.bincount(pairs, minlength=k * k)
                if diff is not None:
                    codes = np.full((rows, w), NODATA, np.uint8)
                    codes[use] = (cls[use].astype(np.int64) * 10 + p[use]).astype(np.uint8)
                    diff.write(codes, r0)
            cm = confusion.reshape(k, k)
            if ignored["outside_reference"] == h * w:
                raise EvaluationError(_no_overlap(ref_path, pred_path))
            if cm.sum() == 0:
                raise EvaluationError(
                    f"{ref_path}: no pixel left to compare with {pred_path} ("
                    + ", ".join(f"{k2.replace('_', ' ')} {v}" for k2, v in ignored.items())
                    + "); check --ref-kind and --ignore"
                )
            ev = Evaluation(pred_path, ref_path, ref_kind, classes, names, cm, int(h * w), ignored, ignore_values,
                            cirrus, reprojected=offset is None)
            support = cm.sum(axis=1)
            absent = [names[i] for i in range(k) if support[i] == 0]
            if absent:
                ev.notes.append(f"absent from the reference: {', '.join(absent)} (their recall, F1 and IoU are "
                                "n/a or 0)")
            if pred_nodata is not None and pred_extra_nodata is None and math.isfinite(pred_nodata) \
                    and pred_nodata != NODATA:
                ev.notes.append(f"{pred_path} declares {pred_nodata:g} as nodata, a class value: it was compared "
                                "as that class (Nimbus maps use 255 for no data)")
            meaningful = {"nimbus": range(0, 4), "scl": range(1, 12)}.get(ref_kind, (0, 1, 255))
            rnd = rsrc.nodata
            if rnd is not None and math.isfinite(rnd) and rnd == int(rnd) and int(rnd) in meaningful:
                ev.notes.append(f"{ref_path} declares {int(rnd)} as nodata, a value with a meaning for --ref-kind "
                                f"{ref_kind}: those pixels were not compared (a 0/255 mask must not declare 255); "
                                "unset its nodata to compare them")
            if diff is not None:
                cmap, tags = _difference_palette(classes, names, target, legend)
                tags.update(DIFFERENCE="reference * 10 + prediction where compared, 255 not compared",
                            PREDICTION=os.path.basename(pred_path), REFERENCE=os.path.basename(ref_path),
                            REF_KIND=ref_kind)
                diff.finish(cmap, tags)
        except BaseException:
            if diff is not None:
                diff.remove()
            raise
    if out_dir is not None:
        diff_path = out_dir / f"{stem}_difference.tif"
        png_path = out_dir / f"{stem}_evaluation.png"
        json_path = out_dir / f"{stem}_evaluation.json"
        _write_png(ev, diff_path, png_path, target, legend=legend)
        ev.outputs = {"json": str(json_path), "difference": str(diff_path), "png": str(png_path)}
        with atomic_path(json_path) as tmp:
            tmp.write_text(ev.to_json() + "\n", encoding="utf-8")
    return ev
