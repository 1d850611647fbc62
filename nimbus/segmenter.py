"""Smooth tiled segmentation of whole products (or numpy arrays) with an ONNX model, streaming.

:class:`Segmenter` slides overlapping windows over the raster at the model's resolution, runs
the onnxruntime session on batches of windows, blends the windows' softmax probabilities with
centre-heavy weights (see :mod:`nimbus.blend` for why probabilities), and writes the class map.

Streaming keeps memory set by a strip, not the tile: windows are processed one window row at a
time. The input is read in chunks of rows (``read_rows``, default the window step), kept only while
a window still needs them (the halo shared by overlapping window rows is read once, and chunks are
never concatenated); probabilities accumulate in one reused buffer of a window's height, and rows
are finalised and handed to the writer as soon as no later window touches them. Peak memory is
about ``(window + 3 * read_rows) * width * channels * 4`` bytes of input plus the model's, for any
product height. Reading/decoding/resampling (a background thread, one chunk ahead), inference (the calling
thread) and writing (a background thread) overlap; onnxruntime, GDAL and the C++ blend kernel
release the GIL.

Windows holding no valid input pixel are skipped without running the model; pixels without data
get class 255. Optional D4 test-time augmentation averages the probabilities of up to 8 flipped /
rotated copies of every window.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nimbus.blend import HostBlender
from nimbus.errors import ModelError, NimbusWarning, UsageError
from nimbus.modelspec import NODATA_CLASS, ModelSpec
from nimbus.session import Session
from nimbus.tta import D4
from nimbus.windows import WEIGHT_KINDS, WindowLayout, window_weights

__all__ = ["AUX_COVERAGE_WARNING", "SegmentResult", "Segmenter", "check_options", "gdal_cache", "output_paths"]

#: An auxiliary layer covering less than this share of a product is reported (its pixels are no data elsewhere).
AUX_COVERAGE_WARNING: float = 0.95

#: Reader of raster rows ``[r0, r1)``: ``(float32 (C, r1-r0, W), bool valid (r1-r0, W))``.
RowReader = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
#: Receiver of finished rows: ``(r0, classes (h, W), probabilities (K, h, W) | None, entropy (h, W) | None)``.
RowSink = Callable[[int, np.ndarray, "np.ndarray | None", "np.ndarray | None"], None]


@dataclass
class SegmentResult:
    """What :meth:`Segmenter.segment` did.

    Attributes:
        product_id: the product's identifier.
        classes: path of the class map.
        probabilities: path of the probability raster, if written.
        uncertainty: path of the uncertainty raster, if written.
        quicklook: path of the quicklook PNG, if written.
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
    skipped: bool = False
    windows: int = 0
    windows_skipped: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def check_options(
    window: int | None = None,
    overlap: float | None = None,
    weights: str = "spline",
    tta: int | bool = 0,
    batch: int = 8,
    threads: int = 0,
) -> None:
    """Refuse run options out of range, naming the option (not the model, whose metadata is checked apart).

    Args:
        window: window size in pixels, or None (the model's).
        overlap: overlap fraction in [0, 1), or None (the model's).
        weights: one of :data:`nimbus.windows.WEIGHT_KINDS`.
        tta: 0..8 D4 transforms (True = 8).
        batch: windows per inference call, >= 1.
        threads: CPU threads, >= 0 (0 = all cores).

    Raises:
        UsageError: naming the option, its value and the allowed range.
    """

    def number(name: str, value: Any, kind: type) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and float(value) != int(value)):
            raise UsageError(f"--{name} {value!r}: expected {'an integer' if kind is int else 'a number'}")
        return kind(value)

    if window is not None and not 16 <= number("window", window, int) <= 8192:
        raise UsageError(f"--window {window}: must be between 16 and 8192 pixels")
    if overlap is not None and not 0.0 <= number("overlap", overlap, float) < 1.0:
        raise UsageError(f"--overlap {overlap}: must be a fraction in [0, 1), e.g. 0.5")
    if weights not in WEIGHT_KINDS:
        raise UsageError(f"--weights {weights!r}: choose one of {', '.join(WEIGHT_KINDS)}")
    if tta is not True and not 0 <= number("tta", tta, int) <= 8:
        raise UsageError(f"--tta {tta}: must be 0 (off) to 8 D4 transforms")
    if number("batch", batch, int) < 1:
        raise UsageError(f"--batch {batch}: must be at least 1")
    if number("threads", threads, int) < 0:
        raise UsageError(f"--threads {threads}: must be 0 (all cores) or more")


