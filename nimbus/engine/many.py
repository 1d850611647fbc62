"""Many products, one model, one config: :func:`segment_many`, on this process or a Dask cluster.

The CLI's ``nimbus segment`` only builds a :class:`~nimbus.engine.config.SegmentConfig` and calls
:func:`segment_many`; the library does the same. Each product becomes one
:class:`~nimbus.engine.records.ProductRecord`, yielded as soon as it is known (in completion order
on a cluster) and appended to the run report. A failing product is a ``failed`` record, never an
exception that stops the others. Per-process work (the model loaded once, one product) is
:mod:`nimbus.engine.worker`; the cluster side is :mod:`nimbus.engine.distributed`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nimbus.engine.config import SegmentConfig
from nimbus.engine.records import ProductRecord, RunReport
from nimbus.engine.worker import segment_one, segmenter_for

__all__ = ["done_in_report", "segment_many"]


def done_in_report(
    report: str | os.PathLike[str],
    products: Iterable[Any],
    model: str | os.PathLike[str],
    config: SegmentConfig,
    out: str | os.PathLike[str],
) -> dict[str, ProductRecord]:
    """Products an earlier run of the same model into the same folder recorded as done, whose
    outputs (every kind this config wants) still exist and validate: ``{product: skipped record}``.

    Read from the run report before anything is submitted, so that a re-run of 10^5 products
    costs no task for the finished ones. Anything doubtful (another model, another folder, an
    output missing or broken, a record cut short) is left to the normal path.
    """
    from pathlib import Path

    from nimbus.engine.records import read_report
    from nimbus.engine.worker import absolute_ref
    from nimbus.models import resolve_model
    from nimbus.modelspec import ModelSpec
    from nimbus.validate import is_valid

    if config.overwrite or not os.path.isfile(report):
        return {}
    tag = ModelSpec.from_onnx(resolve_model(os.fspath(model))).file_tag
    folder = Path(absolute_ref(out))
    wanted = {absolute_ref(p): str(p) for p in products if not hasattr(p, "read")}
    found: dict[str, ProductRecord] = {}
    for r in read_report(report):
        ref = absolute_ref(str(r.get("product", "")))
        outputs = r.get("outputs") or {}
        if ref not in wanted or r.get("status") not in ("done", "skipped") or r.get("model") != tag:
            continue
        if not all(k in outputs and Path(outputs[k]).parent == folder for k in config.outputs):
            continue
        found[ref] = ProductRecord(wanted[ref], "skipped", outputs={k: outputs[k] for k in config.outputs},
                                   product_id=r.get("product_id"), model=tag, worker="report")  # fmt: skip
    return {wanted[ref]: rec for ref, rec in found.items() if all(is_valid(p) for p in rec.outputs.values())}


def segment_many(
    products: Iterable[Any],
    model: str | os.PathLike[str],
    config: SegmentConfig | None = None,
    out: str | os.PathLike[str] = ".",
    client: Any = None,
    retries: int = 2,
    report: str | os.PathLike[str] | RunReport | None = None,
    progress: bool = True,
    on_wait: Callable[[str, dict], None] | None = None,
) -> Iterator[ProductRecord]:
    """Segment many products with one model and config; yield one record per product as it is known.

    Args:
        products: product references (paths, URLs, STAC items).
        model: the model file or a shipped model name (``rules``, ``default``).
        config: the run's options (default :class:`~nimbus.engine.config.SegmentConfig`).
        out: the output folder (on a cluster: a folder every worker can write).
        client: a ``distributed.Client``: one task per product on its cluster; None: this process.
        retries: on a cluster, how often a product whose failure looks transient (network, I/O)
            is tried again; deterministic failures are never retried.
        report: a JSON Lines file (or an open :class:`~nimbus.engine.records.RunReport`) receiving
            every record as it arrives. Products it records as done by the same model into the
            same folder, whose outputs still validate, are skipped before any task is made
            (:func:`done_in_report`).
        progress: show a progress bar over products (quiet when output is not a terminal).
        on_wait: local runs: called as ``on_wait(product, owner)`` when another process is writing
            the same outputs.

    Yields:
        :class:`~nimbus.engine.records.ProductRecord` per product: those the report shows done
        first, then the others in input order on this process, completion order on a cluster.

    Raises:
        ModelError: when the model cannot be loaded (before any product is started).
    """
    config = config or SegmentConfig()
    products = list(products)
    path = report.path if isinstance(report, RunReport) else report
    done = done_in_report(path, products, model, config, out) if path is not None else {}
    rep = report if isinstance(report, RunReport) else RunReport(report)
    try:
        for p in products:  # finished in an earlier run: no task, no model load
            if str(p) in done and not hasattr(p, "read"):
                rep.add(done[str(p)])
                yield done[str(p)]
        products = [p for p in products if hasattr(p, "read") or str(p) not in done]
        if not products:
            return
        if client is None:
            segmenter_for(model, config)  # a model that cannot load stops the run before any product
            records: Iterator[ProductRecord] = (
                segment_one(p, model, config, out, on_wait=(lambda owner, p=p: on_wait(str(p), owner)) if on_wait else None)
                for p in products
            )
        else:
            from nimbus.engine.distributed import map_products

            records = map_products(products, model, config, out, client, retries=retries, progress=progress)
        for rec in records:
            rep.add(rec)
            yield rec
    finally:
        if not isinstance(report, RunReport):
            rep.close()
