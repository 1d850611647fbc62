"""MC-dropout uncertainty and the selection of patches for hand labelling (``nimbus uncertain``).

For every patch of the pool (products in neither the training nor the test split, minus patches
that already are samples), the model runs ``passes`` times with only its dropout layers active
(batch norm frozen). Per pixel, from the softmax probabilities ``p[t, c]`` of the passes:

* ``std`` (the original's measure): the standard deviation over passes, averaged over classes;
* ``entropy``: the predictive entropy ``H(mean_t p)`` (nats);
* ``mutual_information``: ``H(mean_t p) - mean_t H(p_t)`` (the part due to the model's doubt).

A patch's score is the mean over its valid pixels. The top ``k`` patches are chosen greedily with
a spacing rule (two selected patches of one product are at least ``spacing`` windows apart, so the
``k`` are not all neighbours of one cloud) and written as samples (:mod:`nimbus.samples`), with
``scores.csv`` (every patch scored), the colour composites of the area around each sample (3x its
side by default, for the labelling tool's dimmed context) and two plots: mean uncertainty by
month x day and a map of mean uncertainty over each tile. Patches are read one at a time: no tile is ever held in memory.

Each patch's passes are seeded from the patch (product id and window) and ``seed``, so the maps
written for the selected patches are exactly those that were scored.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from nimbus.atomic import atomic_path
from nimbus.errors import TrainingError
from nimbus.samples import CONTEXT_FACTOR, NODATA, Sample, SampleSet, context_window, sample_id
from nimbus.train.dataset import ProductArrays, grid_windows
from nimbus.train.models import set_mc_dropout
from nimbus.train.split import SPLITS, list_products, load_split

__all__ = [
    "METHODS",
    "PatchScore",
    "labelled_windows",
    "mc_dropout",
    "pixel_uncertainty",
    "plot_by_date",
    "plot_map",
    "pool_products",
    "score_patches",
    "select_samples",
    "select_top",
    "write_sample",
]

#: Per-pixel uncertainty measures.
METHODS: tuple[str, ...] = ("std", "entropy", "mutual_information")

Window = tuple[int, int, int, int]  # row, col, height, width (as nimbus.train.dataset)
_EPS = 1e-12


@dataclass
class PatchScore:
    """The score of one patch of one product."""

    product_id: str
    window: Window
    score: float
    valid_fraction: float
    date: str = ""
    tile: str = ""


def pixel_uncertainty(probs: torch.Tensor, method: str = "std") -> torch.Tensor:
    """Per-pixel uncertainty from MC-dropout probabilities.

    Args:
        probs: (passes, classes, H, W) softmax probabilities.
        method: one of :data:`METHODS`.

    Returns:
        (H, W) float32 uncertainty.
    """
    if method not in METHODS:
        raise TrainingError(f"unknown uncertainty method {method!r}; choose one of {', '.join(METHODS)}")
    probs = probs.float()
    if method == "std":
        return probs.std(dim=0, correction=0).mean(dim=0)
    mean = probs.mean(dim=0)
    entropy = -(mean * torch.log(mean.clamp_min(_EPS))).sum(dim=0)
    if method == "entropy":
        return entropy
    expected = -(probs * torch.log(probs.clamp_min(_EPS))).sum(dim=1).mean(dim=0)
    return (entropy - expected).clamp_min(0.0)


def _patch_seed(seed: int, product_id: str, window: Sequence[int]) -> int:
    return (zlib.crc32(f"{product_id}:{tuple(int(v) for v in window)}".encode()) ^ (int(seed) * 0x9E3779B1)) & 0x7FFFFFFF


@torch.no_grad()
def mc_dropout(
    model: nn.Module,
    image: np.ndarray,
    passes: int = 16,
    method: str = "std",
    batch: int = 8,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    multiple: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``passes`` stochastic forward passes of one normalised patch.

    Args:
        model: a segmentation model with dropout layers (logits (N, classes, H, W)).
        image: (C, h, w) normalised float32 inputs.
        passes: number of MC-dropout passes.
        method: one of :data:`METHODS`.
        batch: passes per forward call (the patch is repeated along the batch axis).
        device: torch device.
        seed: seeds the dropout masks (same seed, same result).
        multiple: the patch is zero-padded (the normalised mean) to a multiple of this, and cropped back.

    Returns:
        ``(uncertainty (h, w) float32, mean probabilities (classes, h, w) float32)``.

    Raises:
        TrainingError: when the model has no dropout layer (MC dropout would give zero everywhere).
    """
    if set_mc_dropout(model, True) == 0:
        raise TrainingError("the model has no dropout layers; MC dropout needs a model trained with --dropout > 0")
    if passes < 2:
        raise TrainingError(f"MC dropout needs at least 2 passes, got {passes}")
    try:
        c, h, w = image.shape
        ph, pw = (-h) % multiple, (-w) % multiple
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph))
        x = x.unsqueeze(0)
        if seed is not None:
            torch.manual_seed(seed)
        out = []
        done = 0
        while done < passes:
            n = min(batch, passes - done)
            logits = model(x.expand(n, -1, -1, -1))
            out.append(torch.softmax(logits.float(), dim=1)[:, :, :h, :w])
            done += n
        probs = torch.cat(out, dim=0)
        unc = pixel_uncertainty(probs, method)
        return unc.cpu().numpy().astype(np.float32), probs.mean(dim=0).cpu().numpy().astype(np.float32)
    finally:
        set_mc_dropout(model, False)