def output_paths(out_dir: str | os.PathLike[str], product_id: str, spec: ModelSpec) -> dict[str, Path]:
    """The output file names of a product segmented by a model.

    Args:
        out_dir: the output folder.
        product_id: the product identifier.
        spec: the model description (its name and version go into the names).

    Returns:
        ``{"classes", "probabilities", "uncertainty", "quicklook"}`` -> path.
    """
    base = Path(out_dir) / f"{product_id}_{spec.file_tag}"
    return {
        "classes": base.with_name(base.name + "_classes.tif"),
        "probabilities": base.with_name(base.name + "_probabilities.tif"),
        "uncertainty": base.with_name(base.name + "_uncertainty.tif"),
        "quicklook": base.with_name(base.name + "_quicklook.png"),
    }


def _complete(paths: list[Path]) -> bool:
    """Whether every output exists and validates (an invalid one is redone, never skipped)."""
    from nimbus.validate import is_valid

    return all(is_valid(p) for p in paths)


@contextmanager
def gdal_cache(megabytes: int | None) -> Iterator[None]:
    """Bound GDAL's block cache (process-wide) while the block runs, then restore it.

    GDAL's default cache is 5 % of the machine's RAM (6 GB on a 128 GB server), which alone
    would break the segmenter's memory bound; GDAL reads ``GDAL_CACHEMAX`` only once, so the
    limit is set through ``GDALSetCacheMax64`` of the libgdal rasterio loaded. Does nothing
    when ``megabytes`` is None or libgdal cannot be found.
    """
    lib = _libgdal() if megabytes else None
    if lib is None:
        yield
        return
    old = lib.GDALGetCacheMax64()
    lib.GDALSetCacheMax64(ctypes.c_int64(int(megabytes) * 1024 * 1024))
    try:
        yield
    finally:
        lib.GDALSetCacheMax64(ctypes.c_int64(old))


def _libgdal() -> Any:
    import rasterio  # noqa: F401  (loads libgdal)

    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "libgdal" in line and "/" in line}
    except OSError:
        paths = set()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.GDALGetCacheMax64.restype = ctypes.c_int64
            lib.GDALSetCacheMax64.argtypes = [ctypes.c_int64]
            return lib
        except (OSError, AttributeError):
            continue
    return None


