"""Segmentation outputs: class map, probabilities and uncertainty as Cloud-Optimized GeoTIFFs.

:class:`SegmentationWriter` receives finished rows while the segmenter streams (so nothing the
size of the tile is held in memory), writes them into hidden tiled GeoTIFFs next to the final
files, and on success converts each into a COG (GDAL's COG driver, overviews included) under a
temporary name. Every COG is reopened and validated, then all are renamed together, the class map
last (:class:`nimbus.atomic.AtomicGroup`): a class map under its final name means every output of
the product is complete. On any error or Ctrl-C the hidden files are removed and no file appears
under a final name.

* Class map: uint8, palette with the class colours of a :class:`nimbus.legend.Legend`, class names
  in the metadata (``CLASS_NAMES`` JSON and one ``CLASS_<value>`` tag per class), nodata 255
  exactly where the input has no data, overviews with *mode* resampling (a class is never averaged
  into another). Beside it, committed with it: ``<stem>.qml`` (the QGIS style that shows the class
  names) and ``<file>.aux.xml`` (GDAL category names and raster attribute table), see
  :mod:`nimbus.qgis`.
* Probabilities (optional): one band per class, ``"uint8"`` (probability x 255, rounded) or
  ``"float16"`` (stored as 16-bit floats: GeoTIFF ``NBITS=16`` on Float32); pixels without data
  are masked (internal mask band) and hold 0; average overviews.
* Uncertainty (optional): the entropy of the blended probabilities divided by ``log(K)`` (0 = sure,
  1 = uniform), stored as uint8 ``round(254 * value)``, nodata 255.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from nimbus.atomic import AtomicGroup, temporary_name, write_failure
from nimbus.legend import Legend, as_legend
from nimbus.modelspec import NODATA_CLASS, ModelSpec
from nimbus.validate import validate_raster

__all__ = ["SegmentationWriter", "class_colormap", "write_class_map"]

_BLOCK = 512


def class_colormap(legend: Legend | ModelSpec) -> dict[int, tuple[int, int, int, int]]:
    """The GDAL palette of a legend (or a model's classes): 255, no data, is transparent black."""
    return as_legend(legend).gdal_colormap()


def _class_tags(legend: Legend, product_id: str, model_name: str, model_version: str) -> dict[str, str]:
    return {**legend.tags(), "MODEL_NAME": model_name, "MODEL_VERSION": model_version, "PRODUCT_ID": product_id}


def _model_strings(legend: Any, model_name: str | None, model_version: str | None) -> tuple[str, str]:
    """Model name and version: as given, else from a ``ModelSpec`` passed as the legend, else empty."""
    name = model_name if model_name is not None else getattr(legend, "name", None)
    version = model_version if model_version is not None else getattr(legend, "version", None)
    return ("" if name is None or callable(name) else str(name)), ("" if version is None else str(version))


class _Raw:
    """A hidden tiled GeoTIFF next to the final output, converted to a COG at the end."""

    def __init__(self, final: Path, profile: dict[str, Any]) -> None:
        import rasterio

        self.final = final
        self.profile = profile
        self.path = temporary_name(final, "raw")
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.ds = rasterio.open(self.path, "w", **profile)
        except BaseException:  # incl. Ctrl-C between the file's creation and the assignment
            self.path.unlink(missing_ok=True)
            raise

    def close(self) -> None:
        if hasattr(self, "ds") and not self.ds.closed:
            self.ds.close()

    def remove(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def to_cog(self, group: AtomicGroup, last: bool = False, **options: Any) -> Path:
        """Convert to a COG at a temporary name of ``group`` (validated before the group commits)."""
        import rasterio.shutil

        self.close()
        p = self.profile
        check = partial(validate_raster, shape=(p["height"], p["width"]), count=p["count"], dtype=p["dtype"])
        validate_raster(self.path, shape=(p["height"], p["width"]), count=p["count"])  # every strip reached the disk
        tmp = group.path(self.final, validate=check, last=last)
        rasterio.shutil.copy(self.path, tmp, driver="COG", BLOCKSIZE=_BLOCK, BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", **options)
        self.remove()
        return tmp


class SegmentationWriter:
    """Stream rows of a segmentation into COG outputs, atomically.

    Use as a context manager; outputs appear under their final names only when the block ends
    without an exception.

    Args:
        classes_path: final path of the class map.
        crs: coordinate reference system of the grid.
        transform: affine transform of the grid (of row 0, column 0 of what is written).
        shape: ``(height, width)`` of the grid.
        legend: the classes (values, names, colours): a :class:`nimbus.legend.Legend`; a
            ``ModelSpec`` is still accepted (its classes, name and version are used).
        product_id: written into the metadata.
        probabilities: ``None``, ``"uint8"`` or ``"float16"``.
        probabilities_path: final path of the probabilities (needed with ``probabilities``).
        uncertainty_path: final path of the uncertainty raster, or None.
        before_commit: called as ``before_commit(group, classes_tmp)`` once every COG is written
            and validated under its temporary name, before anything is renamed: add outputs that
            derive from the class map (a quicklook) with ``group.path(final)``.
        model_name: written into the metadata (``MODEL_NAME``); default: the ``ModelSpec``'s.
        model_version: written into the metadata (``MODEL_VERSION``); default: the ``ModelSpec``'s.
        sidecars: also write the QGIS style (``.qml``) and GDAL's ``.aux.xml`` beside the class map.
        spec: the former name of ``legend`` (a ``ModelSpec``), kept for existing callers.
    """

    def __init__(
        self,
        classes_path: str | os.PathLike[str],
        crs: Any,
        transform: Any,
        shape: tuple[int, int],
        legend: Legend | ModelSpec | None = None,
        product_id: str = "",
        probabilities: str | None = None,
        probabilities_path: str | os.PathLike[str] | None = None,
        uncertainty_path: str | os.PathLike[str] | None = None,
        before_commit: Callable[[AtomicGroup, Path], None] | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        sidecars: bool = True,
        spec: ModelSpec | None = None,
    ) -> None:
        if probabilities not in (None, "uint8", "float16"):
            raise ValueError(f"probabilities must be 'uint8' or 'float16', got {probabilities!r}")
        if probabilities and probabilities_path is None:
            raise ValueError("probabilities_path is needed when probabilities are written")
        if legend is not None and spec is not None:
            raise ValueError("give the classes once: legend= (a Legend) or spec= (a ModelSpec), not both")
        source = legend if legend is not None else spec
        self.classes_path = Path(classes_path)
        self.legend: Legend = as_legend(source)
        self.model_name, self.model_version = _model_strings(source if not isinstance(source, Legend) else None, model_name, model_version)
        self.sidecars = bool(sidecars)
        self.product_id = product_id
        self.height, self.width = int(shape[0]), int(shape[1])
        self.prob_kind = probabilities
        self._base = dict(
            driver="GTiff",
            height=self.height,
            width=self.width,
            crs=crs,
            transform=transform,
            tiled=True,
            blockxsize=_BLOCK,
            blockysize=_BLOCK,
            compress="deflate",
            predictor=1,
            BIGTIFF="IF_SAFER",
        )
        self._prob_path = Path(probabilities_path) if probabilities_path else None
        self._unc_path = Path(uncertainty_path) if uncertainty_path else None
        self._raws: dict[str, _Raw] = {}
        self._before_commit = before_commit
        self.rows_written = 0

    def __enter__(self) -> SegmentationWriter:
        try:
            self._raws["classes"] = _Raw(self.classes_path, dict(self._base, count=1, dtype="uint8", nodata=NODATA_CLASS))
            cls = self._raws["classes"].ds  # the palette must be set before any pixel is written
            cls.write_colormap(1, self.legend.gdal_colormap())
            cls.update_tags(**self._tags())
            cls.set_band_description(1, "class")
            if self.prob_kind and self._prob_path is not None:
                prof = dict(self._base, count=len(self.legend), dtype="uint8" if self.prob_kind == "uint8" else "float32")
                if self.prob_kind == "float16":
                    prof.update(nbits=16, predictor=1)
                self._raws["probabilities"] = _Raw(self._prob_path, prof)
            if self._unc_path is not None:
                self._raws["uncertainty"] = _Raw(self._unc_path, dict(self._base, count=1, dtype="uint8", nodata=NODATA_CLASS))
        except BaseException:
            self._abort()
            raise
        return self

    def _tags(self) -> dict[str, str]:
        return _class_tags(self.legend, self.product_id, self.model_name, self.model_version)

    def write_rows(self, row: int, classes: np.ndarray, probabilities: np.ndarray | None = None, entropy: np.ndarray | None = None) -> None:
        """Write finished rows starting at ``row``.

        Args:
            row: first row (of the output grid) of the block.
            classes: uint8 ``(h, W)`` class values, 255 = no data.
            probabilities: float32 ``(K, h, W)`` probabilities (0 where no data), if written.
            entropy: float32 ``(h, W)`` entropy in nats, if the uncertainty is written.
        """
        from rasterio.windows import Window

        h = classes.shape[0]
        win = Window(0, row, self.width, h)
        self._raws["classes"].ds.write(classes, 1, window=win)
        nodata = classes == NODATA_CLASS
        raw = self._raws.get("probabilities")
        if raw is not None and probabilities is not None:
            if self.prob_kind == "uint8":
                data = np.clip(np.rint(probabilities * 255.0), 0, 255).astype(np.uint8)
            else:
                data = probabilities.astype(np.float16).astype(np.float32)
            raw.ds.write(data, window=win)
            raw.ds.write_mask(np.where(nodata, 0, 255).astype(np.uint8), window=win)
        raw = self._raws.get("uncertainty")
        if raw is not None and entropy is not None:
            k = max(len(self.legend), 2)
            u = np.clip(np.rint(entropy / math.log(k) * 254.0), 0, 254).astype(np.uint8)
            u[nodata] = NODATA_CLASS
            raw.ds.write(u, 1, window=win)
        self.rows_written = max(self.rows_written, row + h)

    def _finish(self) -> None:
        group = AtomicGroup()
        try:
            raw = self._raws.get("probabilities")
            if raw is not None:
                raw.ds.update_tags(**self._tags(), PROBABILITY_SCALE="255" if self.prob_kind == "uint8" else "1")
                for i, c in enumerate(self.legend.classes):
                    raw.ds.set_band_description(i + 1, f"p_{c.name}")
                raw.to_cog(group, COMPRESS="DEFLATE", OVERVIEW_RESAMPLING="AVERAGE", **({"NBITS": 16} if self.prob_kind == "float16" else {}))
            raw = self._raws.get("uncertainty")
            if raw is not None:
                raw.ds.update_tags(MEANING="entropy / log(classes), scaled 0..254", MODEL_NAME=self.model_name, PRODUCT_ID=self.product_id)
                raw.ds.set_band_description(1, "uncertainty")
                raw.to_cog(group, COMPRESS="DEFLATE", OVERVIEW_RESAMPLING="AVERAGE")
            if self.sidecars:  # class names for QGIS (style) and GDAL (attribute table), renamed before the map
                from nimbus.qgis import write_pam, write_qml

                write_qml(self.classes_path, self.legend, group=group)
                write_pam(self.classes_path, self.legend, group=group)
            # the class map last: its presence means every output of the product is complete
            classes_tmp = self._raws["classes"].to_cog(group, last=True, COMPRESS="DEFLATE", OVERVIEW_RESAMPLING="MODE")
            if self._before_commit is not None:
                self._before_commit(group, classes_tmp)
        except BaseException as exc:
            group.abort()
            err = write_failure(exc, self.classes_path)
            if err is exc:
                raise
            raise err from exc
        group.commit()

    def _abort(self) -> None:
        for raw in self._raws.values():
            raw.remove()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            if self.rows_written < self.height:
                raise RuntimeError(f"only {self.rows_written} of {self.height} rows of {self.classes_path} were written")
            self._finish()
        finally:
            self._abort()


def write_class_map(
    path: str | os.PathLike[str],
    classes: np.ndarray,
    crs: Any,
    transform: Any,
    legend: Legend | ModelSpec | None = None,
    product_id: str = "",
    model_name: str | None = None,
    model_version: str | None = None,
    sidecars: bool = True,
) -> Path:
    """Write an in-memory class map as a COG (palette, class names, mode overviews), atomically.

    The QGIS style (``.qml``) and GDAL's ``.aux.xml`` (category names, attribute table) are
    written beside it (:mod:`nimbus.qgis`) unless ``sidecars`` is False.

    Args:
        path: final path.
        classes: uint8 ``(H, W)`` class values, 255 = no data.
        crs: coordinate reference system.
        transform: affine transform.
        legend: the classes (a :class:`nimbus.legend.Legend`; a ``ModelSpec`` is still accepted;
            None = the Nimbus default legend).
        product_id: written into the metadata.
        model_name: written into the metadata (default: the ``ModelSpec``'s, else empty).
        model_version: written into the metadata (default: the ``ModelSpec``'s, else empty).
        sidecars: write the ``.qml`` and ``.aux.xml`` too.

    Returns:
        The path written.
    """
    with SegmentationWriter(path, crs, transform, classes.shape, legend, product_id, model_name=model_name,
                            model_version=model_version, sidecars=sidecars) as w:
        w.write_rows(0, np.asarray(classes, np.uint8))
    return Path(path)
