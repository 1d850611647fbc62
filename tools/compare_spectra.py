"""Per-class, per-band histograms of generated (composited) pixels against real pixels.

Usage::

    python tools/compare_spectra.py ARRAYS_DIR [--out spectra.png] [--source composite]

Generated pixels: the folders of ``ARRAYS_DIR`` (``export/make_training_data.py``) whose labels.tif
``label_source`` is ``--source``, by their label and their ``meta.json`` level. Real pixels: the
real scenes of ``nimbus.realscenes`` (held-out 29RKH/19UDP and partial scenes excluded) read at 20 m,
by the ``nimbus.rules`` class. One PNG (rows: class x level, columns: the 12 bands; real in grey,
generated in colour) and a text summary of per-band median differences (generated - real) per
class and level, printed and written next to the PNG (``.txt``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

CLASSES = ("cloud", "ground", "snow", "water")


def _real(n: int, rng: np.random.Generator) -> dict[tuple[int, str], np.ndarray]:
    from nimbus import rules
    from nimbus.composite import BANDS12, fill_missing_bands
    from nimbus.realscenes import list_scenes

    acc: dict[tuple[int, str], list[np.ndarray]] = {}
    for s in list_scenes(include_heldout=False, include_partial=False):
        d, v = s.read(20)
        d, filled = fill_missing_bands(d, s.level)
        c = rules.classify(d, valid=v)
        x = np.stack([d[b] if b not in filled else np.full_like(d[b], np.nan) for b in BANDS12]).reshape(12, -1)  # no proxies
        for k in range(4):
            idx = np.flatnonzero(c.ravel() == k)
            if idx.size:
                cap = 3000 // 8 if s.id.startswith("dea-wright-stack") else 3000  # the 29 frames: about one scene
                idx = rng.choice(idx, min(idx.size, cap), replace=False)
                acc.setdefault((k, s.level), []).append(x[:, idx].T)
    return {key: _sub(np.concatenate(v), n, rng) for key, v in acc.items()}


def _generated(root: Path, source: str, n: int, rng: np.random.Generator) -> dict[tuple[int, str], np.ndarray]:
    import rasterio

    acc: dict[tuple[int, str], list[np.ndarray]] = {}
    for d in sorted(root.iterdir()):
        if not (d / "meta.json").is_file():
            continue
        with rasterio.open(d / "labels.tif") as src:
            if src.tags().get("label_source") != source:
                continue
            lab = src.read(1).ravel()
        meta = json.loads((d / "meta.json").read_text())
        x = np.load(d / "bands.npy").reshape(len(meta["bands"]), -1).astype(np.float32) / 10000.0
        for k in range(4):
            idx = np.flatnonzero(lab == k)
            if idx.size:
                idx = rng.choice(idx, min(idx.size, 1500), replace=False)
                acc.setdefault((k, meta["level"]), []).append(x[:, idx].T)
    return {key: _sub(np.concatenate(v), n, rng) for key, v in acc.items()}


def _sub(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return x[rng.choice(len(x), n, replace=False)] if len(x) > n else x


def compare(arrays: str | Path, out: str | Path = "spectra.png", source: str = "composite", n: int = 20000, seed: int = 0) -> str:
    """Write the PNG and the summary; returns the summary text."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from nimbus.composite import BANDS12

    rng = np.random.default_rng(seed)
    real = _real(n, rng)
    gen = _generated(Path(arrays), source, n, rng)
    rows = [(k, lv) for k in range(4) for lv in ("L1C", "L2A")]
    fig, axes = plt.subplots(len(rows), 12, figsize=(30, 2.2 * len(rows)))
    lines = [f"per-band median, generated - real (reflectance); n = pixels (generated / real); source = {source}"]
    for r, (k, lv) in enumerate(rows):
        g, re_ = gen.get((k, lv)), real.get((k, lv))
        diffs = []
        for j, b in enumerate(BANDS12):
            ax = axes[r, j]
            bins = np.linspace(0, 1.0 if k in (0, 2) else 0.6, 50)
            if re_ is not None and np.isfinite(re_[:, j]).any():
                ax.hist(re_[np.isfinite(re_[:, j]), j], bins, density=True, color="0.5", alpha=0.6, label="real")
            if g is not None:
                ax.hist(g[:, j], bins, density=True, histtype="step", color="C3", lw=1.2, label="generated")
            if g is not None and re_ is not None:
                diffs.append(f"{b} {np.median(g[:, j]) - np.nanmedian(re_[:, j]):+.3f}")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if r == 0:
                ax.set_title(b, fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{CLASSES[k]} {lv}", fontsize=9)
        ng = 0 if g is None else len(g)
        nr = 0 if re_ is None else len(re_)
        lines.append(f"{CLASSES[k]:6s} {lv} (n {ng}/{nr}): " + (", ".join(diffs) if diffs else "no pair"))
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out, dpi=55)
    text = "\n".join(lines)
    Path(out).with_suffix(".txt").write_text(text + "\n")
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("arrays")
    ap.add_argument("--out", default="spectra.png")
    ap.add_argument("--source", default="composite")
    a = ap.parse_args(argv)
    print(compare(a.arrays, a.out, a.source))
    return 0


if __name__ == "__main__":
    sys.exit(main())