def pool_products(arrays_dir: str | os.PathLike[str], split: Mapping[str, Sequence[str]] | None) -> list[str]:
    """Products of ``arrays_dir`` in neither the training nor the test split.

    Args:
        arrays_dir: the arrays folder.
        split: ``{"train": [...], "val": [...], "test": [...]}`` or None (then every product).

    Returns:
        Sorted product ids (validation products and products the split does not know).
    """
    products = list_products(arrays_dir)
    used = set(split.get("train", [])) | set(split.get("test", [])) if split else set()
    return sorted(p for p in products if p not in used)


def labelled_windows(samples_dirs: Iterable[str | os.PathLike[str]]) -> dict[str, list[Window]]:
    """Windows that already are samples (to do or done) in the given samples folders.

    Returns:
        ``{product_id: [(row, col, height, width), ...]}``; folders without a manifest are skipped.
    """
    out: dict[str, list[Window]] = {}
    for d in samples_dirs:
        if not (Path(d) / "manifest.json").is_file():
            continue
        for s in SampleSet(d).samples():
            c, r, w, h = s.window
            out.setdefault(s.product_id, []).append((r, c, h, w))
    return out


def _overlaps(a: Window, b: Window) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _normalise(data: np.ndarray, valid: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    image = (data - mean.reshape(-1, 1, 1)) / std.reshape(-1, 1, 1)
    image[:, ~valid] = 0.0
    return image.astype(np.float32, copy=False)


def _progress(iterable: Any, total: int, desc: str) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, total=total, desc=desc, disable=not sys.stderr.isatty(), leave=False)


def score_patches(
    model: nn.Module,
    meta: Mapping[str, Any],
    products: Sequence[ProductArrays],
    window: int,
    passes: int = 16,
    method: str = "std",
    exclude: Mapping[str, Sequence[Window]] | None = None,
    min_valid: float = 0.2,
    batch: int = 8,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> list[PatchScore]:
    """Score every grid patch of ``products`` (one patch in memory at a time).

    Args:
        model: the model (moved to ``device`` by the caller).
        meta: checkpoint meta: ``channels``, ``mean``, ``std``.
        products: the pool.
        window: patch side in pixels (grid without overlap; the last row/column aligned to the edge).
        passes: MC-dropout passes.
        method: one of :data:`METHODS`.
        exclude: windows per product that must not be scored (overlapping ones are skipped).
        min_valid: patches with a smaller fraction of valid pixels are skipped.
        batch: passes per forward call.
        device: torch device.
        seed: base seed of the dropout masks.

    Returns:
        One :class:`PatchScore` per scored patch.
    """
    channels = list(meta["channels"])
    mean, std = np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)
    exclude = exclude or {}
    jobs = [(p, w) for p in products for w in grid_windows(p.shape, window)]
    scores: list[PatchScore] = []
    for p, win in _progress(jobs, len(jobs), "uncertainty"):
        if any(_overlaps(win, e) for e in exclude.get(p.product_id, ())):
            continue
        data, valid = p.read(channels, win)
        frac = float(valid.mean())
        if frac < min_valid or not valid.any():
            continue
        unc, _ = mc_dropout(model, _normalise(data, valid, mean, std), passes, method, batch, device, _patch_seed(seed, p.product_id, win))
        scores.append(
            PatchScore(p.product_id, tuple(int(v) for v in win), float(unc[valid].mean()), frac,  # type: ignore[arg-type]
                       str(p.meta.get("date", ""))[:10], str(p.meta.get("tile", "")))
        )
    return scores


