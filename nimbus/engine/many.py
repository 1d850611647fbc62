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

__all__ = ["segment_many"]


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
            every record as it arrives.
        progress: show a progress bar over products (quiet when output is not a terminal).
        on_wait: local runs: called as ``on_wait(product, owner)`` when another process is writing
            the same outputs.

    Yields:
        :class:`~nimbus.engine.records.ProductRecord` per product (input order on this process,
        completion order on a cluster).

    Raises:
        ModelError: when the model cannot be loaded (before any product is started).
    """
    config = config or SegmentConfig()
    products = list(products)
    rep = report if isinstance(report, RunReport) else RunReport(report)
    try:
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
