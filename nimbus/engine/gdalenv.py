"""Process-wide GDAL settings, made once per process (not once per product).

GDAL's default block cache is 5 % of the machine's RAM (6 GB on a 128 GB server), which alone
would break the segmenter's memory bound; GDAL reads ``GDAL_CACHEMAX`` only once, so the limit is
set through ``GDALSetCacheMax64`` of the libgdal that rasterio loaded. A Dask worker segmenting
thousands of products sets it when its first product starts and never again.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["configure_gdal", "gdal_cache"]

_lock = threading.Lock()
_configured: dict[str, Any] = {}


def _libgdal() -> Any:
    import rasterio  # noqa: F401  (loads libgdal)

    try:
        with open("/proc/self/maps", encoding="utf-8") as f:
            paths = {line.split()[-1] for line in f if "libgdal" in line and "/" in line}
    except OSError:
        paths = set()
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.GDALGetCacheMax64.restype = ctypes.c_int64
            lib.GDALSetCacheMax64.argtypes = [ctypes.c_int64]
            return lib
        except (OSError, AttributeError):
            continue
    return None


def configure_gdal(cache_mb: int | None) -> bool:
    """Set the process's GDAL block cache to ``cache_mb`` MB, once (later calls with the same value do nothing).

    Args:
        cache_mb: the cache in MB; None leaves GDAL's default.

    Returns:
        True when the setting was changed by this call.
    """
    if not cache_mb:
        return False
    with _lock:
        if _configured.get("cache_mb") == int(cache_mb):
            return False
        lib = _libgdal()
        if lib is None:
            return False
        lib.GDALSetCacheMax64(ctypes.c_int64(int(cache_mb) * 1024 * 1024))
        _configured["cache_mb"] = int(cache_mb)
        return True


@contextmanager
def gdal_cache(megabytes: int | None) -> Iterator[None]:
    """Bound GDAL's block cache while the block runs, then restore it (for benchmarks and libraries
    that must leave the process as they found it). Does nothing when ``megabytes`` is None or
    libgdal cannot be found."""
    lib = _libgdal() if megabytes else None
    if lib is None:
        yield
        return
    old = lib.GDALGetCacheMax64()
    lib.GDALSetCacheMax64(ctypes.c_int64(int(megabytes) * 1024 * 1024))
    try:
        yield
    finally:
        lib.GDALSetCacheMax64(ctypes.c_int64(old))
        with _lock:
            _configured.pop("cache_mb", None)
