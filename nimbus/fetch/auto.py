"""``--aux auto``: every auxiliary layer a model needs, fetched from public sources and cached.

:func:`auto_aux` returns a folder that :func:`nimbus.auxiliary.find_aux` reads (the cache folder of
the product's grid), fetching only what is missing there; :func:`fetch_auxiliary` does the same and
copies the layers into a folder of the user's (``nimbus auxiliary OUT --fetch``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nimbus.atomic import atomic_path
from nimbus.auxiliary import aux_name, canonical_layer
from nimbus.errors import AuxiliaryDataError, UsageError
from nimbus.fetch.cache import cache_root, cached_layer, grid_dir, work_dir
from nimbus.fetch.grid import Grid, grid_of
from nimbus.fetch.mosaic import fetch_layer
from nimbus.fetch.source import base_url, source_for
from nimbus.lock import OutputLock
from nimbus.validate import is_valid

__all__ = ["DEFAULT_LAYERS", "FetchedLayer", "auto_aux", "fetch_auxiliary"]

#: The layers ``nimbus auxiliary --fetch`` builds when ``--layers`` is not given.
DEFAULT_LAYERS: tuple[str, ...] = ("altitude", "treecover", "water")


class FetchedLayer:
    """One layer :func:`auto_aux` provided.

    Attributes:
        layer: the layer name.
        path: the file.
        cached: True when it was in the cache already (nothing read from the network).
        source: the source's name.
        base: where it was (or would have been) read from.
    """

    def __init__(self, layer: str, path: Path, cached: bool, source: str, base: str) -> None:
        self.layer, self.path, self.cached, self.source, self.base = layer, path, cached, source, base

    def __repr__(self) -> str:
        return f"FetchedLayer({self.layer!r}, {str(self.path)!r}, cached={self.cached})"


def _layers(layers: Sequence[str] | str | None) -> list[str]:
    if layers is None:
        return list(DEFAULT_LAYERS)
    items = layers.split(",") if isinstance(layers, str) else [str(x) for x in layers]
    out: list[str] = []
    for name in (canonical_layer(x) for x in items if str(x).strip()):
        if name not in out:
            out.append(name)
    if not out:
        raise UsageError("--layers: name at least one auxiliary layer (altitude, treecover, water, landcover)")
    return out


def _fetch(
    product: Any, layers: Sequence[str] | str | None, res: int, cache: str | os.PathLike[str] | None,
    mirrors: Mapping[str, str] | None, allow_fill: bool, overwrite: bool,
) -> tuple[Path, list[FetchedLayer]]:  # fmt: skip
    grid: Grid = grid_of(product, int(res))
    if not grid.tile:
        raise AuxiliaryDataError(f"{product}: the product names no tile; auxiliary files are named by tile")
    names = _layers(layers)
    plan = [(name, source_for(name)) for name in names]  # unknown layers fail before anything is fetched
    root = cache_root(cache)
    folder = grid_dir(root, grid)
    done: list[FetchedLayer] = []
    for name, source in plan:
        out = folder / aux_name(grid.tile, name, int(res))
        base = base_url(source, mirrors)
        with OutputLock(out):
            if not overwrite and cached_layer(out, source):
                done.append(FetchedLayer(name, out, True, source.name, base))
                continue
            with work_dir(root) as work:
                fetch_layer(source, grid, out, base, root, work, allow_fill=allow_fill)
            done.append(FetchedLayer(name, out, False, source.name, base))
    return folder, done


def auto_aux(
    product: Any,
    layers: Sequence[str],
    res: int,
    cache: str | os.PathLike[str] | None = None,
    mirrors: Mapping[str, str] | None = None,
    allow_fill: bool = False,
) -> Path:
    """The folder of a product's auxiliary layers, fetched from public sources where not cached yet.

    Args:
        product: a :class:`nimbus.product.Product`, a product reference (path, item URL), or any
            object with ``tile``, ``crs``, ``transform(res)`` and ``shape(res)``.
        layers: layer names (``altitude``, ``treecover``, ``water``, ``landcover``; aliases such as
            ``dem`` accepted), e.g. ``ModelSpec.aux_layers``.
        res: the model's pixel size in metres; the layers are made on the product's grid at ``res``.
        cache: the cache folder (default ``$NIMBUS_CACHE`` or ``~/.cache/nimbus``).
        mirrors: ``{layer or source name: base URL or folder}`` replacing the public buckets
            (default: each source's environment variable, e.g. ``NIMBUS_COPDEM_URL``).
        allow_fill: write nodata where a source does not cover the grid instead of failing.

    Returns:
        A folder :func:`nimbus.auxiliary.find_aux` reads: ``<folder>/<TILE>_<layer>_<res>m.tif``.

    Raises:
        nimbus.errors.AuxiliaryFetchError: a tile cannot be fetched (names the URL and the mirror option).
        nimbus.errors.AuxiliaryDataError: a layer has no public source, or the source leaves the grid uncovered.
    """
    folder, _ = _fetch(product, layers, res, cache, mirrors, allow_fill, overwrite=False)
    return folder


def fetch_auxiliary(
    out_dir: str | os.PathLike[str],
    product: Any,
    layers: Sequence[str] | str | None = None,
    res: int = 10,
    cache: str | os.PathLike[str] | None = None,
    mirrors: Mapping[str, str] | None = None,
    allow_fill: bool = False,
    overwrite: bool = False,
) -> list[FetchedLayer]:
    """Fetch layers as :func:`auto_aux` does and copy them into ``out_dir`` (``nimbus auxiliary OUT --fetch``).

    Args:
        out_dir: the auxiliary folder to fill (``OUT/<TILE>_<layer>_<res>m.tif``).
        product: as for :func:`auto_aux`; a :class:`nimbus.grid.TileGrid` gives a whole tile.
        layers: layer names (default :data:`DEFAULT_LAYERS`).
        res: pixel size in metres.
        cache: the cache folder.
        mirrors: base URLs replacing the public buckets.
        allow_fill: write nodata where a source does not cover the grid.
        overwrite: fetch again even when the cache holds the layer.

    Returns:
        One :class:`FetchedLayer` per layer, ``path`` in ``out_dir``.
    """
    _, done = _fetch(product, layers, res, cache, mirrors, allow_fill, overwrite)
    out_dir = Path(out_dir)
    result = []
    for item in done:
        final = out_dir / item.path.name
        if final.resolve() != item.path.resolve():
            if overwrite or not (is_valid(final) and final.stat().st_size == item.path.stat().st_size):
                with atomic_path(final) as tmp:
                    shutil.copyfile(item.path, tmp)
        result.append(FetchedLayer(item.layer, final, item.cached, item.source, item.base))
    return result
