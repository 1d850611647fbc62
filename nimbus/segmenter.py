"""Smooth tiled segmentation of whole products (or numpy arrays) with an ONNX model, streaming.

A :class:`Segmenter` joins three things: the model (an onnxruntime :class:`~nimbus.session.Session`
and its :class:`~nimbus.modelspec.ModelSpec`: channels, classes, resolution, default window), how
this run tiles it (a frozen, picklable :class:`~nimbus.engine.config.SegmentConfig`: window,
overlap, weights, TTA, batch, provider, threads, outputs, overwrite) and the streaming loop
(:func:`nimbus.engine.loop.stream`), which reads rows, runs windows through the model, blends
their softmax probabilities with centre-heavy weights (see :mod:`nimbus.blend` for why
probabilities) and hands finished rows to the class-map writer.

Windows holding no valid input pixel are skipped without running the model; pixels without data
get class 255. Optional D4 test-time augmentation (:mod:`nimbus.tta`) averages the probabilities of
up to 8 flipped / rotated copies of every window. Many products, on one process or a Dask cluster:
:func:`nimbus.engine.segment_many`.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nimbus.blend import Blender, HostBlender
from nimbus.engine.config import SegmentConfig, check_options
from nimbus.engine.gdalenv import configure_gdal, gdal_cache
from nimbus.engine.loop import RowReader, RowSink, Tiling, stream
from nimbus.errors import ModelError, NimbusWarning
from nimbus.legend import Legend
from nimbus.modelspec import NODATA_CLASS, ModelSpec
from nimbus.session import Session
from nimbus.tta import D4

__all__ = ["AUX_COVERAGE_WARNING", "SegmentResult", "Segmenter", "check_options", "gdal_cache", "output_paths"]

#: An auxiliary layer covering less than this share of a product is reported (its pixels are no data elsewhere).
AUX_COVERAGE_WARNING: float = 0.95


@dataclass
class SegmentResult:
    """What :meth:`Segmenter.segment` did.

    Attributes:
        product_id: the product's identifier.
        classes: path of the class map.
        probabilities: path of the probability raster, if written.
        uncertainty: path of the uncertainty raster, if written.
        quicklook: path of the quicklook PNG, if written.
        item: path of the STAC Item, if written.
        skipped: True when the outputs existed and were kept.
        windows: windows run through the model (before TTA).
        windows_skipped: windows skipped because they hold no data.
        seconds: time per stage (read, infer, blend, write; read and write overlap inference) and total.
    """

    product_id: str
    classes: Path
    probabilities: Path | None = None
    uncertainty: Path | None = None
    quicklook: Path | None = None
    item: Path | None = None
    skipped: bool = False
    windows: int = 0
    windows_skipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def outputs(self) -> dict[str, Path]:
        """The outputs of the product, by kind (``classes`` first)."""
        out = {"classes": self.classes}
        for kind in ("probabilities", "uncertainty", "quicklook", "item"):
            if getattr(self, kind) is not None:
                out[kind] = getattr(self, kind)
        return out


def output_paths(out_dir: str | os.PathLike[str], product_id: str, spec: ModelSpec) -> dict[str, Path]:
    """The output file names of a product segmented by a model.

    Args:
        out_dir: the output folder.
        product_id: the product identifier.
        spec: the model description (its name and version go into the names).

    Returns:
        ``{"classes", "probabilities", "uncertainty", "quicklook", "item"}`` -> path.
    """
    base = Path(out_dir) / f"{product_id}_{spec.file_tag}"
    return {
        "classes": base.with_name(base.name + "_classes.tif"),
        "probabilities": base.with_name(base.name + "_probabilities.tif"),
        "uncertainty": base.with_name(base.name + "_uncertainty.tif"),
        "quicklook": base.with_name(base.name + "_quicklook.png"),
        "item": base.with_name(base.name + "_item.json"),
    }


def _complete(paths: list[Path]) -> bool:
    """Whether every output exists and validates (an invalid one is redone, never skipped)."""
    from nimbus.validate import is_valid

    return all(is_valid(p) for p in paths)


def _stac_available(classes: Path) -> bool:
    """Whether pystac (the ``[stac]`` extra) is installed; warns (naming the map) when it is not."""
    import importlib.util

    if importlib.util.find_spec("pystac") is not None:
        return True
    warnings.warn(f'no STAC Item beside {classes}: pip install "nimbus-s2[stac]" for items', NimbusWarning, stacklevel=3)
    return False


def _cuda_blender(k: int, width: int, class_values: tuple[int, ...]) -> Any:  # pragma: no cover - GPU path
    from nimbus.blend_cuda import CudaBlender

    return CudaBlender(k, width, class_values)


class Segmenter:
    """Segment products or arrays with a Nimbus ONNX model.

    Args:
        model: path of the ``.onnx`` model (with Nimbus metadata).
        config: the run's options (:class:`~nimbus.engine.config.SegmentConfig`); keyword options
            (``window=512``, ``tta=4``, ``aux_dir=...``...) override its fields.
        **options: :class:`~nimbus.engine.config.SegmentConfig` fields; ``aux_dir`` is ``aux``.

    Attributes:
        spec: the model's own description (never changed by the run's options).
        config: the run's options.
        tiling: the window size, overlap, weights and batch this run uses.

    Example:
        >>> seg = Segmenter("model.onnx", window=512)           # doctest: +SKIP
        >>> classes = seg.predict(array)                        # (C, H, W) of seg.spec.channels
        >>> result = seg.segment("S2A_MSIL1C_....SAFE", out="maps/")
    """

    def __init__(self, model: str | os.PathLike[str], config: SegmentConfig | None = None, **options: Any) -> None:
        if "aux_dir" in options:
            options["aux"] = options.pop("aux_dir")
        if "aux" in options and options["aux"] is not None:
            options["aux"] = os.fspath(options["aux"])
        config = (config or SegmentConfig()).replace(**options) if options else (config or SegmentConfig())
        self.config: SegmentConfig = config
        self.session = Session(model, provider=config.provider, threads=config.threads)
        spec = self.session.spec
        if config.window is not None and config.window != spec.window and not spec.dynamic_hw:
            raise ModelError(f"model {model} has a fixed {spec.window}x{spec.window} input; --window {config.window} is not possible")
        self.spec: ModelSpec = spec
        self.legend: Legend = Legend.of(spec.classes)
        self.tiling = Tiling(
            size=config.window or spec.window,
            overlap=spec.overlap if config.overlap is None else config.overlap,
            weights=config.weights,
            batch=config.batch,
            read_rows=config.read_rows,
        )
        self._mean = np.asarray(spec.mean, np.float32)[:, None, None]
        self._std = np.asarray(spec.std, np.float32)[:, None, None]
        self.last_stats: dict[str, Any] = {}
        self._use_cuda = False
        if self.session.on_gpu:
            try:
                from numba import cuda

                self._use_cuda = bool(cuda.is_available())
            except Exception:  # numba without CUDA support
                self._use_cuda = False
        configure_gdal(config.gdal_cache_mb)  # once per process, not per product

    # ------------------------------------------------------------------ options (read-only views of the config)
    @property
    def aux_dir(self) -> str | None:
        """The folder of auxiliary layers (``"auto"``: fetched per product)."""
        return self.config.aux

    @property
    def window(self) -> int:
        """The window size this run uses."""
        return self.tiling.size

    @property
    def overlap(self) -> float:
        """The overlap this run uses."""
        return self.tiling.overlap

    @property
    def tta(self) -> int:
        """D4 transforms averaged (1 = off)."""
        return self.config.tta

    # ------------------------------------------------------------------ model
    def _prepare(self, tiles: np.ndarray) -> np.ndarray:
        if not self.spec.normalization_in_graph:
            tiles = (tiles - self._mean) / self._std
        return tiles

    def _infer(self, tiles: np.ndarray) -> Any:
        """Probabilities (N, K, h, w) of a batch, TTA-averaged; a device array on the CUDA path."""
        x = self._prepare(tiles)
        out: Any = None
        tta = self.config.tta
        for k in range(tta):
            fwd, inv = D4[k]
            xt = np.ascontiguousarray(fwd(x)) if k else x
            if self._use_cuda and self.session.on_gpu and tta == 1 and self.spec.softmax_in_graph:
                dev, keep = self.session.run_device(xt)
                self._keepalive = keep  # the OrtValue owning the device memory
                return dev
            p = self.session.run(xt)
            if not self.spec.softmax_in_graph:
                p = p - p.max(axis=1, keepdims=True)
                np.exp(p, out=p)
                p /= p.sum(axis=1, keepdims=True)
            p = inv(p) if k else p
            out = p if out is None else out + p
        if tta > 1:
            out = out / np.float32(tta)
        return np.ascontiguousarray(out, dtype=np.float32)

    def _blender(self, width: int) -> Blender:
        k, values = self.spec.num_classes, self.spec.class_values
        if self._use_cuda:
            return _cuda_blender(k, width, values)
        return HostBlender(k, width, values, self.config.threads, self.tiling.layout(self.tiling.size, width).win_h)

    def _run(
        self,
        height: int,
        width: int,
        reader: RowReader,
        sink: RowSink,
        want_probs: bool = False,
        want_entropy: bool = False,
        callback: Callable[[int, int], None] | None = None,
        desc: str = "",
    ) -> dict[str, Any]:
        """Stream windows over a ``height x width`` raster (:func:`nimbus.engine.loop.stream`)."""
        stats = stream(
            height, width, len(self.spec.channels), reader, self._infer, self._blender(width), sink, self.tiling,
            want_probs=want_probs, want_entropy=want_entropy, callback=callback, desc=desc, progress=self.config.progress,
        )  # fmt: skip
        self.last_stats = stats
        return stats

    # ------------------------------------------------------------------ arrays
    def predict(
        self,
        array: np.ndarray,
        valid: np.ndarray | None = None,
        probabilities: bool = False,
        entropy: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        """Segment an in-memory array of the model's channels, without touching disk.

        Args:
            array: ``(C, H, W)`` channels in ``spec.channels`` order, as the graph expects them
                (harmonised DN / raw auxiliary values when normalisation is in the graph).
            valid: optional bool ``(H, W)`` mask of pixels with data (default: every pixel
                whose channels are not all 0). Pixels with a NaN or infinite value in any channel
                are always no data (class 255): they never reach the model or their neighbours.
            probabilities: also return the blended probabilities float32 ``(K, H, W)``.
            entropy: also return the entropy (nats) of the probabilities float32 ``(H, W)``.

        Returns:
            uint8 ``(H, W)`` class values (255 where there is no data); with ``probabilities``
            and/or ``entropy``, a tuple ``(classes, probabilities?, entropy?)``.

        Raises:
            ModelError: when the array is not a numeric ``(C, H, W)`` array of the model's channel
                count, or the mask is not ``(H, W)``.
        """
        array = np.asarray(array)
        c = len(self.spec.channels)
        if array.ndim != 3 or array.shape[0] != c:
            raise ModelError(
                f"predict: the model {self.session.path} takes ({c}, H, W) arrays of "
                f"{', '.join(self.spec.channels)}; got shape {array.shape}"
            )
        if array.dtype.kind not in "biuf":
            raise ModelError(f"predict: expected a numeric ({c}, H, W) array (integers or floats), got dtype {array.dtype}")
        _, h, w = array.shape
        finite = np.isfinite(array).all(axis=0) if array.dtype.kind == "f" else np.ones((h, w), bool)
        if valid is None:
            valid = finite & (array != 0).any(axis=0)
        else:
            valid = np.asarray(valid)
            if valid.shape != (h, w):
                raise ModelError(f"predict: valid mask has shape {valid.shape}, expected {(h, w)}")
            valid = valid.astype(bool) & finite  # NaN / inf are no data, never fed to the model
        valid = np.asarray(valid, bool)
        classes = np.full((h, w), NODATA_CLASS, np.uint8)
        probs = np.zeros((self.spec.num_classes, h, w), np.float32) if probabilities else None
        ent = np.zeros((h, w), np.float32) if entropy else None

        def reader(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
            data = np.array(array[:, r0:r1], np.float32)
            ok = valid[r0:r1]
            data[:, ~ok] = 0
            return data, ok

        def sink(r0: int, cls: np.ndarray, p: np.ndarray | None, e: np.ndarray | None) -> None:
            n = cls.shape[0]
            classes[r0 : r0 + n] = cls
            if probs is not None and p is not None:
                probs[:, r0 : r0 + n] = p
            if ent is not None and e is not None:
                ent[r0 : r0 + n] = e

        self._run(h, w, reader, sink, want_probs=probabilities, want_entropy=entropy, desc="predict")
        extra = tuple(x for x in (probs, ent) if x is not None)
        return (classes, *extra) if extra else classes

    # ------------------------------------------------------------------ products
    def aux_for(self, product: Any) -> str | None:
        """The auxiliary folder for a product: the configured one, or with ``aux="auto"`` the cache
        folder holding the layers the model needs, fetched from public sources when missing."""
        aux = self.config.aux
        if aux != "auto":
            return aux
        from nimbus.inputs import split_channels

        _, layers = split_channels(self.spec.channels)
        if not layers:
            return None
        from nimbus.fetch import auto_aux

        return os.fspath(auto_aux(product, list(layers), int(round(self.spec.resolution))))

    def _warn_aux_coverage(self, product: Any, aux_dir: str | None) -> None:
        """Warn when an auxiliary layer the model takes covers little of the product (no data elsewhere)."""
        import rasterio

        from nimbus.auxiliary import find_aux
        from nimbus.inputs import split_channels

        _, layers = split_channels(self.spec.channels)
        for layer in layers:
            path = find_aux(aux_dir, product.tile, layer, int(round(self.spec.resolution)))
            if path is None:
                continue
            with rasterio.open(path) as ds:
                scale = max(1, max(ds.height, ds.width) // 512)
                mask = ds.read_masks(1, out_shape=(max(1, ds.height // scale), max(1, ds.width // scale)))
            covered = float((mask > 0).mean())
            if covered < AUX_COVERAGE_WARNING:
                warnings.warn(
                    f"auxiliary layer {layer} ({path}) covers {100 * covered:.1f}% of product "
                    f"{getattr(product, 'path', product.product_id)}; the rest of the class map is no data (255)",
                    NimbusWarning,
                    stacklevel=3,
                )

    def check_inputs(self, product: Any, aux_dir: str | None = None) -> None:
        """Refuse a product the model cannot run on, before any work: resolution, level, channels.

        Args:
            product: an opened product.
            aux_dir: the auxiliary folder (default: the configured one; ``"auto"`` counts as
                providing every auxiliary layer, which is fetched later).

        Raises:
            ModelError: naming the model, the product and what does not fit (a resolution that is
                not a Sentinel-2 grid, B10 asked of an L2A product, channels that neither the
                product nor the auxiliary folder provide).
        """
        from nimbus.inputs import missing_channels, split_channels

        aux_dir = self.config.aux if aux_dir is None else aux_dir
        src = getattr(product, "path", product)
        res = self.spec.resolution
        if res not in (10.0, 20.0, 60.0):
            raise ModelError(f"model {self.session.path} works at {res:g} m; Sentinel-2 products have 10, 20 and 60 m grids")
        missing = missing_channels(product, self.spec.channels, None if aux_dir == "auto" else aux_dir)
        if aux_dir == "auto":
            missing = [m for m in missing if m not in split_channels(self.spec.channels)[1]]
        if "B10" in missing and getattr(product, "level", "") == "L2A":
            raise ModelError(
                f"model {self.session.path} takes B10 (cirrus), which L2A products such as {src} do not have; "
                "use a model made for L2A (or the L1C product)"
            )
        if missing:
            where = f"nor the auxiliary folder {aux_dir} provides" if aux_dir else "provides and no auxiliary folder was given (--aux DIR, or --aux auto to fetch them)"
            raise ModelError(f"model {self.session.path} needs channel(s) {', '.join(missing)}, which neither product {src} {where}")

    def segment(
        self,
        product: Any,
        out: str | os.PathLike[str] = ".",
        probabilities: str | None = None,
        uncertainty: bool | None = None,
        quicklook: bool | None = None,
        overwrite: bool | None = None,
        region: Any = None,
        callback: Callable[[int, int], None] | None = None,
        lock_wait: float | None = None,
        on_wait: Callable[[dict], None] | None = None,
    ) -> SegmentResult:
        """Segment a product into a class map (COG) and optional extras, streaming in strips.

        Args:
            product: a product path (.SAFE folder, zipped SAFE, COG folder, STAC item) or an opened product.
            out: output folder. Names: ``<product_id>_<model>-v<version>_classes.tif`` etc.
            probabilities: also write per-class probabilities: ``"uint8"`` (0..255) or
                ``"float16"`` (default: the config's).
            uncertainty: also write the normalised entropy of the probabilities (uint8 0..254).
            quicklook: also write a PNG (true colour beside the classes, with a legend).
            overwrite: replace existing outputs (default: the config's; skip a product whose
                outputs exist and validate).
            region: optional ``rasterio.windows.Window`` of the model-resolution grid to segment
                instead of the whole product.
            callback: called as ``callback(rows_done, rows_total)`` after each strip.
            lock_wait: seconds to wait while another process writes the same outputs (None: as
                long as it runs); afterwards a product it completed is skipped.
            on_wait: called once as ``on_wait(owner)`` when another process holds the outputs.

        Outputs are committed together, the class map last, after each was reopened and
        validated: an existing class map means every output of the product is complete. Outputs
        that exist but do not validate are redone, never skipped. The STAC Item (``stac_item``
        in the config) is written after the commit, from the committed files.

        Returns:
            A :class:`SegmentResult` with the paths written and the time per stage.

        Raises:
            ModelError: when the model needs a channel the product or the auxiliary folder cannot provide.
            OutputError: when an output cannot be written completely (e.g. the disk is full).
        """
        from affine import Affine
        from rasterio.windows import Window

        from nimbus.atomic import remove_stale_temporaries
        from nimbus.inputs import assemble
        from nimbus.lock import OutputLock
        from nimbus.writers import SegmentationWriter

        cfg = self.config
        probabilities = cfg.probabilities if probabilities is None else (probabilities or None)
        uncertainty = cfg.uncertainty if uncertainty is None else bool(uncertainty)
        quicklook = cfg.quicklook if quicklook is None else bool(quicklook)
        overwrite = cfg.overwrite if overwrite is None else bool(overwrite)
        if not hasattr(product, "read"):
            from nimbus.product import open_product

            product = open_product(product)
        paths = output_paths(out, product.product_id, self.spec)
        result = SegmentResult(product.product_id, paths["classes"])
        if probabilities:
            result.probabilities = paths["probabilities"]
        if uncertainty:
            result.uncertainty = paths["uncertainty"]
        if quicklook:
            result.quicklook = paths["quicklook"]
        if cfg.stac_item and _stac_available(result.classes):
            result.item = paths["item"]
        wanted = list(result.outputs.values())
        if not overwrite and _complete(wanted):
            result.skipped = True
            return result
        self.check_inputs(product)
        res_i = int(round(self.spec.resolution))
        full_h, full_w = product.shape(res_i)
        if region is None:
            region = Window(0, 0, full_w, full_h)
        col0, row0 = int(region.col_off), int(region.row_off)
        h, w = int(region.height), int(region.width)
        transform = product.transform(res_i) @ Affine.translation(col0, row0)
        with OutputLock(paths["classes"], wait=lock_wait, on_wait=on_wait) as lock:
            if lock.waited and not overwrite and _complete(wanted):  # the other process did the work
                result.skipped = True
                return result
            if lock.took_over:  # a killed run left its lock, and maybe temporaries (we hold the lock: nobody writes them)
                from nimbus.qgis import pam_path, qml_path

                for p in [*paths.values(), qml_path(paths["classes"]), pam_path(paths["classes"])]:
                    remove_stale_temporaries(p)  # one folder scan per output, only after a takeover
            t0 = time.perf_counter()
            aux_dir = self.aux_for(product)
            self._warn_aux_coverage(product, aux_dir)

            def reader(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
                return assemble(product, self.spec.channels, res_i, Window(col0, row0 + r0, w, r1 - r0), aux_dir)

            def before_commit(group: Any, classes_tmp: Path) -> None:
                """Outputs derived from the written maps join the group: committed with them or not at all."""
                if quicklook:
                    from nimbus.quicklook import write_quicklook

                    write_quicklook(product, classes_tmp, group.path(paths["quicklook"]), self.spec, region=region)
                if result.item is not None:
                    self._write_item(result, product, group)

            with SegmentationWriter(
                paths["classes"],
                crs=product.crs,
                transform=transform,
                shape=(h, w),
                spec=self.spec,
                product_id=product.product_id,
                probabilities=probabilities,
                probabilities_path=result.probabilities,
                uncertainty_path=result.uncertainty,
                before_commit=before_commit if (quicklook or result.item is not None) else None,
            ) as writer:
                stats = self._run(
                    h, w, reader, writer.write_rows, want_probs=bool(probabilities), want_entropy=bool(uncertainty),
                    callback=callback, desc=product.product_id[:40],
                )  # fmt: skip
                t = time.perf_counter()
            stats["write"] += time.perf_counter() - t  # COG conversion, overviews, validation
        if stats["windows"] == 0:
            warnings.warn(
                f"{getattr(product, 'path', product.product_id)}: no valid pixel in any model input; the class map is all no data (255)",
                NimbusWarning,
                stacklevel=2,
            )
        result.windows = int(stats.pop("windows"))
        result.windows_skipped = int(stats.pop("windows_skipped"))
        stats["total"] = time.perf_counter() - t0
        result.seconds = {k: float(v) for k, v in stats.items()}
        return result

    def _write_item(self, result: SegmentResult, product: Any, group: Any) -> None:
        """Add the STAC Item of the outputs to their commit group (read from the temporaries)."""
        from nimbus.stacitem import write_classmap_item

        files = {k: v for k, v in result.outputs.items() if k != "item"}
        write_classmap_item(files, product, self.spec, group=group)
