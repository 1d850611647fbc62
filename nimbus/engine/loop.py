"""The streaming loop: a reader, an inference function, a blender and a sink, one window row at a time.

:func:`stream` slides overlapping windows over a ``height x width`` raster. The input is read in
chunks of rows (a background thread, one chunk ahead), kept only while a window still needs them
(the halo shared by overlapping window rows is read once, and chunks are never concatenated);
probabilities accumulate in the blender's strip buffer, and rows are finalised and handed to the
sink (a background thread) as soon as no later window touches them. Peak memory is about
``(window + 3 * read_rows) * width * channels * 4`` bytes of input plus the model's, for any
raster height. Windows holding no valid input pixel are skipped without running the model.

The loop knows nothing of products, files or models: :class:`nimbus.segmenter.Segmenter` gives it
a product reader and a class-map writer, :meth:`~nimbus.segmenter.Segmenter.predict` gives it
numpy slices, and the blender is :class:`nimbus.blend.HostBlender` or
:class:`nimbus.blend_cuda.CudaBlender` (the :class:`nimbus.blend.Blender` protocol).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from nimbus.blend import Blender
from nimbus.errors import ModelError
from nimbus.windows import WindowLayout, cut_windows, window_weights

__all__ = ["Infer", "RowReader", "RowSink", "Tiling", "stream"]

#: Reader of raster rows ``[r0, r1)``: ``(float32 (C, r1-r0, W), bool valid (r1-r0, W))``.
RowReader = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
#: Receiver of finished rows: ``(r0, classes (h, W), probabilities (K, h, W) | None, entropy (h, W) | None)``.
RowSink = Callable[[int, np.ndarray, "np.ndarray | None", "np.ndarray | None"], None]
#: Model call: float32 ``(N, C, size, size)`` windows -> probabilities ``(N, K, size, size)`` (host or device array).
Infer = Callable[[np.ndarray], Any]


@dataclass(frozen=True)
class Tiling:
    """How windows are cut: the model's input size, the overlap and the blending weights.

    Attributes:
        size: window (model input) size in pixels.
        overlap: fraction of a window shared with its neighbour.
        weights: ``"spline"``, ``"gaussian"`` or ``"tukey"``.
        batch: windows per inference call.
        read_rows: input rows per read chunk (None: the window step).
    """

    size: int
    overlap: float
    weights: str = "spline"
    batch: int = 8
    read_rows: int | None = None

    def layout(self, height: int, width: int) -> WindowLayout:
        """The window layout of a ``height x width`` raster."""
        return WindowLayout(height, width, self.size, self.overlap)

    @property
    def chunk(self) -> int:
        """Input rows per read chunk."""
        return max(1, int(self.read_rows) if self.read_rows else WindowLayout(self.size, self.size, self.size, self.overlap).step)


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

    def cut(self, out: np.ndarray, r0: int, cols: list[int], threads: int) -> None:
        """Windows of rows ``[r0, r0 + h)`` at ``cols`` into ``out`` (N, C, h, w): one C++ call per chunk."""
        for o, data, _, a, b in self._parts(r0, r0 + out.shape[2]):
            cut_windows(data, out, cols, src_row0=a, dst_row0=o, rows=b - a, threads=threads)


class _Reader(threading.Thread):
    """Reads chunks of rows one ahead of the loop; an exception is handed over in the queue."""

    def __init__(self, reader: RowReader, height: int, width: int, channels: int, chunk: int, stats: dict) -> None:
        super().__init__(name="nimbus-read", daemon=True)
        self.reader, self.height, self.width, self.channels, self.chunk = reader, height, width, channels, chunk
        self.stats = stats
        self.chunks: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()

    def run(self) -> None:
        try:
            for r0 in range(0, self.height, self.chunk):
                if self.stop.is_set():
                    return
                r1 = min(self.height, r0 + self.chunk)
                t = time.perf_counter()
                data, valid = self.reader(r0, r1)
                self.stats["read"] += time.perf_counter() - t
                if data.shape != (self.channels, r1 - r0, self.width) or valid.shape != (r1 - r0, self.width):
                    raise ModelError(f"reader returned {data.shape}/{valid.shape} for rows {r0}..{r1}; expected ({self.channels}, {r1 - r0}, {self.width})")
                item = (np.asarray(data, np.float32), np.asarray(valid, bool))
                while not self.stop.is_set():
                    try:
                        self.chunks.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as exc:  # handed to the loop's thread
            self.chunks.put(exc)

    def next(self) -> tuple[np.ndarray, np.ndarray]:
        item = self.chunks.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        while self.is_alive():
            try:
                self.chunks.get(timeout=0.1)
            except queue.Empty:
                pass
        self.join()


class _Writer(threading.Thread):
    """Hands finished rows to the sink in order; the first error stops writing and is re-raised by the loop."""

    def __init__(self, sink: RowSink, stats: dict) -> None:
        super().__init__(name="nimbus-write", daemon=True)
        self.sink, self.stats = sink, stats
        self.results: queue.Queue = queue.Queue(maxsize=2)
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while True:
            item = self.results.get()
            if item is None:
                return
            if self.errors:
                continue
            try:
                t = time.perf_counter()
                self.sink(*item)
                self.stats["write"] += time.perf_counter() - t
            except BaseException as exc:
                self.errors.append(exc)

    def check(self) -> None:
        if self.errors:
            raise self.errors[0]

    def finish(self) -> None:
        self.results.put(None)
        self.join()
        self.check()

    def abort(self) -> None:
        if self.is_alive():
            self.errors.append(RuntimeError("aborted"))
            self.results.put(None)
            self.join()


def stream(
    height: int,
    width: int,
    channels: int,
    reader: RowReader,
    infer: Infer,
    blender: Blender,
    sink: RowSink,
    tiling: Tiling,
    want_probs: bool = False,
    want_entropy: bool = False,
    callback: Callable[[int, int], None] | None = None,
    desc: str = "",
    progress: bool = True,
) -> dict[str, float]:
    """Stream windows over a ``height x width`` raster: read, infer, blend, hand finished rows to ``sink``.

    Args:
        height: raster rows.
        width: raster columns.
        channels: input channels the reader returns.
        reader: returns rows ``[r0, r1)`` as ``(data (C, n, W) float32, valid (n, W) bool)``.
        infer: runs the model on a batch of windows.
        blender: the strip accumulator (opened for ``width`` columns).
        sink: receives finished rows in order, on a background thread.
        tiling: window size, overlap, weights, batch and read chunk.
        want_probs: hand the blended probabilities to the sink too.
        want_entropy: hand the entropy to the sink too.
        callback: called as ``callback(rows_done, height)`` after each window row.
        desc: progress bar label.
        progress: show a progress bar (quiet when output is not a terminal).

    Returns:
        Seconds per stage (``read``, ``infer``, ``blend``, ``write``) and the window counts
        (``windows``, ``windows_skipped``).
    """
    from tqdm.auto import tqdm

    layout = tiling.layout(height, width)
    wh, ww = layout.win_h, layout.win_w
    size = tiling.size
    padded = (wh, ww) != (size, size)
    weights = window_weights((wh, ww), tiling.weights)
    ys = layout.row_starts
    stats = {"read": 0.0, "infer": 0.0, "blend": 0.0, "write": 0.0, "windows": 0, "windows_skipped": 0}
    c = channels
    read = _Reader(reader, height, width, c, tiling.chunk, stats)
    write = _Writer(sink, stats)
    read.start()
    write.start()
    rows = _RowChunks()
    threads = int(getattr(blender, "threads", 0) or 0)  # the host blender's thread cap (0: all cores)
    tile_buf = np.empty((min(tiling.batch, len(layout.col_starts)), c, size, size), np.float32)  # reused batch buffer
    bar = tqdm(total=height, desc=desc or "segment", unit="row", disable=None if progress else True, leave=False)
    try:
        for i, y in enumerate(ys):
            # hold input rows [y, y + wh): drop chunks no window needs any more, take new ones
            rows.drop_before(min(y, blender.start))
            while rows.end < y + wh:
                rows.push(*read.next())
            blender.extend(y + wh)
            strip_valid = rows.valid(y, y + wh)
            wins = [(y, x) for x in layout.col_starts if strip_valid[:, x : x + ww].any()]
            stats["windows_skipped"] += len(layout.col_starts) - len(wins)
            for b in range(0, len(wins), tiling.batch):
                part = wins[b : b + tiling.batch]
                tiles = tile_buf[: len(part)]
                if padded:  # raster smaller than a window: mirror it up to the window size
                    for j, (_, x) in enumerate(part):
                        tile = np.empty((c, wh, ww), np.float32)
                        rows.copy_to(tile, y, x, x + ww)
                        tiles[j] = np.pad(tile, ((0, 0), (0, size - wh), (0, size - ww)), mode="symmetric")
                else:  # every window of the batch cut in one kernel call per input chunk
                    rows.cut(tiles, y, [x for _, x in part], threads)
                t = time.perf_counter()
                probs = infer(tiles)
                stats["infer"] += time.perf_counter() - t
                if padded and not blender.reads_top_left:
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
            write.check()
            write.results.put((r0, classes, probs_out, ent))
            bar.update(end - r0)
            if callback is not None:
                callback(end, height)
        write.finish()
    finally:
        bar.close()
        write.abort()
        read.close()
    return stats
