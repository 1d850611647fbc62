"""Patch datasets over the training arrays, in bounded memory however large the arrays are.

Reads the arrays format of :mod:`nimbus.arrays` (DEVELOPERS.md)::

    ARRAYS_DIR/<product_id>/bands.npy   uint16 (13, H, W) harmonised DN, 0 = nodata
    ARRAYS_DIR/<product_id>/aux.npy     float32 (n_aux, H, W)  (optional)
    ARRAYS_DIR/<product_id>/meta.json   product_id, date, bands, aux, resolution, ...
    ARRAYS_DIR/<product_id>/labels.tif  uint8: 0 cloud 1 ground 2 snow 3 water 255 nodata

Each patch is read through a fresh memory map of just the rows it needs, copied, and the map is
dropped, so neither the resident set nor GDAL's block cache grows with the size of the arrays.
A long-lived ``np.load(mmap_mode="r")`` (as :class:`nimbus.arrays.ArrayStack` holds) keeps every
page it ever touched resident: ``benchmarks/bench_train_memory.py`` measured +2 GB of RSS after
160 random 256 px reads that way, against a flat 0.15 GB of file-backed RSS here.

Samplers: ``"random"`` (a fresh random window per index and epoch, products drawn in proportion
to their area, with flips and 90-degree rotations when ``augment``) and ``"grid"`` (windows
covering every product once, the last row/column aligned to the edge; for validation).

Normalisation: ``(x - mean) / std`` per channel, with statistics estimated by
:func:`compute_statistics` from random windows of the training products; pixels without data are
set to 0 (the mean) and labelled 255.

Extension point for hand labels (active learning, ``--al-labels``): ``hand_labels`` maps a
product id to either a uint8 (H, W) array on that product's grid (a memory map is fine) or a list
of pieces ``((row, col, height, width), uint8 (height, width) array)``; 255 means unlabelled.
Where a hand label exists it replaces the automatic label and the pixel's loss weight becomes
``hand_weight``; with ``hand_fraction`` > 0 that share of random patches is drawn so that it
contains a hand-labelled piece. Override :meth:`PatchDataset.apply_hand_labels` to change that
policy.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from nimbus.bands import BANDS
from nimbus.errors import TrainingError

__all__ = [
    "DEFAULT_CHANNELS",
    "HandLabels",
    "IGNORE_INDEX",
    "PatchDataset",
    "ProductArrays",
    "ShardSampler",
    "Statistics",
    "canonical_channel",
    "compute_statistics",
    "grid_windows",
]

#: The default model inputs: the 13 bands in model order, then altitude and tree cover.
DEFAULT_CHANNELS: tuple[str, ...] = (*BANDS, "altitude", "treecover")

#: Label of pixels without a class.
IGNORE_INDEX = 255

Window = tuple[int, int, int, int]  # row, col, height, width

#: Hand labels of one product: a full (H, W) uint8 map, or pieces (window, uint8 (h, w) array).
HandLabels = np.ndarray | Sequence[tuple[Window, np.ndarray]]


@dataclass(frozen=True)
class _NpyHeader:
    path: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int
    fortran: bool


def canonical_channel(name: str) -> str:
    """The canonical name of a channel: ``"b2"`` -> ``"B02"``, ``"DEM"`` -> ``"altitude"``."""
    from nimbus.auxiliary import canonical_layer
    from nimbus.bands import normalise_band
    from nimbus.inputs import is_band

    return normalise_band(name) if is_band(name) else canonical_layer(name)


def _npy_header(path: Path) -> _NpyHeader:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
    return _NpyHeader(str(path), tuple(shape), np.dtype(dtype), offset, bool(fortran))


class ProductArrays:
    """One product folder of the arrays directory, read window by window.

    Args:
        folder: ``ARRAYS_DIR/<product_id>``.

    Raises:
        TrainingError: when bands.npy, meta.json or labels.tif is missing or inconsistent.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "meta.json"
        try:
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise TrainingError(f"{meta_path}: missing or unreadable ({exc}); rebuild with nimbus arrays") from exc
        self.product_id = self.folder.name
        bands_path = self.folder / "bands.npy"
        if not bands_path.is_file():
            raise TrainingError(f"{bands_path}: missing; rebuild with nimbus arrays")
        self._bands = _npy_header(bands_path)
        band_names = [str(b) for b in self.meta.get("bands", BANDS)]
        if len(self._bands.shape) != 3 or self._bands.shape[0] != len(band_names) or self._bands.fortran:
            raise TrainingError(f"{bands_path}: shape {self._bands.shape} does not match meta.json bands {band_names}")
        self.shape: tuple[int, int] = (int(self._bands.shape[1]), int(self._bands.shape[2]))
        self._aux: _NpyHeader | None = None
        aux_names = [str(a) for a in self.meta.get("aux", [])]
        aux_path = self.folder / "aux.npy"
        if aux_names:
            if not aux_path.is_file():
                raise TrainingError(f"{aux_path}: missing but meta.json lists aux layers {aux_names}")
            self._aux = _npy_header(aux_path)
            if self._aux.shape != (len(aux_names), *self.shape) or self._aux.fortran:
                raise TrainingError(f"{aux_path}: shape {self._aux.shape} does not match {len(aux_names)} layers of {self.shape}")
        self.labels_path = self.folder / "labels.tif"
        if not self.labels_path.is_file():
            raise TrainingError(f"{self.labels_path}: missing; make labels with nimbus labels")
        self._source: dict[str, tuple[str, int]] = {canonical_channel(b): ("bands", i) for i, b in enumerate(band_names)}
        self._source.update({canonical_channel(a): ("aux", i) for i, a in enumerate(aux_names)})
        self.band_names = band_names
        self.aux_names = aux_names

    @property
    def channels(self) -> list[str]:
        """Every channel this product can provide (bands, then auxiliary layers)."""
        return self.band_names + self.aux_names

    @property
    def resolution(self) -> float | None:
        """Pixel size in metres from meta.json (None when absent)."""
        r = self.meta.get("resolution")
        return None if r is None else float(r)

    def check_channels(self, channels: Sequence[str]) -> None:
        """Raise :class:`TrainingError` naming this product when a channel is missing."""
        missing = [c for c in channels if canonical_channel(c) not in self._source]
        if missing:
            raise TrainingError(f"{self.folder}: no channel(s) {', '.join(missing)} (has {', '.join(self.channels)}); rebuild arrays with them or pass --channels")

    @staticmethod
    def _read_rows(header: _NpyHeader, index: Sequence[int], window: Window) -> np.ndarray:
        r, c, h, w = window
        _, H, W = header.shape
        item = header.dtype.itemsize
        out = np.empty((len(index), h, w), dtype=header.dtype)
        for k, i in enumerate(index):
            start = header.offset + (i * H * W + r * W) * item
            mm = np.memmap(header.path, dtype=header.dtype, mode="r", offset=start, shape=(h, W))
            out[k] = mm[:, c : c + w]
            del mm
        return out

    def read(self, channels: Sequence[str], window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Channels of a window, as float32, and where every band has data.

        Args:
            channels: channel names (bands and auxiliary layers), in the order wanted.
            window: (row, col, height, width) inside the product.

        Returns:
            ``(data float32 (C, h, w), valid bool (h, w))``; valid is False where any spectral band
            of the product is 0 (nodata) or a requested auxiliary layer is not finite (NaN = nodata
            in aux.npy); such pixels hold 0 in every channel.
        """
        self.check_channels(channels)
        channels = [canonical_channel(c) for c in channels]
        r, c, h, w = window
        if r < 0 or c < 0 or r + h > self.shape[0] or c + w > self.shape[1]:
            raise TrainingError(f"{self.folder}: window {window} outside the arrays' {self.shape}")
        data = np.empty((len(channels), h, w), dtype=np.float32)
        band_idx = [(k, self._source[ch][1]) for k, ch in enumerate(channels) if self._source[ch][0] == "bands"]
        aux_idx = [(k, self._source[ch][1]) for k, ch in enumerate(channels) if self._source[ch][0] == "aux"]
        # Validity looks at all spectral bands, whichever are used, as nimbus.arrays writes them together.
        bands = self._read_rows(self._bands, range(self._bands.shape[0]), window)
        valid = (bands != 0).all(axis=0)
        for k, i in band_idx:
            data[k] = bands[i]
        if aux_idx:
            assert self._aux is not None
            aux = self._read_rows(self._aux, [i for _, i in aux_idx], window)
            valid &= np.isfinite(aux).all(axis=0)
            for j, (k, _) in enumerate(aux_idx):
                data[k] = aux[j]
        data[:, ~valid] = 0.0
        return data, valid

    def read_labels(self, window: Window) -> np.ndarray:
        """The labels (uint8 (h, w), 255 = none) of a window; the file is opened and closed per read."""
        import rasterio
        from rasterio.windows import Window as RWindow

        r, c, h, w = window
        try:
            with rasterio.Env(GDAL_CACHEMAX=64), rasterio.open(self.labels_path) as ds:
                if (ds.height, ds.width) != self.shape:
                    raise TrainingError(f"{self.labels_path}: {ds.height}x{ds.width} labels for {self.shape[0]}x{self.shape[1]} arrays")
                return ds.read(1, window=RWindow(c, r, w, h)).astype(np.uint8, copy=False)
        except TrainingError:
            raise
        except Exception as exc:  # noqa: BLE001 - rasterio/GDAL errors
            raise TrainingError(f"{self.labels_path}: cannot read labels ({exc})") from exc


def grid_windows(shape: tuple[int, int], patch: int, stride: int | None = None) -> list[Window]:
    """Windows of ``patch`` px covering a (H, W) grid; the last row/column is aligned to the edge.

    A side shorter than ``patch`` gets one window of the whole side (the dataset pads it).
    """
    stride = int(stride or patch)
    if stride < 1 or patch < 1:
        raise TrainingError(f"patch and stride must be >= 1, got {patch}, {stride}")

    def starts(n: int) -> list[int]:
        if n <= patch:
            return [0]
        s = list(range(0, n - patch + 1, stride))
        if s[-1] != n - patch:
            s.append(n - patch)
        return s

    H, W = shape
    return [(r, c, min(patch, H), min(patch, W)) for r in starts(H) for c in starts(W)]


@dataclass
class Statistics:
    """Per-channel normalisation and class pixel counts estimated from training products."""

    channels: list[str]
    mean: list[float]
    std: list[float]
    class_counts: list[int]
    pixels: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return {"channels": self.channels, "mean": self.mean, "std": self.std, "class_counts": self.class_counts, "pixels": self.pixels}


def compute_statistics(
    products: Sequence[ProductArrays],
    channels: Sequence[str],
    classes: int = 4,
    windows_per_product: int = 32,
    window: int = 64,
    seed: int = 0,
) -> Statistics:
    """Estimate per-channel mean/std (valid pixels) and class counts from random windows.

    Args:
        products: the training products.
        channels: channel names.
        classes: number of classes to count.
        windows_per_product: random windows read per product.
        window: side of each window in pixels.
        seed: random seed (the same seed gives the same statistics).

    Returns:
        The statistics; a channel with zero spread gets std 1.

    Raises:
        TrainingError: when no sampled pixel is valid.
    """
    rng = np.random.default_rng(seed)
    n = 0
    s1 = np.zeros(len(channels), dtype=np.float64)
    s2 = np.zeros(len(channels), dtype=np.float64)
    counts = np.zeros(classes, dtype=np.int64)
    for p in products:
        H, W = p.shape
        h, w = min(window, H), min(window, W)
        for _ in range(windows_per_product):
            r = int(rng.integers(0, H - h + 1))
            c = int(rng.integers(0, W - w + 1))
            data, valid = p.read(channels, (r, c, h, w))
            labels = p.read_labels((r, c, h, w))
            vals = data[:, valid].astype(np.float64)
            n += vals.shape[1]
            s1 += vals.sum(axis=1)
            s2 += (vals * vals).sum(axis=1)
            lab = labels[valid & (labels < classes)]
            counts += np.bincount(lab, minlength=classes)[:classes]
    if n == 0:
        raise TrainingError(f"no valid pixel in {windows_per_product} random windows of {len(products)} training product(s); check the arrays")
    mean = s1 / n
    std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
    std[std < 1e-6] = 1.0
    return Statistics(list(channels), mean.tolist(), std.tolist(), counts.tolist(), int(n))


class PatchDataset(Dataset):
    """Normalised patches with labels from several products.

    Items are dicts: ``image`` float32 (C, patch, patch), ``target`` int64 (patch, patch) with
    255 where unlabelled or without data, ``weight`` float32 (patch, patch) per-pixel loss weight
    (1, or ``hand_weight`` on hand-labelled pixels), ``product`` index and ``window``.

    Args:
        products: the products (folders or :class:`ProductArrays`).
        channels: input channel names in model order.
        mean: per-channel mean.
        std: per-channel standard deviation.
        patch: patch side in pixels (512 by default); smaller products are padded.
        sampler: "random" or "grid".
        length: number of random patches per epoch (default: enough to cover the area once).
        stride: grid stride (default ``patch``: no overlap).
        augment: random flips and 90-degree rotations (deterministic per index and epoch).
        seed: random seed.
        hand_labels: ``{product_id: HandLabels}``, 255 = unlabelled (see the module doc).
        hand_weight: loss weight of hand-labelled pixels.
        hand_fraction: share of random patches drawn to contain a hand-labelled piece.
        min_labelled: a random patch with fewer labelled pixels than this fraction is redrawn
            (up to 4 times).
    """

    def __init__(
        self,
        products: Sequence[ProductArrays | str | os.PathLike[str]],
        channels: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        patch: int = 512,
        sampler: str = "random",
        length: int | None = None,
        stride: int | None = None,
        augment: bool = False,
        seed: int = 0,
        hand_labels: Mapping[str, HandLabels] | None = None,
        hand_weight: float = 1.0,
        hand_fraction: float = 0.0,
        min_labelled: float = 0.01,
    ) -> None:
        if sampler not in ("random", "grid"):
            raise TrainingError(f"sampler must be 'random' or 'grid', got {sampler!r}")
        if not products:
            raise TrainingError("a patch dataset needs at least one product")
        self.products = [p if isinstance(p, ProductArrays) else ProductArrays(p) for p in products]
        self.channels = list(channels)
        for p in self.products:
            p.check_channels(self.channels)
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if self.mean.shape[0] != len(self.channels) or self.std.shape[0] != len(self.channels):
            raise TrainingError(f"{len(self.channels)} channels but {self.mean.shape[0]} means / {self.std.shape[0]} stds")
        self.patch = int(patch)
        self.sampler = sampler
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self.hand_labels = dict(hand_labels or {})
        self.hand_weight = float(hand_weight)
        self.hand_fraction = float(hand_fraction)
        index = {p.product_id: i for i, p in enumerate(self.products)}
        unknown = sorted(set(self.hand_labels) - set(index))
        if unknown:
            raise TrainingError(f"hand labels for product(s) not in this dataset: {', '.join(unknown[:5])}")
        self._pieces = [
            (index[pid], tuple(int(v) for v in win))
            for pid, hl in self.hand_labels.items()
            if not isinstance(hl, np.ndarray)
            for win, _ in hl
        ]
        self.min_labelled = float(min_labelled)
        areas = np.array([p.shape[0] * p.shape[1] for p in self.products], dtype=np.float64)
        self._p_weights = areas / areas.sum()
        if sampler == "grid":
            self.windows = [(i, w) for i, p in enumerate(self.products) for w in grid_windows(p.shape, self.patch, stride)]
            self.length = len(self.windows)
        else:
            self.windows = []
            self.length = int(length) if length else max(1, math.ceil(areas.sum() / self.patch**2))

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (new random windows and augmentations for each)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _random_window(self, rng: np.random.Generator) -> tuple[int, Window]:
        if self._pieces and rng.random() < self.hand_fraction:
            i, (pr, pc, ph, pw) = self._pieces[int(rng.integers(0, len(self._pieces)))]
            H, W = self.products[i].shape
            h, w = min(self.patch, H), min(self.patch, W)
            # A window that contains the piece's centre, anywhere around it.
            cr, cc = pr + ph // 2, pc + pw // 2
            r = int(rng.integers(max(0, cr - h + 1), min(cr, H - h) + 1))
            c = int(rng.integers(max(0, cc - w + 1), min(cc, W - w) + 1))
            return i, (r, c, h, w)
        i = int(rng.choice(len(self.products), p=self._p_weights))
        H, W = self.products[i].shape
        h, w = min(self.patch, H), min(self.patch, W)
        return i, (int(rng.integers(0, H - h + 1)), int(rng.integers(0, W - w + 1)), h, w)

    def apply_hand_labels(self, product_id: str, window: Window, target: np.ndarray, weight: np.ndarray) -> None:
        """Overlay hand labels on a patch's target and weight, in place (the extension point).

        Args:
            product_id: the product the patch comes from.
            window: (row, col, height, width) of the patch.
            target: uint8 (h, w) automatic labels, modified in place.
            weight: float32 (h, w) pixel weights, modified in place.
        """
        hand = self.hand_labels.get(product_id)
        if hand is None:
            return
        r, c, h, w = window
        if isinstance(hand, np.ndarray):
            pieces: Sequence[tuple[Window, np.ndarray]] = [((r, c, h, w), hand[r : r + h, c : c + w])]
        else:
            pieces = hand
        for (pr, pc, ph, pw), lab in pieces:
            # Intersection of the piece with the window, in window coordinates.
            r0, c0 = max(r, pr), max(c, pc)
            r1, c1 = min(r + h, pr + ph), min(c + w, pc + pw)
            if r1 <= r0 or c1 <= c0:
                continue
            piece = np.asarray(lab)[r0 - pr : r1 - pr, c0 - pc : c1 - pc]
            mask = piece != IGNORE_INDEX
            target[r0 - r : r1 - r, c0 - c : c1 - c][mask] = piece[mask]
            weight[r0 - r : r1 - r, c0 - c : c1 - c][mask] = self.hand_weight

    def read(self, i: int, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised image (C, h, w), target uint8 (h, w) and weight (h, w) of a window (no padding)."""
        p = self.products[i]
        data, valid = p.read(self.channels, window)
        target = p.read_labels(window)
        weight = np.ones(target.shape, dtype=np.float32)
        self.apply_hand_labels(p.product_id, window, target, weight)
        image = (data - self.mean) / self.std
        image[:, ~valid] = 0.0
        target[~valid] = IGNORE_INDEX
        return image, target, weight

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        if self.sampler == "grid":
            i, window = self.windows[index]
            image, target, weight = self.read(i, window)
        else:
            for _ in range(5):
                i, window = self._random_window(rng)
                image, target, weight = self.read(i, window)
                if (target != IGNORE_INDEX).mean() >= self.min_labelled:
                    break
        P = self.patch
        h, w = target.shape
        if (h, w) != (P, P):
            image = np.pad(image, ((0, 0), (0, P - h), (0, P - w)))
            target = np.pad(target, ((0, P - h), (0, P - w)), constant_values=IGNORE_INDEX)
            weight = np.pad(weight, ((0, P - h), (0, P - w)))
        if self.augment:
            k = int(rng.integers(0, 4))
            if k:
                image, target, weight = np.rot90(image, k, (1, 2)), np.rot90(target, k), np.rot90(weight, k)
            if rng.random() < 0.5:
                image, target, weight = image[:, :, ::-1], target[:, ::-1], weight[:, ::-1]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
            "target": torch.from_numpy(np.ascontiguousarray(target).astype(np.int64)),
            "weight": torch.from_numpy(np.ascontiguousarray(weight, dtype=np.float32)),
            "product": i,
            "window": torch.tensor(window),
        }


