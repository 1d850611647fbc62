"""The registry of product sources behind :func:`nimbus.product.open_product`.

A source is a name, a cheap test of whether it takes a reference (``accepts``) and an opener. The
built-in sources are tried in this order: STAC item (``pystac.Item``, item dict, ``http(s)://`` or
``s3://`` URL, ``.json`` file holding a Feature), zipped SAFE, SAFE folder, COG folder. A new source
is one module with two functions and one :func:`register_source` call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nimbus.errors import NotAProductError

__all__ = [
    "SourceType",
    "open_source",
    "register_source",
    "registered_sources",
    "source_for",
]


@dataclass(frozen=True)
class SourceType:
    """One kind of product source.

    Attributes:
        name: short name ("stac", "zip", "safe", "cog").
        accepts: ``accepts(ref) -> bool``; must be cheap and never raise.
        open: ``open(ref, tile) -> Product``.
        description: what it takes, for messages.
    """

    name: str
    accepts: Callable[[Any], bool]
    open: Callable[[Any, str | None], Any]
    description: str = ""


_SOURCES: list[SourceType] = []


def register_source(source: SourceType, first: bool = False) -> None:
    """Add a source (replacing one of the same name); ``first`` puts it before the others."""
    _SOURCES[:] = [s for s in _SOURCES if s.name != source.name]
    if first:
        _SOURCES.insert(0, source)
    else:
        _SOURCES.append(source)


def registered_sources() -> tuple[SourceType, ...]:
    """The sources in the order they are tried."""
    return tuple(_SOURCES)


def source_for(ref: Any) -> SourceType | None:
    """The first source that takes ``ref``, or None."""
    for s in _SOURCES:
        try:
            if s.accepts(ref):
                return s
        except (OSError, ValueError):
            continue
    return None


def open_source(ref: Any, tile: str | None = None) -> Any:
    """Open ``ref`` with the first source that takes it.

    Args:
        ref: a path, URL, item dict or ``pystac.Item``.
        tile: for multi-tile products, which tile.

    Returns:
        The opened :class:`nimbus.product.Product`.

    Raises:
        NotAProductError: no source takes it (the message says why).
    """
    source = source_for(ref)
    if source is None:
        raise NotAProductError(_why_not(ref))
    return source.open(ref, tile)


def _why_not(ref: Any) -> str:
    if not isinstance(ref, (str, os.PathLike)):
        return f"{ref!r}: not a product reference (expected a path, a URL or a pystac.Item)"
    p = Path(ref)
    if not p.exists():
        return f"{p}: no such file or folder"
    if p.is_file():
        return f"{p}: not a Sentinel-2 product (expected a .SAFE folder, a zipped SAFE, a folder of band files or a STAC item JSON)"
    safes = [c for c in p.iterdir() if c.name.upper().endswith(".SAFE") and c.is_dir()]
    return (
        f"{p}: folder holds no Sentinel-2 product (no MTD_MSIL*.xml, no GRANULE/ and no band files"
        + (f"; it holds {len(safes)} .SAFE folders: open one of them" if safes else "")
        + ")"
    )