def select_top(scores: Sequence[PatchScore], k: int, spacing: float = 2.0) -> list[PatchScore]:
    """The ``k`` highest scores, greedily, keeping selected patches of one product apart.

    Args:
        scores: scored patches.
        k: how many to select.
        spacing: minimum distance between the origins of two selected patches of the same product,
            in patch sizes (Chebyshev distance); 2 means no two are neighbours, 0 disables the rule.

    Returns:
        The selection, highest score first.
    """
    chosen: list[PatchScore] = []
    for s in sorted(scores, key=lambda s: (-s.score, s.product_id, s.window)):
        if len(chosen) >= k:
            break
        r, c, h, w = s.window
        size = max(h, w)
        if any(
            o.product_id == s.product_id and max(abs(o.window[0] - r), abs(o.window[1] - c)) < spacing * size - 1e-9
            for o in chosen
        ):
            continue
        chosen.append(s)
    return chosen


def _georef(p: ProductArrays) -> tuple[Any, Any]:
    from affine import Affine

    crs, tr = p.meta.get("crs"), p.meta.get("transform")
    if crs and tr and len(tr) >= 6:
        return crs, Affine(*[float(v) for v in tr[:6]])
    import rasterio

    with rasterio.open(p.labels_path) as src:
        return src.crs, src.transform


def _composite(p: ProductArrays, bands: Sequence[str], window: Window) -> np.ndarray:
    """uint16 (3, h, w) harmonised DN of three bands in a (row, col, height, width) window, 0 = nodata."""
    rgb, ok = p.read(list(bands), window)
    rgb = np.clip(np.rint(rgb), 0, 65535).astype(np.uint16)
    rgb[:, ~ok] = 0
    return rgb


def write_sample(
    samples: SampleSet,
    p: ProductArrays,
    s: PatchScore,
    model: nn.Module,
    meta: Mapping[str, Any],
    passes: int,
    method: str,
    batch: int,
    device: str | torch.device,
    seed: int,
    context: float = CONTEXT_FACTOR,
) -> Sample:
    """Write one selected patch as a sample: colour composites, automatic label, prediction, uncertainty.

    With ``context`` > 1 the colour composites of the area around the patch (``context`` times its
    side, clipped to the product: :func:`nimbus.samples.context_window`) are written too, for the
    labelling tool to show dimmed around the part to label.
    """
    from rasterio.windows import Window as RWindow
    from rasterio.windows import transform as window_transform

    r, c, h, w = s.window
    channels = list(meta["channels"])
    data, valid = p.read(channels, s.window)
    unc, probs = mc_dropout(
        model, _normalise(data, valid, np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32)),
        passes, method, batch, device, _patch_seed(seed, p.product_id, s.window),
    )
    prediction = probs.argmax(axis=0).astype(np.uint8)
    prediction[~valid] = NODATA
    unc = unc.copy()
    unc[~valid] = np.nan
    layers: dict[str, np.ndarray] = {"prediction": prediction, "uncertainty": unc}
    ctx = context_window((c, r, w, h), p.shape, context)
    cc, cr, cw, ch = ctx
    for name, bands in (("truecolor", ("B04", "B03", "B02")), ("falsecolor", ("B12", "B08", "B04"))):
        if all(b in p.channels for b in bands):
            layers[name] = _composite(p, bands, s.window)
            if context > 1:
                layers[f"context_{name}"] = _composite(p, bands, (cr, cc, ch, cw))
    auto = p.read_labels(s.window).copy()
    auto[~valid] = NODATA
    auto[~np.isin(auto, (0, 1, 2, 3))] = NODATA
    layers["auto_label"] = auto
    crs, transform = _georef(p)
    rwin = (c, r, w, h)
    sample = Sample(
        id=sample_id(p.product_id, rwin),
        product_id=p.product_id,
        window=rwin,
        date=s.date,
        tile=s.tile,
        score=s.score,
        extra={"valid_fraction": round(s.valid_fraction, 4), "method": method},
        context=ctx if context > 1 else None,
    )
    return samples.add(sample, layers, crs, window_transform(RWindow(c, r, w, h), transform))