class ShardSampler(Sampler[int]):
    """Indices of one process's shard (index ``rank``, ``rank + world``, ...), like DistributedSampler.

    Args:
        length: dataset length.
        rank: this process's rank.
        world: number of processes.
        shuffle: permute the indices (seeded by ``seed`` and the epoch) before sharding.
        seed: random seed.
        pad: repeat indices so every shard has the same length (needed for training under DDP,
            where every process must take the same number of steps); False for evaluation, so
            each index is counted exactly once.
    """

    def __init__(self, length: int, rank: int = 0, world: int = 1, shuffle: bool = False, seed: int = 0, pad: bool = True) -> None:
        if not 0 <= rank < world:
            raise TrainingError(f"rank {rank} outside a world of {world}")
        self.length, self.rank, self.world = int(length), int(rank), int(world)
        self.shuffle, self.seed, self.pad = bool(shuffle), int(seed), bool(pad)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch (a new permutation when shuffling)."""
        self.epoch = int(epoch)

    def _indices(self) -> list[int]:
        idx = list(range(self.length))
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            idx = torch.randperm(self.length, generator=g).tolist()
        if self.pad and self.length % self.world:
            extra = self.world - self.length % self.world
            idx += (idx * (extra // max(1, len(idx)) + 1))[:extra]
        return idx[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        if self.pad:
            return math.ceil(self.length / self.world)
        return len(range(self.rank, self.length, self.world))
