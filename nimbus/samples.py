"""Samples for hand labelling: a folder of georeferenced patches and one manifest.

``nimbus uncertain`` writes a samples folder; ``nimbus label`` edits it; ``nimbus train --al-labels``
reads it back. Layout::

    SAMPLES_DIR/manifest.json                  format, version, selection parameters, samples (below)
    SAMPLES_DIR/<sample_id>/truecolor.tif      uint16 (3, h, w) harmonised DN of B04, B03, B02, 0 = nodata
    SAMPLES_DIR/<sample_id>/falsecolor.tif     uint16 (3, h, w) harmonised DN of B12, B08, B04
    SAMPLES_DIR/<sample_id>/auto_label.tif     uint8 class map (the automatic label), 255 = nodata
    SAMPLES_DIR/<sample_id>/prediction.tif     uint8 class map (the model's MC-dropout mean), 255 = nodata
    SAMPLES_DIR/<sample_id>/uncertainty.tif    float32 per-pixel uncertainty, NaN = nodata
    SAMPLES_DIR/<sample_id>/context_truecolor.tif   uint16 (3, H, W) B04 B03 B02 of the area around the
                                               sample (``context`` window, about 3x the sample's side)
    SAMPLES_DIR/<sample_id>/context_falsecolor.tif  uint16 (3, H, W) B12 B08 B04 of that area
    SAMPLES_DIR/<sample_id>/label.tif          uint8 hand label (written by the labelling tool)

Every GeoTIFF of a sample has the product's CRS and the window's transform (the context layers:
the context window's transform). Class values, names and colours are those of
:data:`nimbus.legend.DEFAULT_LEGEND` (0 cloud, 1 ground, 2 snow, 3 water) and 255 no data. Each
manifest entry holds ``id``, ``product_id``, ``tile``, ``date`` (ISO), ``window`` (``[col_off,
row_off, width, height]`` on the product's grid), ``context`` (the context window, same order, or
``null`` for samples written without one), ``score``, ``status`` (``"todo"`` or ``"done"``),
``revision`` (the number of saves of its hand label: a save must name the revision it started from,
so a tab that did not see the latest save is refused with :class:`RevisionConflictError` instead of
silently overwriting it) and ``extra`` (``method``: the uncertainty measure the score is in).

Manifest updates take an exclusive ``flock`` on ``SAMPLES_DIR/.manifest.lock`` and every file is
written to a temporary name and renamed (:func:`nimbus.atomic.atomic_path`).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from nimbus.atomic import atomic_path
from nimbus.errors import LabelError
from nimbus.legend import DEFAULT_LEGEND
from nimbus.legend import NODATA as _LEGEND_NODATA

__all__ = [
    "CLASS_COLORS",
    "CLASS_NAMES",
    "CLASS_VALUES",
    "CONTEXT_FACTOR",
    "CONTEXT_LAYERS",
    "LABEL_LAYER",
    "LAYERS",
    "MANIFEST",
    "NODATA",
    "RevisionConflictError",
    "Sample",
    "SampleSet",
    "context_window",
    "sample_id",
    "validate_label",
    "write_geotiff",
]

MANIFEST = "manifest.json"
FORMAT = "nimbus-samples"
VERSION = 1
NODATA: int = _LEGEND_NODATA
#: Class values a label may hold: the legend's classes, then no data.
CLASS_VALUES: tuple[int, ...] = (*DEFAULT_LEGEND.values, NODATA)
#: ``{value: name}`` of the legend, with ``255: "nodata"``.
CLASS_NAMES: dict[int, str] = DEFAULT_LEGEND.name_map()
#: ``{value: (r, g, b)}`` of the legend's classes (the one palette of maps, quicklooks and the labeller).
CLASS_COLORS: dict[int, tuple[int, int, int]] = DEFAULT_LEGEND.color_map()
#: The context layers: the area around a sample, shown dimmed around the part to label.
CONTEXT_LAYERS: tuple[str, ...] = ("context_truecolor", "context_falsecolor")
#: Side of the context window in sample sides (centred on the sample, clipped to the product).
CONTEXT_FACTOR: float = 3.0
LAYERS: tuple[str, ...] = ("truecolor", "falsecolor", "auto_label", "prediction", "uncertainty", *CONTEXT_LAYERS)
LABEL_LAYER = "label"
CLASS_LAYERS = ("auto_label", "prediction", LABEL_LAYER)
COLOR_LAYERS = ("truecolor", "falsecolor", *CONTEXT_LAYERS)
STATUSES = ("todo", "done")
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class RevisionConflictError(LabelError):
    """A label save started from an older revision than the one on disk (another tab saved first)."""


def sample_id(product_id: str, window: Sequence[int]) -> str:
    """The identifier (and folder name) of the sample of ``product_id`` at ``window``.

    Args:
        product_id: the product the sample comes from.
        window: ``(col_off, row_off, width, height)`` on the product's grid.

    Returns:
        ``<product_id>__r<row_off>_c<col_off>`` with unsafe characters replaced by ``-``.
    """
    col, row = int(window[0]), int(window[1])
    safe = re.sub(r"[^A-Za-z0-9_.-]", "-", product_id).lstrip(".-_") or "product"
    return f"{safe[:160]}__r{row:05d}_c{col:05d}"


def context_window(
    window: Sequence[int], shape: tuple[int, int], factor: float = CONTEXT_FACTOR
) -> tuple[int, int, int, int]:
    """The window of the area shown around a sample: ``factor`` times its side, centred, clipped.

    Args:
        window: the sample's ``(col_off, row_off, width, height)`` on the product's grid.
        shape: ``(height, width)`` of the product's grid.
        factor: side of the context in sample sides (1 gives the sample itself).

    Returns:
        ``(col_off, row_off, width, height)`` of the context, inside the product and holding the sample.
    """
    col, row, w, h = (int(v) for v in window)
    H, W = int(shape[0]), int(shape[1])

    def span(start: int, size: int, total: int) -> tuple[int, int]:
        want = max(size, int(round(size * float(factor))))
        lo = start - (want - size) // 2
        lo = max(0, min(lo, total - want))
        hi = min(total, lo + want)
        return min(lo, start), max(hi, start + size)

    c0, c1 = span(col, w, W)
    r0, r1 = span(row, h, H)
    return c0, r0, c1 - c0, r1 - r0


def validate_label(label: Any, shape: tuple[int, int], where: str = "label") -> np.ndarray:
    """Check a hand label: 2-D, ``shape``, integral, values in :data:`CLASS_VALUES`.

    Args:
        label: the array to check.
        shape: the expected ``(height, width)``.
        where: what to name in the error message (a file or a sample).

    Returns:
        The label as a C-contiguous uint8 array.

    Raises:
        LabelError: wrong number of dimensions, wrong shape, non-integral or unknown class values.
    """
    try:
        arr = np.asarray(label)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise LabelError(f"{where}: a label must be a rectangular 2-D array of class values ({exc})") from exc
    if arr.ndim != 2:
        raise LabelError(f"{where}: a label must be 2-D (height, width), got shape {arr.shape}")
    if tuple(arr.shape) != tuple(shape):
        raise LabelError(f"{where}: label shape {tuple(arr.shape)} does not match the sample's {tuple(shape)}")
    if arr.dtype.kind not in "iub":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**31):
            arr = arr.astype(np.int64)
        else:
            raise LabelError(f"{where}: label values must be integers, got dtype {arr.dtype}")
    bad = ~np.isin(arr, CLASS_VALUES)
    if bad.any():
        values = sorted({int(v) for v in np.unique(arr[bad])[:8]})
        raise LabelError(
            f"{where}: unknown class values {values}; allowed are 0 cloud, 1 ground, 2 snow, 3 water, 255 no data"
        )
    return np.ascontiguousarray(arr, dtype=np.uint8)


@dataclass
class Sample:
    """One manifest entry: where a sample comes from, its score and its labelling state."""

    id: str
    product_id: str
    window: tuple[int, int, int, int]
    date: str = ""
    tile: str = ""
    score: float = float("nan")
    status: str = "todo"
    revision: int = 0
    updated: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    context: tuple[int, int, int, int] | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the sample."""
        return int(self.window[3]), int(self.window[2])

    @property
    def context_shape(self) -> tuple[int, int] | None:
        """``(height, width)`` of the context window, or None when the sample has no context."""
        return None if self.context is None else (int(self.context[3]), int(self.context[2]))

    @property
    def method(self) -> str | None:
        """The uncertainty measure the score is in (``extra["method"]``), or None when unknown."""
        m = self.extra.get("method")
        return str(m) if m else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``window``/``context`` as lists, NaN score as ``None``)."""
        d = asdict(self)
        d["window"] = [int(v) for v in self.window]
        d["context"] = None if self.context is None else [int(v) for v in self.context]
        d["score"] = None if not np.isfinite(self.score) else float(self.score)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = MANIFEST) -> Sample:
        """Parse a manifest entry.

        Raises:
            LabelError: a required key is missing or a value is malformed.
        """
        try:
            window = tuple(int(v) for v in d["window"])
            if len(window) != 4 or window[2] <= 0 or window[3] <= 0:
                raise ValueError(f"window {d['window']}")
            context = None if d.get("context") is None else tuple(int(v) for v in d["context"])
            if context is not None and not _contains(context, window):
                raise ValueError(f"context {d['context']} does not hold window {d['window']}")
            s = cls(
                id=str(d["id"]),
                product_id=str(d["product_id"]),
                window=window,  # type: ignore[arg-type]
                date=str(d.get("date") or ""),
                tile=str(d.get("tile") or ""),
                score=float("nan") if d.get("score") is None else float(d["score"]),
                status=str(d.get("status") or "todo"),
                revision=int(d.get("revision") or 0),
                updated=str(d.get("updated") or ""),
                extra=dict(d.get("extra") or {}),
                context=context,  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelError(f"{where}: malformed sample entry ({exc}); rewrite it with `nimbus uncertain`") from exc
        if not _ID_RE.match(s.id):
            raise LabelError(f"{where}: unsafe sample id {s.id!r}")
        if s.status not in STATUSES:
            raise LabelError(f"{where}: sample {s.id} has status {s.status!r}, expected one of {STATUSES}")
        return s


def _contains(outer: Sequence[int], inner: Sequence[int]) -> bool:
    """Whether window ``outer`` (col, row, width, height) holds window ``inner``."""
    return (
        len(outer) == 4 and outer[2] > 0 and outer[3] > 0
        and outer[0] <= inner[0] and outer[1] <= inner[1]
        and inner[0] + inner[2] <= outer[0] + outer[2] and inner[1] + inner[3] <= outer[1] + outer[3]
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SampleSet:
    """A samples folder: its manifest, its GeoTIFF layers and its hand labels.

    Args:
        root: the samples folder.
        create: create an empty manifest when there is none (otherwise a missing manifest is an error).
    """

    def __init__(self, root: str | os.PathLike[str], create: bool = False) -> None:
        self.root = Path(root).resolve()
        self.manifest_path = self.root / MANIFEST
        if not self.manifest_path.is_file():
            if not create:
                raise LabelError(
                    f"{self.manifest_path}: no samples manifest here; write samples with `nimbus uncertain` first"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            with self._locked():
                if not self.manifest_path.is_file():
                    self._write({"format": FORMAT, "version": VERSION, "created": _now(), "selection": {}, "samples": []})
        self._read()

    # ---- manifest -------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.root / ".manifest.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise LabelError(f"{self.manifest_path}: cannot read the samples manifest ({exc})") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("samples"), list):
            raise LabelError(f"{self.manifest_path}: not a Nimbus samples manifest (format {FORMAT!r} expected)")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        with atomic_path(self.manifest_path) as tmp:
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")

    @property
    def selection(self) -> dict[str, Any]:
        """The parameters of the selection that wrote the samples (method, passes, checkpoint...)."""
        return dict(self._read().get("selection") or {})

    def update_selection(self, params: Mapping[str, Any]) -> None:
        """Merge ``params`` into the manifest's ``selection`` record."""
        with self._locked():
            data = self._read()
            data.setdefault("selection", {}).update(params)
            self._write(data)

    def samples(self) -> list[Sample]:
        """All samples in manifest order."""
        return [Sample.from_dict(d, str(self.manifest_path)) for d in self._read()["samples"]]

    def __len__(self) -> int:
        return len(self._read()["samples"])

    def get(self, sid: str) -> Sample:
        """The sample named ``sid``.

        Raises:
            LabelError: no such sample (the id is never used as a path before this check).
        """
        for s in self.samples():
            if s.id == sid:
                return s
        raise LabelError(f"{self.manifest_path}: no sample named {sid!r}")

    def sample_dir(self, sid: str) -> Path:
        """The folder of sample ``sid`` (checked to be a manifest entry inside the samples folder)."""
        self.get(sid)
        path = (self.root / sid).resolve()
        if path.parent != self.root:
            raise LabelError(f"{self.manifest_path}: sample id {sid!r} escapes the samples folder")
        return path

    def layer_path(self, sid: str, layer: str) -> Path:
        """The GeoTIFF of ``layer`` (one of :data:`LAYERS` or ``"label"``) of sample ``sid``."""
        if layer not in LAYERS and layer != LABEL_LAYER:
            raise LabelError(f"unknown sample layer {layer!r}; expected one of {LAYERS + (LABEL_LAYER,)}")
        return self.sample_dir(sid) / f"{layer}.tif"

    # ---- writing samples ------------------------------------------------------------------------
    def add(
        self,
        sample: Sample,
        layers: Mapping[str, np.ndarray],
        crs: Any,
        transform: Any,
    ) -> Sample:
        """Write a sample's layers as georeferenced GeoTIFFs and add (or replace) its manifest entry.

        Args:
            sample: the manifest entry (its ``window`` gives the layers' shape, its ``context`` the
                context layers').
            layers: arrays by layer name: ``truecolor``/``falsecolor`` (3, h, w) uint16,
                ``auto_label``/``prediction`` (h, w) uint8, ``uncertainty`` (h, w) float32,
                ``context_truecolor``/``context_falsecolor`` (3, H, W) uint16 of the ``context``
                window (see :func:`context_window`). Missing layers are simply not written.
            crs: the product's CRS (rasterio CRS, WKT or EPSG string).
            transform: the affine transform of the sample's window (``rasterio.windows.transform``).

        Returns:
            The sample as stored.
        """
        if not _ID_RE.match(sample.id):
            raise LabelError(f"{self.manifest_path}: unsafe sample id {sample.id!r}")
        folder = self.root / sample.id
        if any(name in CONTEXT_LAYERS for name in layers) and sample.context is None:
            raise LabelError(f"{folder}: context layers given but the sample has no context window")
        if sample.context is not None and not _contains(sample.context, sample.window):
            raise LabelError(f"{folder}: context window {sample.context} does not hold the sample's {sample.window}")
        folder.mkdir(parents=True, exist_ok=True)
        for name, arr in layers.items():
            if name not in LAYERS:
                raise LabelError(f"{folder}: unknown layer {name!r}; expected one of {LAYERS}")
            arr = np.asarray(arr)
            shape, where = sample.shape, transform
            if name in CONTEXT_LAYERS:
                assert sample.context is not None and sample.context_shape is not None
                shape = sample.context_shape
                where = transform @ _translation(sample.context[0] - sample.window[0], sample.context[1] - sample.window[1])
            if arr.shape[-2:] != shape:
                raise LabelError(f"{folder}: layer {name} has shape {arr.shape}, its window is {shape}")
            if name in CLASS_LAYERS:
                arr = validate_label(arr, sample.shape, f"{folder / name}.tif")
            write_geotiff(folder / f"{name}.tif", arr, crs, where, kind=_kind(name))
        with self._locked():
            data = self._read()
            entries = [d for d in data["samples"] if d.get("id") != sample.id]
            entries.append(sample.to_dict())
            data["samples"] = entries
            self._write(data)
        return sample

    # ---- reading layers and labels --------------------------------------------------------------
    def read_layer(self, sid: str, layer: str) -> np.ndarray:
        """Read a layer of sample ``sid`` ((3, h, w) for colour layers, (h, w) otherwise).

        Raises:
            LabelError: the layer file is missing.
        """
        import rasterio

        path = self.layer_path(sid, layer)
        if not path.is_file():
            raise LabelError(f"{path}: layer {layer!r} of sample {sid} is missing")
        with rasterio.open(path) as src:
            data = src.read()
        return data if layer in COLOR_LAYERS else data[0]

    def georef(self, sid: str) -> tuple[Any, Any]:
        """``(crs, transform)`` of sample ``sid``, taken from its first existing layer."""
        import rasterio

        for layer in (LABEL_LAYER, *(name for name in LAYERS if name not in CONTEXT_LAYERS)):
            path = self.layer_path(sid, layer)
            if path.is_file():
                with rasterio.open(path) as src:
                    return src.crs, src.transform
        raise LabelError(f"{self.sample_dir(sid)}: sample {sid} has no GeoTIFF layers")

    def read_label(self, sid: str) -> tuple[np.ndarray, str]:
        """The label to start editing from, and where it came from.

        Returns:
            ``(label, source)``: the hand label (``"hand"``) when saved, else the automatic label
            (``"auto"``), else the prediction (``"prediction"``), else all no data (``"empty"``).
        """
        s = self.get(sid)
        for layer, source in ((LABEL_LAYER, "hand"), ("auto_label", "auto"), ("prediction", "prediction")):
            if self.layer_path(sid, layer).is_file():
                label = self.read_layer(sid, layer)
                return validate_label(label, s.shape, str(self.layer_path(sid, layer))), source
        return np.full(s.shape, NODATA, np.uint8), "empty"

    def hand_label(self, sid: str) -> np.ndarray | None:
        """The saved hand label of sample ``sid``, or ``None`` when it has none."""
        if not self.layer_path(sid, LABEL_LAYER).is_file():
            return None
        return validate_label(self.read_layer(sid, LABEL_LAYER), self.get(sid).shape, str(self.layer_path(sid, LABEL_LAYER)))

    def save_label(self, sid: str, label: Any, base_revision: int, status: str | None = None) -> Sample:
        """Write the hand label of ``sid`` atomically, if nobody saved since ``base_revision``.

        Args:
            sid: the sample.
            label: (h, w) class values in :data:`CLASS_VALUES`.
            base_revision: the revision the editor loaded (or last saved); must equal the stored one.
            status: new status (``"todo"``/``"done"``), or ``None`` to keep it.

        Returns:
            The updated sample (``revision`` incremented).

        Raises:
            LabelError: malformed label or unknown status.
            RevisionConflictError: someone saved a newer revision first.
        """
        if status is not None and status not in STATUSES:
            raise LabelError(f"sample {sid}: status {status!r} is not one of {STATUSES}")
        with self._locked():
            data = self._read()
            entries = data["samples"]
            idx = next((i for i, d in enumerate(entries) if d.get("id") == sid), None)
            if idx is None:
                raise LabelError(f"{self.manifest_path}: no sample named {sid!r}")
            s = Sample.from_dict(entries[idx], str(self.manifest_path))
            path = self.layer_path(sid, LABEL_LAYER)
            arr = validate_label(label, s.shape, f"label of sample {sid}")
            if int(base_revision) != s.revision:
                raise RevisionConflictError(
                    f"sample {sid}: the label was saved elsewhere (revision {s.revision}) after this editor "
                    f"loaded revision {int(base_revision)}; reload the sample to see that save, then edit again"
                )
            crs, transform = self.georef(sid)
            write_geotiff(path, arr, crs, transform, kind="class")
            s.revision += 1
            s.updated = _now()
            if status is not None:
                s.status = status
            entries[idx] = s.to_dict()
            self._write(data)
        return s


