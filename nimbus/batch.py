"""One product, one failure: run a job over many items so that no item stops the others.

Whatever an item raises (any :class:`Exception`, from Nimbus, GDAL, onnxruntime or numpy), the
batch prints one line naming the item and the root cause, keeps going, and ends with a summary;
:class:`BatchFailedError` then carries the non-zero exit. Ctrl-C stops the whole batch (work
already committed stays). With ``debug`` the full traceback of each failure, down to its root
cause, is printed where it happens.

Example:
    >>> report = run_batch(paths, lambda p: ("done", segment(p)))       # doctest: +SKIP
    >>> report.raise_if_failed()
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from nimbus.errors import NimbusError, explain

__all__ = ["BatchFailedError", "BatchReport", "ItemResult", "collect_records", "run_batch"]

Status = Literal["done", "skipped", "failed"]


class BatchFailedError(NimbusError):
    """Some items of a batch failed (each was reported when it failed); carries the report."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__(report.summary())
        self.report = report


@dataclass
class ItemResult:
    """What became of one item.

    Attributes:
        item: the item (a product path...).
        status: ``"done"``, ``"skipped"`` or ``"failed"``.
        line: the line reported for it (the output written, or the error).
        error: the exception of a failed item.
    """

    item: str
    status: Status
    line: str
    error: BaseException | None = None


@dataclass
class BatchReport:
    """The results of a batch, in order."""

    what: str = "item"
    results: list[ItemResult] = field(default_factory=list)

    @property
    def failed(self) -> list[ItemResult]:
        """The failed items."""
        return [r for r in self.results if r.status == "failed"]

    def lines(self) -> str:
        """The lines of the items that did not fail, one per item."""
        return "\n".join(r.line for r in self.results if r.status != "failed")

    def summary(self) -> str:
        """``"N of M <what>(s) failed: a (cause); b (cause)"`` or ``"M <what>(s): D done, S skipped"``."""
        n = len(self.results)
        done = sum(r.status == "done" for r in self.results)
        skipped = sum(r.status == "skipped" for r in self.results)
        if self.failed:
            items = "; ".join(f"{r.item} ({r.line})" for r in self.failed)
            return f"{len(self.failed)} of {n} {self.what}(s) failed ({done} done, {skipped} skipped): {items}"
        return f"{n} {self.what}(s): {done} done, {skipped} skipped"

    def result(self) -> str:
        """What a batch command returns: the lines of the items done or skipped; when any item
        failed, those lines are printed (standard output) and :class:`BatchFailedError` is raised."""
        if self.failed:
            if self.lines():
                print(self.lines())
            raise BatchFailedError(self)
        return self.lines()

    def raise_if_failed(self) -> None:
        """Raise :class:`BatchFailedError` when any item failed."""
        if self.failed:
            raise BatchFailedError(self)


def run_batch(
    items: Iterable[str],
    work: Callable[[str], tuple[Status, str]],
    what: str = "product",
    debug: bool = False,
    log: IO[str] | None = None,
) -> BatchReport:
    """Run ``work`` on every item; a failing item is reported in one line and the others go on.

    Args:
        items: the items, e.g. product paths.
        work: called as ``work(item)``; returns ``(status, line)`` with status ``"done"`` or
            ``"skipped"``; any :class:`Exception` it raises marks the item as failed.
        what: the word for an item in messages.
        debug: print each failure's full traceback (with its chained root cause).
        log: where progress and failures are printed (default: standard error).

    Returns:
        The :class:`BatchReport` (call :meth:`BatchReport.raise_if_failed` for the exit status).
    """
    out = sys.stderr if log is None else log
    items = list(items)
    report = BatchReport(what)
    for i, item in enumerate(items, 1):
        if len(items) > 1:
            print(f"[{i}/{len(items)}] {item}", file=out, flush=True)
        try:
            status, line = work(item)
        except Exception as exc:  # one item, one failure: whatever it is, the batch goes on
            message = explain(exc)
            if debug:
                traceback.print_exception(exc, file=out)
            print(f"nimbus: error: {item}: {message}", file=out, flush=True)
            report.results.append(ItemResult(item, "failed", message, exc))
            continue
        report.results.append(ItemResult(item, status, line))
    return report


def collect_records(
    records: Iterable[Any],
    total: int,
    what: str = "product",
    debug: bool = False,
    log: IO[str] | None = None,
) -> BatchReport:
    """Report :class:`~nimbus.engine.records.ProductRecord` s as they arrive (one line each, failures
    as ``nimbus: error: ITEM: cause``), the same way :func:`run_batch` reports its items.

    Args:
        records: the records (in any order: a cluster yields them as products complete).
        total: how many are expected (for the ``[i/n]`` counter).
        what: the word for an item in messages.
        debug: print each failure's traceback (carried by the record, also from a Dask worker).
        log: where progress and failures are printed (default: standard error).

    Returns:
        The :class:`BatchReport` of the records, in arrival order.
    """
    out = sys.stderr if log is None else log
    report = BatchReport(what)
    for i, rec in enumerate(records, 1):
        line = rec.outputs.get("line") if rec.status != "failed" and "line" in rec.outputs else rec.line()
        if rec.status == "failed":
            if debug and getattr(rec, "traceback", None):
                print(rec.traceback, file=out, end="", flush=True)
            print(f"nimbus: error: {rec.product}: {line}", file=out, flush=True)
        elif total > 1:
            print(f"[{i}/{total}] {rec.product}: {rec.status}", file=out, flush=True)
        report.results.append(ItemResult(rec.product, rec.status, line))
    return report
