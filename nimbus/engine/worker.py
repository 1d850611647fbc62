"""What one process does per product: keep the model loaded, segment one product, return its record.

:func:`segmenter_for` keeps this process's :class:`~nimbus.segmenter.Segmenter` per (model file,
config), so a Dask worker loads a model once for all its products; :func:`segment_one` turns one
product into a :class:`~nimbus.engine.records.ProductRecord`, whatever happens;
:func:`absolute_ref` makes references mean the same on another process.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nimbus.engine.config import SegmentConfig
from nimbus.engine.records import ProductRecord, is_transient

__all__ = ["absolute_ref", "segment_one", "segmenter_for"]

_CACHE: OrderedDict[tuple, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 2


def absolute_ref(ref: str | os.PathLike[str]) -> str:
    """A product or model reference that means the same on another process: local paths made
    absolute, URLs and shipped model names (``rules``, ``default``) kept."""
    s = os.fspath(ref)
    if "://" in s or s in ("rules", "default"):
        return s
    return str(Path(s).expanduser().absolute())


def segmenter_for(model: str | os.PathLike[str], config: SegmentConfig) -> Any:
    """This process's :class:`~nimbus.segmenter.Segmenter` for a model and config, loaded once.

    Keyed by the model file (path, size, modification time) and the whole config; the two most
    recent are kept.
    """
    from nimbus.models import resolve_model
    from nimbus.segmenter import Segmenter

    path = str(resolve_model(os.fspath(model)))
    try:
        st = os.stat(path)
        stamp: tuple = (st.st_size, st.st_mtime_ns)
    except OSError:
        stamp = ()
    key = (path, stamp, config)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    seg = Segmenter(path, config)
    with _CACHE_LOCK:
        _CACHE[key] = seg
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return seg


def _where() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def segment_one(
    product: Any,
    model: str | os.PathLike[str],
    config: SegmentConfig,
    out: str | os.PathLike[str],
    on_wait: Callable[[dict], None] | None = None,
    raise_transient: bool = False,
) -> ProductRecord:
    """Segment one product and say what became of it; any failure is a ``failed`` record.

    Args:
        product: a product reference (path, URL, STAC item) or an opened product.
        model: the model file or a shipped model name.
        config: the run's options.
        out: the output folder.
        on_wait: called with the lock owner when another process is writing the same outputs.
        raise_transient: re-raise failures that look transient (network, I/O) instead of
            recording them, so that a scheduler can retry the product elsewhere.

    Returns:
        The product's :class:`~nimbus.engine.records.ProductRecord`.
    """
    name = str(getattr(product, "path", product))
    t0 = time.perf_counter()
    try:
        seg = segmenter_for(model, config)
        res = seg.segment(product, out=out, on_wait=on_wait)
    except Exception as exc:  # one product, one failure: the others go on
        if raise_transient and is_transient(exc):
            raise
        return ProductRecord.failure(name, exc, time.perf_counter() - t0, _where())
    return ProductRecord(
        name,
        "skipped" if res.skipped else "done",
        0.0 if res.skipped else time.perf_counter() - t0,
        outputs={k: str(v) for k, v in res.outputs.items()},
        product_id=res.product_id,
        windows=res.windows,
        worker=_where(),
        model=seg.spec.file_tag,
    )
