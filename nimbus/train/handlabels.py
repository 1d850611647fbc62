"""Hand labels back into training (``nimbus train --al-labels DIR --al-weight W``).

Reads the samples folder(s) written by ``nimbus uncertain`` and edited with ``nimbus label``, and
gives :class:`nimbus.train.dataset.PatchDataset` its ``hand_labels``: per product, a list of pieces
``((row, col, height, width), uint8 label)``. In a piece's window the hand label replaces the
automatic one (255 stays "no data": a pixel the labeller marked no data is not trained on), hand
labelled pixels get loss weight ``W``, and ``--al-fraction`` of the random patches are drawn
around hand-labelled pieces (the dataset's extension point, see its module doc).

Only samples marked done are used (an autosaved, unfinished sample still holds the automatic label
where nobody looked). Overlapping pieces are applied oldest save first, so the latest save wins.
Every piece is checked against the arrays: the product must exist, the window must lie inside it,
and the label's georeferencing must be that window of the product's grid.

:func:`include_in_training` moves products with hand labels into the training split (they come
from the pool outside train and test), so hand labels always stay in training;
:func:`nimbus.train.validation.plan_validation` builds on it to keep a validation set without them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from nimbus.errors import LabelError, TrainingError
from nimbus.samples import SampleSet, validate_label
from nimbus.train.split import SPLITS

__all__ = ["HandPiece", "include_in_training", "load_hand_labels", "samples_dirs"]

Window = tuple[int, int, int, int]  # row, col, height, width
HandPiece = tuple[Window, np.ndarray]


def samples_dirs(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    """One or several samples folders: a path, a comma-separated string, or a list."""
    if isinstance(spec, (str, os.PathLike)):
        parts = [p for p in str(spec).split(",") if p.strip()]
    else:
        parts = [str(p) for p in spec]
    return [Path(p.strip()) for p in parts]


def _product_grid(folder: Path) -> tuple[tuple[int, int], tuple[float, ...] | None]:
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise TrainingError(f"{meta_path}: missing or unreadable ({exc})") from exc
    header = folder / "bands.npy"
    with open(header, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, _ = read(f)
    tr = meta.get("transform")
    return (int(shape[1]), int(shape[2])), (tuple(float(v) for v in tr[:6]) if tr and len(tr) >= 6 else None)


def load_hand_labels(
    samples: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    arrays_dir: str | os.PathLike[str] | None = None,
    include_todo: bool = False,
) -> dict[str, list[HandPiece]]:
    """Hand labels of one or more samples folders, as the dataset's ``hand_labels``.

    Args:
        samples: samples folder(s) (a path, comma-separated paths or a list).
        arrays_dir: the training arrays; when given, each piece is checked against its product
            (exists, window inside, same georeferencing).
        include_todo: also use saved labels of samples not marked done.

    Returns:
        ``{product_id: [((row, col, height, width), uint8 (height, width)), ...]}``, oldest save first.

    Raises:
        TrainingError: a folder is not a samples folder, a label is malformed, or a piece does not
            fit the arrays.
    """
    found: list[tuple[str, str, Window, np.ndarray]] = []
    for d in samples_dirs(samples):
        try:
            ss = SampleSet(d)
            entries = ss.samples()
        except LabelError as exc:
            raise TrainingError(f"--al-labels: {exc}") from exc
        for s in entries:
            if s.status != "done" and not include_todo:
                continue
            try:
                label = ss.hand_label(s.id)
            except LabelError as exc:
                raise TrainingError(f"--al-labels: {exc}") from exc
            if label is None:
                continue
            c, r, w, h = s.window
            window = (r, c, h, w)
            if arrays_dir is not None:
                _check_piece(Path(arrays_dir), ss, s.id, s.product_id, window)
            found.append((s.updated, s.product_id, window, validate_label(label, (h, w), str(ss.layer_path(s.id, "label")))))
    out: dict[str, list[HandPiece]] = {}
    for _, pid, window, label in sorted(found, key=lambda t: t[0]):
        out.setdefault(pid, []).append((window, label))
    return out


def _check_piece(arrays: Path, ss: SampleSet, sid: str, product_id: str, window: Window) -> None:
    folder = arrays / product_id
    if not (folder / "meta.json").is_file():
        raise TrainingError(f"{ss.layer_path(sid, 'label')}: product {product_id} is not in {arrays}; train on the arrays the samples came from")
    (H, W), tr = _product_grid(folder)
    r, c, h, w = window
    if r < 0 or c < 0 or r + h > H or c + w > W:
        raise TrainingError(f"{ss.layer_path(sid, 'label')}: window {window} lies outside product {product_id} ({H}x{W})")
    if tr is not None:
        _, transform = ss.georef(sid)
        expect = (tr[0], tr[1], tr[2] + c * tr[0] + r * tr[1], tr[3], tr[4], tr[5] + c * tr[3] + r * tr[4])
        got = tuple(transform)[:6]
        if not np.allclose(got, expect, rtol=0, atol=1e-6 * max(1.0, abs(tr[0]))):
            raise TrainingError(f"{ss.layer_path(sid, 'label')}: georeferencing {got} is not window {window} of {product_id}'s grid {tr}")


def include_in_training(split: Mapping[str, Sequence[str]], hand_labels: Mapping[str, object] | Iterable[str]) -> dict[str, list[str]]:
    """A copy of ``split`` with every hand-labelled product moved into ``train``.

    Products with hand labels come from the pool (validation products, or products the split does
    not know); once labelled by hand they are training data. A product in ``test`` stays in test
    and is reported, since its hand labels would leak into the evaluation.

    Raises:
        TrainingError: when a hand-labelled product is in the test split.
    """
    labelled = set(hand_labels)
    out = {s: [p for p in split.get(s, []) if s == "test" or p not in labelled] for s in SPLITS}
    leaked = sorted(labelled & set(out["test"]))
    if leaked:
        raise TrainingError(f"hand labels for product(s) in the test split: {', '.join(leaked[:5])}; remove those samples or re-split")
    out["train"] = sorted(set(out["train"]) | labelled)
    return out