class _RowChunks:
    """Input rows kept as the chunks the reader produced (windows copy across chunk borders; no
    concatenation, so the input buffer never holds a second copy of itself)."""

    def __init__(self) -> None:
        self.items: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._next = 0

    @property
    def end(self) -> int:
        return self._next

    def push(self, data: np.ndarray, valid: np.ndarray) -> None:
        self.items.append((self._next, data, valid))
        self._next += valid.shape[0]

    def drop_before(self, row: int) -> None:
        self.items = [it for it in self.items if it[0] + it[2].shape[0] > row]

    def _parts(self, r0: int, r1: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, int, int]]:
        for start, data, valid in self.items:
            a, b = max(r0, start), min(r1, start + valid.shape[0])
            if a < b:
                yield a - r0, data, valid, a - start, b - start

    def valid(self, r0: int, r1: int) -> np.ndarray:
        parts = [v[a:b] for _, _, v, a, b in self._parts(r0, r1)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def copy_to(self, out: np.ndarray, r0: int, x0: int, x1: int) -> None:
        for o, data, _, a, b in self._parts(r0, r0 + out.shape[1]):
            out[:, o : o + b - a] = data[:, a:b, x0:x1]


def _cuda_blender(k: int, width: int, class_values: tuple[int, ...]) -> Any:  # pragma: no cover - GPU path
    from nimbus.blend_cuda import CudaBlender

    return CudaBlender(k, width, class_values)


class Segmenter:
    """Segment products or arrays with a Nimbus ONNX model.

    Args:
        model: path of the ``.onnx`` model (with Nimbus metadata).
        provider: ``"auto"`` (CUDA if usable, else CPU), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        threads: CPU threads for onnxruntime and the blend kernel (0 = all cores).
        batch: windows per model call.
        window: window size in pixels (default: the model's).
        overlap: fraction of overlap between neighbouring windows (default: the model's).
        weights: blending weights: ``"spline"``, ``"gaussian"`` or ``"tukey"``.
        tta: number of D4 transforms to average (0 or 1 = off, up to 8); ``True`` means 8.
        aux_dir: folder of auxiliary layers for models that take them.
        read_rows: rows read per chunk (default: the window step, so each window row reads one
            chunk); the input held is about ``window + 2 * read_rows`` rows of all channels.
        progress: show a tqdm bar (quiet when output is not a terminal).
        gdal_cache_mb: GDAL block cache while segmenting a product (None: leave GDAL's default,
            5 % of RAM). Large enough to keep a row of decoded JPEG2000 tiles of every band.

    Example:
        >>> seg = Segmenter("model.onnx")                       # doctest: +SKIP
        >>> classes = seg.predict(array)                        # (C, H, W) of seg.spec.channels
        >>> result = seg.segment("S2A_MSIL1C_....SAFE", out="maps/")
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        provider: str = "auto",
        threads: int = 0,
        batch: int = 8,
        window: int | None = None,
        overlap: float | None = None,
        weights: str = "spline",
        tta: int | bool = 0,
        aux_dir: str | os.PathLike[str] | None = None,
        read_rows: int | None = None,
        progress: bool = True,
        gdal_cache_mb: int | None = 256,
    ) -> None:
        check_options(window=window, overlap=overlap, weights=weights, tta=tta, batch=batch, threads=threads)
        self.session = Session(model, provider=provider, threads=threads)
        spec = self.session.spec
        if window is not None and int(window) != spec.window:
            if not spec.dynamic_hw:
                raise ModelError(f"model {model} has a fixed {spec.window}x{spec.window} input; --window {window} is not possible")
            spec = spec.replace(window=int(window))
        if overlap is not None:
            spec = spec.replace(overlap=float(overlap))
        self.spec: ModelSpec = spec
        self.weights = weights
        self.batch = max(1, int(batch))
        self.tta = 8 if tta is True else max(1, min(8, int(tta or 1)))
        self.threads = int(threads)
        self.aux_dir = aux_dir
        self.read_rows = int(read_rows) if read_rows else WindowLayout(spec.window, spec.window, spec.window, spec.overlap).step
        self.progress = progress
        self.gdal_cache_mb = gdal_cache_mb
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

    # ------------------------------------------------------------------ model
    def _prepare(self, tiles: np.ndarray) -> np.ndarray:
        if not self.spec.normalization_in_graph:
            tiles = (tiles - self._mean) / self._std
        return tiles

    def _infer(self, tiles: np.ndarray) -> Any:
        """Probabilities (N, K, h, w) of a batch, TTA-averaged; a device array on the CUDA path."""
        x = self._prepare(tiles)
        out: Any = None
        for k in range(self.tta):
            fwd, inv = D4[k]
            xt = np.ascontiguousarray(fwd(x)) if k else x
            if self._use_cuda and self.session.on_gpu and self.tta == 1 and self.spec.softmax_in_graph:
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
        if self.tta > 1:
            out = out / np.float32(self.tta)
        return np.ascontiguousarray(out, dtype=np.float32)

    # ------------------------------------------------------------------ engine
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
        """Stream windows over a ``height x width`` raster: read, infer, blend, hand rows to ``sink``."""
        from tqdm.auto import tqdm

        spec = self.spec
        layout = WindowLayout(height, width, spec.window, spec.overlap)
        wh, ww = layout.win_h, layout.win_w
        size = spec.window
        padded = (wh, ww) != (size, size)
        weights = window_weights((wh, ww), self.weights)
        ys = layout.row_starts
        k = spec.num_classes
        blender: Any = _cuda_blender(k, width, spec.class_values) if self._use_cuda else HostBlender(k, width, spec.class_values, self.threads, wh)
        stats = {"read": 0.0, "infer": 0.0, "blend": 0.0, "write": 0.0, "windows": 0, "windows_skipped": 0}
        chunk = max(self.read_rows, 1)
        c = len(spec.channels)

        # --- reader thread: chunks of rows, one ahead
        chunks: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def read_all() -> None:
            try:
                for r0 in range(0, height, chunk):
                    if stop.is_set():
                        return
                    t = time.perf_counter()
                    data, valid = reader(r0, min(height, r0 + chunk))
                    stats["read"] += time.perf_counter() - t
                    if data.shape != (c, valid.shape[0], width) or valid.shape != (min(height, r0 + chunk) - r0, width):
                        raise ModelError(f"reader returned {data.shape}/{valid.shape} for rows {r0}..{r0 + chunk}; expected ({c}, h, {width})")
                    while not stop.is_set():
                        try:
                            chunks.put((np.asarray(data, np.float32), np.asarray(valid, bool)), timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except BaseException as exc:  # handed to the main thread
                chunks.put(exc)

        # --- writer thread
        results: queue.Queue = queue.Queue(maxsize=2)
        errors: list[BaseException] = []

        def write_all() -> None:
            while True:
                item = results.get()
                if item is None:
                    return
                if errors:
                    continue
                try:
                    t = time.perf_counter()
                    sink(*item)
                    stats["write"] += time.perf_counter() - t
                except BaseException as exc:
                    errors.append(exc)

        reader_t = threading.Thread(target=read_all, name="nimbus-read", daemon=True)
        writer_t = threading.Thread(target=write_all, name="nimbus-write", daemon=True)
        reader_t.start()
        writer_t.start()
        rows = _RowChunks()
        bar = tqdm(total=height, desc=desc or "segment", unit="row", disable=None if self.progress else True, leave=False)
        try:
            for i, y in enumerate(ys):
                # hold input rows [y, y + wh): drop chunks no window needs any more, take new ones
                rows.drop_before(min(y, blender.start))
                while rows.end < y + wh:
                    item = chunks.get()
                    if isinstance(item, BaseException):
                        raise item
                    rows.push(*item)
                blender.extend(y + wh)
                strip_valid = rows.valid(y, y + wh)
                wins = [(y, x) for x in layout.col_starts if strip_valid[:, x : x + ww].any()]
                stats["windows_skipped"] += len(layout.col_starts) - len(wins)
                for b in range(0, len(wins), self.batch):
                    part = wins[b : b + self.batch]
                    tiles = np.empty((len(part), c, size, size), np.float32)
                    for j, (_, x) in enumerate(part):
                        if padded:  # raster smaller than a window: mirror it up to the window size
                            tile = np.empty((c, wh, ww), np.float32)
                            rows.copy_to(tile, y, x, x + ww)
                            tiles[j] = np.pad(tile, ((0, 0), (0, size - wh), (0, size - ww)), mode="symmetric")
                        else:
                            rows.copy_to(tiles[j], y, x, x + ww)
                    t = time.perf_counter()
                    probs = self._infer(tiles)
                    stats["infer"] += time.perf_counter() - t
                    if padded and not self._use_cuda:  # the CUDA kernel reads the top-left (wh, ww) itself
                        probs = np.ascontiguousarray(probs[:, :, :wh, :ww])
                    t = time.perf_counter()
                    blender.add(probs, [y] * len(part), [x for _, x in part], weights)
                    stats["blend"] += time.perf_counter() - t
                    stats["windows"] += len(part)
                # rows before the next window row are final
                end = ys[i + 1] if i + 1 < len(ys) else y + wh
                t = time.perf_counter()
                r0 = blender.start
                classes, probs_out, ent = blender.take(end, rows.valid(r0, end), want_probs, want_entropy)
                stats["blend"] += time.perf_counter() - t
                if errors:
                    raise errors[0]
                results.put((r0, classes, probs_out, ent))
                bar.update(end - r0)
                if callback is not None:
                    callback(end, height)
            results.put(None)
            writer_t.join()
            if errors:
                raise errors[0]
            self.last_stats = stats
        finally:
            stop.set()
            bar.close()
            if writer_t.is_alive():
                errors.append(RuntimeError("aborted"))
                results.put(None)
                writer_t.join()
            while reader_t.is_alive():
                try:
                    chunks.get(timeout=0.1)
                except queue.Empty:
                    pass
            reader_t.join()
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
    def _warn_aux_coverage(self, product: Any) -> None:
        """Warn when an auxiliary layer the model takes covers little of the product (no data elsewhere)."""
        import rasterio

        from nimbus.auxiliary import find_aux
        from nimbus.inputs import split_channels

        _, layers = split_channels(self.spec.channels)
        for layer in layers:
            path = find_aux(self.aux_dir, product.tile, layer, int(round(self.spec.resolution)))
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

    def check_inputs(self, product: Any) -> None:
        """Refuse a product the model cannot run on, before any work: resolution, level, channels.

        Raises:
            ModelError: naming the model, the product and what does not fit (a resolution that is
                not a Sentinel-2 grid, B10 asked of an L2A product, channels that neither the
                product nor the auxiliary folder provide).
        """
        from nimbus.inputs import missing_channels

        src = getattr(product, "path", product)
        res = self.spec.resolution
        if res not in (10.0, 20.0, 60.0):
            raise ModelError(f"model {self.session.path} works at {res:g} m; Sentinel-2 products have 10, 20 and 60 m grids")
        missing = missing_channels(product, self.spec.channels, self.aux_dir)
        if "B10" in missing and getattr(product, "level", "") == "L2A":
            raise ModelError(
                f"model {self.session.path} takes B10 (cirrus), which L2A products such as {src} do not have; "
                "use a model made for L2A (or the L1C product)"
            )
        if missing:
            where = f"nor the auxiliary folder {self.aux_dir} provides" if self.aux_dir else "provides and no auxiliary folder was given (--aux DIR)"
            raise ModelError(f"model {self.session.path} needs channel(s) {', '.join(missing)}, which neither product {src} {where}")

    def segment(
        self,
        product: Any,
        out: str | os.PathLike[str] = ".",
        probabilities: str | None = None,
        uncertainty: bool = False,
        quicklook: bool = False,
        overwrite: bool = False,
        region: Any = None,
        callback: Callable[[int, int], None] | None = None,
        lock_wait: float | None = None,
        on_wait: Callable[[dict], None] | None = None,
    ) -> SegmentResult:
        """Segment a product into a class map (COG) and optional extras, streaming in strips.

        Args:
            product: a product path (.SAFE folder, zipped SAFE, COG folder) or an opened product.
            out: output folder. Names: ``<product_id>_<model>-v<version>_classes.tif`` etc.
            probabilities: also write per-class probabilities: ``"uint8"`` (0..255) or ``"float16"``.
            uncertainty: also write the normalised entropy of the probabilities (uint8 0..254).
            quicklook: also write a PNG (true colour beside the classes, with a legend).
            overwrite: replace existing outputs (default: skip a product whose class map exists).
            region: optional ``rasterio.windows.Window`` of the model-resolution grid to segment
                instead of the whole product.
            callback: called as ``callback(rows_done, rows_total)`` after each strip.
            lock_wait: seconds to wait while another process writes the same outputs (None: as
                long as it runs); afterwards a product it completed is skipped.
            on_wait: called once as ``on_wait(owner)`` when another process holds the outputs.

        Outputs are committed together, the class map last, after each was reopened and
        validated: an existing class map means every output of the product is complete. Outputs
        that exist but do not validate are redone, never skipped.

        Returns:
            A :class:`SegmentResult` with the paths written and the time per stage.

        Raises:
            ModelError: when the model needs a channel the product or ``aux_dir`` cannot provide.
            OutputError: when an output cannot be written completely (e.g. the disk is full).
        """
        from affine import Affine
        from rasterio.windows import Window

        from nimbus.atomic import remove_stale_temporaries
        from nimbus.inputs import assemble
        from nimbus.lock import OutputLock
        from nimbus.writers import SegmentationWriter

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
        wanted = [p for p in (result.classes, result.probabilities, result.uncertainty, result.quicklook) if p is not None]
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
            for p in paths.values():  # what a killed run left behind (we hold the lock: nobody writes them)
                remove_stale_temporaries(p)
            self._warn_aux_coverage(product)

            def reader(r0: int, r1: int) -> tuple[np.ndarray, np.ndarray]:
                data, valid = assemble(product, self.spec.channels, res_i, Window(col0, row0 + r0, w, r1 - r0), self.aux_dir)
                return data, valid

            def add_quicklook(group: Any, classes_tmp: Path) -> None:
                from nimbus.quicklook import write_quicklook

                write_quicklook(product, classes_tmp, group.path(paths["quicklook"]), self.spec, region=region)

            t0 = time.perf_counter()
            with gdal_cache(self.gdal_cache_mb), SegmentationWriter(
                paths["classes"],
                crs=product.crs,
                transform=transform,
                shape=(h, w),
                spec=self.spec,
                product_id=product.product_id,
                probabilities=probabilities,
                probabilities_path=result.probabilities,
                uncertainty_path=result.uncertainty,
                before_commit=add_quicklook if quicklook else None,
            ) as writer:
                stats = self._run(
                    h,
                    w,
                    reader,
                    writer.write_rows,
                    want_probs=bool(probabilities),
                    want_entropy=bool(uncertainty),
                    callback=callback,
                    desc=product.product_id[:40],
                )
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
