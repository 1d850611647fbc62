"""Product discovery: which of the paths a user gives (or finds in a folder) are products.

One rule for every command: a reference is a product when a registered source takes it
(:func:`nimbus.sources.registry.source_for`): a SAFE folder, a zipped SAFE, a COG folder, a STAC
item JSON or URL. A folder that is not itself a product is searched two levels deep (the store of
``nimbus extract`` is ``DST/<tile>/<product id>/``); an ItemCollection JSON (``nimbus search --out``)
gives one ``FILE#ID`` reference per item.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nimbus.remote import is_remote
from nimbus.sources.registry import source_for
from nimbus.sources.safe import folder_markers

__all__ = ["find_products"]


def _split(value: Any) -> list[str]:
    items: Iterable[Any] = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(i).strip() for i in items if str(i).strip()]


def _collection_refs(p: Path) -> list[str] | None:
    """``FILE#ID`` per item of an ItemCollection file, or None when ``p`` is not one."""
    if p.suffix.lower() not in (".json", ".geojson") or not p.is_file():
        return None
    try:
        obj = json.loads(p.read_bytes())
    except (OSError, ValueError):
        return None
    if not (isinstance(obj, dict) and obj.get("type") == "FeatureCollection"):
        return None
    return [f"{p}#{f['id']}" for f in obj.get("features", []) if isinstance(f, dict) and f.get("id")]


def _is_product(p: Path) -> bool:
    """A registered source takes ``p`` itself (a folder that merely holds one ``.SAFE`` is searched instead)."""
    if source_for(p) is None:
        return False
    return not p.is_dir() or folder_markers(p)


def _scan(folder: Path, depth: int) -> list[str]:
    out: list[str] = []
    try:
        children = sorted(folder.iterdir())
    except OSError:
        return out
    for child in children:
        if child.name.startswith("."):
            continue
        refs = _collection_refs(child) if child.is_file() else None
        if refs is not None:
            out += refs
        elif _is_product(child):
            out.append(str(child))
        elif child.is_dir() and depth > 1:
            out += _scan(child, depth - 1)
    return out


def find_products(value: Any, depth: int = 2) -> list[str]:
    """Product references from a command-line value.

    Args:
        value: one reference, a comma-separated string or a list: products (paths, item URLs,
            ``FILE#ID``), ItemCollection files, or folders holding products.
        depth: how many folder levels below a given folder are searched.

    Returns:
        The product references, in the order given (folders: sorted). A reference that names
        nothing usable (a missing path, a folder without products) is kept, so the batch reports it
        by name instead of silently doing nothing.
    """
    out: list[str] = []
    for item in _split(value):
        if is_remote(item):
            out.append(item)
            continue
        p = Path(item)
        refs = _collection_refs(p)
        if refs is not None:
            out += refs
            continue
        if not p.is_dir() or _is_product(p):
            out.append(item)
            continue
        found = _scan(p, depth)
        out += found if found else [item]
    return out
