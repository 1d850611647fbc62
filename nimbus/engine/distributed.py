"""Batches on Dask distributed: one task per product, on a cluster the user already runs.

:func:`connect` gives a ``distributed.Client``: to an existing scheduler (an address, a scheduler
file, or ``DASK_SCHEDULER_ADDRESS``) or to a :class:`distributed.LocalCluster` of N worker
processes bound to 127.0.0.1. :func:`map_products` runs :func:`nimbus.engine.worker.segment_one` once
per product and :func:`map_items` does the same for any batch command (``extract``, ``arrays``,
``labels``):

* each worker process loads the model once (:func:`nimbus.engine.worker.segmenter_for` caches it per
  process), with onnxruntime's threads capped so that workers x threads never exceed the host's
  cores (onnxruntime ignores ``OMP_NUM_THREADS`` and would start one thread per core in every
  worker);
* a deterministic failure (a bad product, a model mismatch) comes back as a ``failed`` record and
  is not retried; a transient one (network, I/O) is raised inside the task so that Dask retries it
  (``retries``); a worker that dies mid-product leaves no partial output (outputs are committed
  atomically) and the scheduler runs the product again on another worker, which takes over the
  dead process's output lock;
* at most a few tasks per worker thread are in flight, and each future is released as soon as its
  record is handed on, so a later worker death never recomputes finished work and the scheduler
  never holds 10^5 tasks at once;
* where workers advertise a ``GPU`` resource and the run may use CUDA, ``resources={"GPU": 1}``
  keeps one product per GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from nimbus.engine.config import SegmentConfig
from nimbus.engine.records import ProductRecord, is_transient
from nimbus.errors import NimbusError, UsageError

__all__ = ["SCHEDULER_ENV", "capped_threads", "connect", "map_items", "map_products", "scheduler_address"]

#: The environment variable Dask itself reads for the scheduler address.
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

#: Tasks kept in flight per worker thread (more would only load the scheduler).
_IN_FLIGHT_PER_THREAD = 2


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:  # pragma: no cover - the [dask] extra is missing
        raise UsageError('--scheduler/--workers need Dask distributed: pip install "nimbus-s2[dask]"') from exc
    return distributed


def scheduler_address(scheduler: str | None = None) -> str | None:
    """The scheduler to use: ``scheduler`` (an address or a scheduler file), else ``$DASK_SCHEDULER_ADDRESS``, else None."""
    if scheduler:
        return str(scheduler)
    return os.environ.get(SCHEDULER_ENV) or None


@contextmanager
def connect(scheduler: str | None = None, workers: int | None = None, threads_per_worker: int = 1) -> Iterator[Any]:
    """A Dask client for a batch, or None for today's single-process path.

    Args:
        scheduler: ``tcp://host:port`` of a running scheduler, or the path of its scheduler file
            (``dask scheduler --scheduler-file``); default ``$DASK_SCHEDULER_ADDRESS``.
        workers: start a LocalCluster of this many worker processes on 127.0.0.1 instead.
        threads_per_worker: products run at once in each LocalCluster worker.

    Yields:
        A ``distributed.Client``, or None when neither a scheduler nor workers were asked for.

    Raises:
        UsageError: both given, a bad worker count, or no scheduler answering at the address.
    """
    address = scheduler_address(scheduler)
    if scheduler and workers:
        raise UsageError("give --scheduler or --workers, not both")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise UsageError(f"--workers {workers}: must be at least 1")
    if not workers and not address:
        yield None
        return
    distributed = _require_distributed()
    if workers:
        cluster = distributed.LocalCluster(
            n_workers=int(workers), threads_per_worker=int(threads_per_worker), processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
        )  # fmt: skip
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        if os.path.isfile(address):
            client = distributed.Client(scheduler_file=address, timeout="20s")
        else:
            client = distributed.Client(address, timeout="20s")
    except OSError as exc:
        raise UsageError(f"--scheduler {address}: no Dask scheduler answers there ({exc})") from exc
    with client:
        yield client


def capped_threads(requested: int, workers_on_host: int, tasks_per_worker: int, cores: int | None = None) -> int:
    """onnxruntime threads for one task: ``requested``, or with 0 the host's cores shared by every
    task that may run on it at once (never less than 1)."""
    if requested:
        return int(requested)
    if not cores:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, int(cores) // max(1, workers_on_host * tasks_per_worker))


def _host_layout(client: Any) -> tuple[dict[str, int], bool]:
    """Workers per host, and whether any worker advertises a GPU resource."""
    info = client.scheduler_info()["workers"]
    per_host: dict[str, int] = {}
    gpu = False
    for w in info.values():
        host = w.get("host", "")
        per_host[host] = per_host.get(host, 0) + 1
        gpu = gpu or float((w.get("resources") or {}).get("GPU", 0)) > 0
    return per_host, gpu


def _segment_task(product: str, model: str, config: SegmentConfig, out: str, per_host: dict[str, int]) -> ProductRecord:
    """Runs on a worker: one product, threads capped for this host (transient failures raise: Dask retries)."""
    from distributed import get_worker

    from nimbus.engine.worker import segment_one

    worker = get_worker()
    host = worker.address.split("://")[-1].rsplit(":", 1)[0]
    threads = capped_threads(config.threads, per_host.get(host, 1), worker.state.nthreads)
    config = config.replace(threads=threads, progress=False)
    rec = segment_one(product, model, config, out, raise_transient=True)
    rec.worker = worker.address
    return rec


def _item_task(item: str, work: Callable[[str], tuple[str, str]]) -> ProductRecord:
    """Runs on a worker: one item of a batch command."""
    import time

    from distributed import get_worker

    t0 = time.perf_counter()
    try:
        status, line = work(item)
    except Exception as exc:
        if is_transient(exc):
            raise
        return ProductRecord.failure(item, exc, time.perf_counter() - t0, get_worker().address)
    return ProductRecord(item, status, time.perf_counter() - t0, outputs={"line": line}, worker=get_worker().address)  # type: ignore[arg-type]


def _run(
    items: list[str],
    submit: Callable[[str], Any],
    client: Any,
    progress: bool,
    desc: str,
) -> Iterator[ProductRecord]:
    """Keep a bounded number of tasks in flight; yield records as they complete, releasing each future."""
    from distributed import as_completed
    from tqdm.auto import tqdm

    threads = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values()) or 1
    limit = max(2, _IN_FLIGHT_PER_THREAD * threads)
    todo = iter(items)
    owner: dict[str, tuple[str, Any]] = {}
    pending = as_completed()
    for item in todo:
        fut = submit(item)
        owner[fut.key] = (item, fut)
        pending.add(fut)
        if len(owner) >= limit:
            break
    bar = tqdm(total=len(items), desc=desc, unit="product", disable=None if progress else True)
    try:
        for fut in pending:
            item, _ = owner.pop(fut.key)
            exc = fut.exception()
            if exc is not None:  # transient failures that outlived the retries, or a worker lost too often
                rec = ProductRecord.failure(item, exc)
            else:
                rec = fut.result()
            fut.release()
            del fut
            nxt = next(todo, None)
            if nxt is not None:
                f2 = submit(nxt)
                owner[f2.key] = (nxt, f2)
                pending.add(f2)
            bar.update(1)
            yield rec
    finally:
        bar.close()
        if owner:  # stopped early (Ctrl-C, the consumer gave up): nothing left running for us
            client.cancel([f for _, f in owner.values()])


def map_products(
    products: Iterable[Any],
    model: str | os.PathLike[str],
    config: SegmentConfig,
    out: str | os.PathLike[str],
    client: Any,
    retries: int = 2,
    progress: bool = True,
) -> Iterator[ProductRecord]:
    """Segment products on a Dask cluster, one task per product; yield records in completion order.

    Args:
        products: product references; local paths are made absolute (the workers must see the
            same filesystem, as they must see ``out`` and the model).
        model: the model file or a shipped model name.
        config: the run's options (``threads=0`` is capped per host, see :func:`capped_threads`).
        out: the output folder.
        client: the ``distributed.Client``.
        retries: retries of a product whose failure looks transient.
        progress: a progress bar over products.
    """
    from nimbus.engine.worker import absolute_ref

    if not hasattr(client, "submit"):
        raise NimbusError("map_products needs a distributed.Client")
    refs = [absolute_ref(p) for p in products]
    model_ref = absolute_ref(model)
    out_ref = absolute_ref(out)
    per_host, gpu = _host_layout(client)
    resources = {"GPU": 1} if gpu and config.provider in ("auto", "cuda", "tensorrt") else None

    def submit(ref: str) -> Any:
        return client.submit(_segment_task, ref, model_ref, config, out_ref, per_host, pure=False, retries=int(retries),
                             resources=resources, key=f"nimbus-segment-{os.path.basename(ref.rstrip('/'))[:80]}-{os.urandom(4).hex()}")  # fmt: skip

    yield from _run(refs, submit, client, progress, "products")


def map_items(
    items: Iterable[str],
    work: Callable[[str], tuple[str, str]],
    client: Any,
    retries: int = 2,
    progress: bool = True,
    what: str = "item",
) -> Iterator[ProductRecord]:
    """Run a batch command's ``work(item) -> (status, line)`` on a Dask cluster, one task per item.

    ``work`` must be picklable (a module-level function or a ``functools.partial`` of one).
    Failures are records (``outputs["line"]`` holds the line of a done item); transient ones are retried.
    """
    items = list(items)

    def submit(item: str) -> Any:
        return client.submit(_item_task, item, work, pure=False, retries=int(retries),
                             key=f"nimbus-{what}-{os.path.basename(str(item).rstrip('/'))[:80]}-{os.urandom(4).hex()}")  # fmt: skip

    yield from _run(items, submit, client, progress, what + "s")
