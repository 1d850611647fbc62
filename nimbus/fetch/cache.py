"""The on-disk cache of fetched auxiliary layers (``$NIMBUS_CACHE`` or ``~/.cache/nimbus``).

Layout::

    CACHE/aux/<TILE>/<epsg>_<x0>_<y0>_<pixel>m_<width>x<height>/<TILE>_<layer>_<res>m.tif
    CACHE/index/<source>-<hash of the base URL>.txt      lists of existing tiles (tileList.txt)
    CACHE/tmp/                                           windows being fetched (removed after use)

One folder per target grid (the tile, its CRS, origin, pixel size and shape), so
:func:`nimbus.auxiliary.find_aux` reads it directly and every product on the same tile grid shares
it: the second product of a tile reads nothing from the network. A cached layer is used only when it
validates (:func:`nimbus.validate.is_valid`) and its tags name the same source and version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from nimbus.fetch.grid import Grid
from nimbus.fetch.source import TileSource
from nimbus.validate import is_valid

__all__ = ["cache_root", "cached_layer", "grid_dir", "index_path", "work_dir"]


def cache_root(cache: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache`` if given, else ``$NIMBUS_CACHE``, else ``~/.cache/nimbus``."""
    if cache is not None and str(cache):
        return Path(cache).expanduser()
    env = os.environ.get("NIMBUS_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nimbus"


def grid_dir(root: str | os.PathLike[str], grid: Grid) -> Path:
    """The folder of the auxiliary layers of one target grid (see the module docstring)."""
    return Path(root) / "aux" / grid.tile / grid.key()


def index_path(root: str | os.PathLike[str], source: TileSource, base: str) -> Path:
    """Where the tile list of ``source`` read from ``base`` is cached."""
    digest = hashlib.sha1(base.encode("utf-8")).hexdigest()[:12]
    return Path(root) / "index" / f"{source.name}-{digest}.txt"


def cached_layer(path: str | os.PathLike[str], source: TileSource) -> bool:
    """Whether ``path`` is a complete layer built from ``source`` at its current version."""
    path = Path(path)
    if not is_valid(path):
        return False
    import rasterio

    try:
        with rasterio.open(path) as ds:
            tags = ds.tags()
    except rasterio.errors.RasterioIOError:
        return False
    return tags.get("source_id") == source.name and tags.get("source_version") == source.version


@contextlib.contextmanager
def work_dir(root: str | os.PathLike[str]) -> Iterator[Path]:
    """A private temporary folder under ``CACHE/tmp`` (removed afterwards) for windows being fetched."""
    base = Path(root) / "tmp"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="fetch-") as tmp:
        yield Path(tmp)