def _write_scores(path: Path, scores: Sequence[PatchScore]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["product_id", "date", "tile", "row", "col", "height", "width", "score", "valid_fraction"])
        for s in scores:
            wr.writerow([s.product_id, s.date, s.tile, *s.window, f"{s.score:.6g}", f"{s.valid_fraction:.4f}"])


def plot_by_date(scores: Sequence[PatchScore], path: str | os.PathLike[str], title: str = "") -> Path:
    """PNG: mean patch uncertainty by month (rows) x day of month (columns); blank where no data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.full((12, 31), np.nan)
    acc: dict[tuple[int, int], list[float]] = {}
    for s in scores:
        try:
            d = datetime.fromisoformat(s.date[:10])
        except ValueError:
            continue
        acc.setdefault((d.month, d.day), []).append(s.score)
    for (m, day), v in acc.items():
        grid[m - 1, day - 1] = float(np.mean(v))
    fig, ax = plt.subplots(figsize=(10, 4.2))
    im = ax.imshow(grid, cmap="magma", aspect="auto", interpolation="nearest")
    ax.set_yticks(range(12), ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"])
    ax.set_xticks(range(0, 31, 2), [str(d) for d in range(1, 32, 2)])
    ax.set_xlabel("day of month")
    ax.set_title(title or "mean MC-dropout uncertainty by date")
    fig.colorbar(im, ax=ax, label="mean patch uncertainty")
    return _save_png(fig, path)


def _save_png(fig: Any, path: str | os.PathLike[str]) -> Path:
    """Write a matplotlib figure as a PNG, atomically, and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path


