"""Picklable per-item work of the batch commands (``extract``, ``arrays``, ``labels``), for this process or Dask workers.

Each task takes one item and returns ``(status, line)`` like the work of
:func:`nimbus.batch.run_batch`, raising on failure; bind the command's options with
``functools.partial`` so that the task can be shipped to a worker.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["arrays_task", "extract_task", "labels_task"]


def arrays_task(
    product: str,
    out: str,
    res: int = 10,
    aux_dir: str | None = None,
    layers: list[str] | None = None,
    strip_rows: int = 512,
    overwrite: bool = False,
) -> tuple[str, str]:
    """Build the training arrays of one product (:func:`nimbus.arrays.build_arrays`)."""
    from nimbus.arrays import build_arrays

    folder, written = build_arrays(product, out, res=res, aux_dir=aux_dir, layers=layers, strip_rows=strip_rows, overwrite=overwrite)
    return ("done", f"{folder}: written") if written else ("skipped", f"{folder}: skipped (exists)")


def extract_task(archive: str, dst: str, cog: bool = False, limits: Any = None) -> tuple[str, str]:
    """Extract one zipped product into the store (:func:`nimbus.extract.extract_product`)."""
    from nimbus.extract import ExtractLimits, extract_product

    folder, done = extract_product(os.fspath(archive), dst, cog=cog, limits=limits or ExtractLimits())
    return ("done", f"{folder}: extracted") if done else ("skipped", f"{folder}: skipped (exists)")


def labels_task(folder: str, **options: Any) -> tuple[str, str]:
    """Build the labels of one arrays folder or product (:func:`nimbus.labels.build_labels` options);
    the line names the file, the label source, the date, the class counts and the uncovered pixels."""
    from nimbus.labels import build_labels
    from nimbus.legend import DEFAULT_LEGEND

    rep = build_labels(folder, **options)
    names = DEFAULT_LEGEND.name_map()
    counts = ", ".join(f"{names.get(k, k)} {v}" for k, v in sorted(rep.counts.items()))
    return "done", f"{rep.path}: {rep.source}, date {rep.date}; {counts}; uncovered {rep.uncovered_pixels}"