def _translation(dx: int, dy: int) -> Any:
    from affine import Affine

    return Affine.translation(dx, dy)


def _kind(layer: str) -> str:
    if layer in CLASS_LAYERS:
        return "class"
    if layer == "uncertainty":
        return "float"
    return "color"


def write_geotiff(path: str | os.PathLike[str], data: np.ndarray, crs: Any, transform: Any, kind: str) -> Path:
    """Write one georeferenced tiled GeoTIFF atomically.

    Args:
        path: the output file.
        data: (h, w) or (bands, h, w).
        crs: CRS (anything rasterio accepts).
        transform: affine transform of the array's top-left pixel.
        kind: ``"class"`` (uint8, nodata 255, palette), ``"float"`` (float32, nodata NaN) or
            ``"color"`` (uint16, nodata 0).

    Returns:
        The path written.
    """
    import rasterio
    from rasterio.crs import CRS

    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[None]
    dtype, nodata = {"class": ("uint8", NODATA), "float": ("float32", float("nan")), "color": ("uint16", 0)}[kind]
    count, h, w = arr.shape
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": dtype,
        "nodata": nodata,
        "crs": CRS.from_user_input(crs) if crs is not None else None,
        "transform": transform,
        "compress": "deflate",
    }
    if h >= 256 and w >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    path = Path(path)
    with atomic_path(path) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(arr.astype(dtype, copy=False))
            if kind == "class":
                dst.write_colormap(1, DEFAULT_LEGEND.gdal_colormap())
    return path