def plot_map(scores: Sequence[PatchScore], path: str | os.PathLike[str], title: str = "") -> Path:
    """PNG: mean uncertainty of each patch position over a tile (averaged over products/dates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted({s.window[0] for s in scores})
    cols = sorted({s.window[1] for s in scores})
    ri, ci = {r: i for i, r in enumerate(rows)}, {c: i for i, c in enumerate(cols)}
    total = np.zeros((max(1, len(rows)), max(1, len(cols))))
    count = np.zeros_like(total)
    for s in scores:
        total[ri[s.window[0]], ci[s.window[1]]] += s.score
        count[ri[s.window[0]], ci[s.window[1]]] += 1
    grid = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    fig, ax = plt.subplots(figsize=(6.5, 6))
    im = ax.imshow(grid, cmap="magma", interpolation="nearest")
    xs = range(0, len(cols), max(1, math.ceil(len(cols) / 12)))
    ys = range(0, len(rows), max(1, math.ceil(len(rows) / 12)))
    ax.set_xticks(list(xs), [str(cols[i]) for i in xs], rotation=90, fontsize=7)
    ax.set_yticks(list(ys), [str(rows[i]) for i in ys], fontsize=7)
    ax.set_xlabel("patch column offset (px)")
    ax.set_ylabel("patch row offset (px)")
    ax.set_title(title or "mean MC-dropout uncertainty over the tile")
    fig.colorbar(im, ax=ax, label="mean patch uncertainty")
    return _save_png(fig, path)


def _resolve_split(split: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None, meta: Mapping[str, Any],
                   checkpoint: str | None) -> dict[str, list[str]] | None:
    if isinstance(split, Mapping):
        return {s: list(split.get(s, [])) for s in SPLITS}
    if split:
        return load_split(split)
    if isinstance(meta.get("split"), Mapping):
        return {s: list(meta["split"].get(s, [])) for s in SPLITS}
    if checkpoint and (Path(checkpoint).parent / "split.json").is_file():
        return load_split(Path(checkpoint).parent / "split.json")
    return None


def select_samples(
    arrays: str | os.PathLike[str],
    out: str | os.PathLike[str],
    checkpoint: str | os.PathLike[str] | None = None,
    model: nn.Module | None = None,
    meta: Mapping[str, Any] | None = None,
    split: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None = None,
    k: int = 50,
    passes: int = 16,
    method: str = "std",
    window: int | None = None,
    spacing: float = 2.0,
    labelled: Sequence[str | os.PathLike[str]] = (),
    products: Sequence[str] | None = None,
    min_valid: float = 0.2,
    batch: int = 8,
    device: str | None = None,
    seed: int = 0,
    context: float = CONTEXT_FACTOR,
) -> dict[str, Any]:
    """The whole selection: score the pool, choose the top ``k``, write samples, scores and plots.

    Args:
        arrays: the arrays folder (nimbus arrays format).
        out: the samples folder; an existing one is extended (its samples are not selected again).
        checkpoint: a checkpoint from ``nimbus train`` (or pass ``model`` and ``meta``).
        model: an already loaded model (used instead of ``checkpoint``).
        meta: its checkpoint meta (``channels``, ``mean``, ``std``, ``window``).
        split: split JSON or dict; default: the checkpoint's ``split`` or ``split.json`` beside it.
            Products in its train or test list are not in the pool.
        k: number of samples to select.
        passes: MC-dropout passes.
        method: ``std``, ``entropy`` or ``mutual_information``.
        window: sample size in pixels (default: the checkpoint's window).
        spacing: minimum distance, in windows, between two selected patches of one product.
        labelled: further samples folders whose samples (hand-labelled or queued) are not selected again.
        products: restrict the pool to these product ids.
        min_valid: minimum fraction of valid pixels of a patch.
        batch: passes per forward call.
        device: torch device (default: CUDA when available).
        seed: base seed of the dropout masks.
        context: side of the context area written around each sample, in sample sides (<= 1: none).

    Returns:
        A summary: ``out``, ``pool`` (product ids), ``scored`` (patches), ``selected`` (sample ids),
        ``scores`` (csv path), ``plots``.
    """
    if method not in METHODS:
        raise TrainingError(f"unknown uncertainty method {method!r}; choose one of {', '.join(METHODS)}")
    if k < 1:
        raise TrainingError(f"k must be >= 1, got {k}")
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if model is None:
        if checkpoint is None:
            raise TrainingError("uncertain needs a checkpoint (or a model and its meta)")
        from nimbus.train.checkpoint import load_checkpoint

        model, meta = load_checkpoint(checkpoint, map_location=dev)
    if meta is None:
        raise TrainingError("a model passed directly needs its checkpoint meta (channels, mean, std)")
    model = model.to(dev)
    win = int(window or meta.get("window") or 512)
    the_split = _resolve_split(split, meta, str(checkpoint) if checkpoint else None)
    pool = pool_products(arrays, the_split)
    if products is not None:
        pool = [p for p in pool if p in set(products)]
    if not pool:
        raise TrainingError(f"{arrays}: no product outside the training and test splits to select samples from")
    samples = SampleSet(out, create=True)
    exclude = labelled_windows([out, *labelled])
    arrs = {pid: ProductArrays(Path(arrays) / pid) for pid in pool}
    scores = score_patches(model, meta, list(arrs.values()), win, passes, method, exclude, min_valid, batch, dev, seed)
    chosen = select_top(scores, k, spacing)
    if len(chosen) < k:
        print(f"nimbus uncertain: {len(chosen)} of {k} samples selectable ({len(scores)} patches scored, "
              f"spacing {spacing:g} windows); lower --spacing or --window for more", file=sys.stderr)
    written = [write_sample(samples, arrs[s.product_id], s, model, meta, passes, method, batch, dev, seed, context).id
               for s in chosen]
    samples.update_selection({
        "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
        "arrays": str(Path(arrays).resolve()),
        "method": method,
        "passes": int(passes),
        "window": win,
        "spacing": float(spacing),
        "k": int(k),
        "seed": int(seed),
        "context": float(context),
        "pool": pool,
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })
    root = Path(out)
    _write_scores(root / "scores.csv", scores)
    plots = [str(plot_by_date(scores, root / "uncertainty_by_date.png", f"mean {method} uncertainty by date"))]
    for tile in sorted({s.tile for s in scores}) or [""]:
        name = f"uncertainty_map_{tile}.png" if tile else "uncertainty_map.png"
        plots.append(str(plot_map([s for s in scores if s.tile == tile], root / name, f"mean {method} uncertainty, tile {tile or '?'}")))
    return {
        "out": str(root),
        "pool": pool,
        "scored": len(scores),
        "selected": written,
        "scores": str(root / "scores.csv"),
        "plots": plots,
    }

