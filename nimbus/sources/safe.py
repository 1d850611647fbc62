"""SAFE products: a ``.SAFE`` folder (compact or OPER naming) or a zipped SAFE read in place (``/vsizip/``).

The product- and tile-level metadata XMLs give level, baseline, offsets and the tile grid; the band
files are found by :func:`nimbus.product.find_band_files` in the folder's (or the zip's) listing.
A folder that holds band files but no SAFE metadata is a COG folder (:mod:`nimbus.sources.cogfolder`).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from nimbus.bands import BANDS
from nimbus.errors import CorruptArchiveError, MetadataError, NotAProductError, ProductError, explain
from nimbus.metadata import ProductMetadata, TileMetadata, baseline_has_offsets, parse_product_metadata, parse_tile_metadata, tile_from_name
from nimbus.product import PRODUCT_MTD_RE, TILE_MTD_RE, FileStore, Product, find_band_files, find_metadata_files, is_band_file, select_tile

__all__ = [
    "FolderStore",
    "ZipStore",
    "accepts_safe",
    "accepts_zip",
    "folder_markers",
    "is_safe_listing",
    "open_safe",
    "open_zip",
]


class FolderStore(FileStore):
    """The files of a product folder."""

    def list(self) -> list[str]:
        """Every file under the folder (HTML and rep_info skipped), relative, ``/``-separated, sorted."""
        out: list[str] = []
        root = str(self.path)
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d.lower() not in ("html", "rep_info")]
            rel_dir = os.path.relpath(dirpath, root)
            for f in filenames:
                out.append(f if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{f}")
        return sorted(out)

    def read_bytes(self, rel: str) -> bytes:
        """The bytes of one file (raises :class:`MetadataError` naming it when unreadable)."""
        try:
            return (Path(self.path) / rel).read_bytes()
        except OSError as exc:
            raise MetadataError(f"{Path(self.path) / rel}: cannot be read ({exc})") from exc

    def gdal_path(self, rel: str) -> str:
        """The file's path."""
        return str(Path(self.path) / rel)


class ZipStore(FileStore):
    """The members of a zipped product, read in place."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise CorruptArchiveError(f"{path}: corrupt or truncated zip archive ({exc}); download the product again") from exc
        except OSError as exc:
            raise CorruptArchiveError(f"{path}: cannot read the zip archive ({exc})") from exc
        self._names = [i.filename for i in self._zip.infolist() if not i.is_dir()]

    def list(self) -> list[str]:
        """The archive's member files, sorted."""
        return sorted(self._names)

    def read_bytes(self, rel: str) -> bytes:
        """One member's bytes (raises :class:`CorruptArchiveError` when it cannot be decoded)."""
        try:
            return self._zip.read(rel)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, KeyError) as exc:
            raise CorruptArchiveError(f"{self.path}: member {rel} cannot be read ({exc}); the archive is corrupt") from exc

    def gdal_path(self, rel: str) -> str:
        """``/vsizip/<archive>/<member>``."""
        return f"/vsizip/{Path(self.path).resolve()}/{rel}"

    def describe(self, rel: str) -> str:
        """``archive!/member``."""
        return f"{self.path}!/{rel}"

    def read_error(self, band: str, rel: str, exc: Exception) -> ProductError:
        """A band that GDAL cannot decode from the archive: the zip is corrupt."""
        where = self.describe(rel)
        return CorruptArchiveError(f"{where}: band {band} cannot be read from the archive ({explain(exc)}); the zip is corrupt or truncated")

    def close(self) -> None:
        """Close the archive."""
        self._zip.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


# ----------------------------------------------------------------------------------------- recognising


def folder_markers(p: Path) -> bool:
    """Whether a folder's top level looks like a product (metadata XML, GRANULE/IMG_DATA or band files)."""
    try:
        top = [c.name for c in p.iterdir()]
    except OSError:
        return False
    return any(PRODUCT_MTD_RE.match(n) or TILE_MTD_RE.match(n) or is_band_file(n) or n.upper() in ("GRANULE", "IMG_DATA") for n in top)


def is_safe_listing(names: list[str]) -> bool:
    """Whether a folder's listing is a SAFE (metadata XML or ``GRANULE/``), not a band-file folder."""
    return any(
        PRODUCT_MTD_RE.match(PurePosixPath(n).name) or TILE_MTD_RE.match(PurePosixPath(n).name) or n.upper().startswith("GRANULE/")
        for n in names
    )


def _single_safe_child(p: Path) -> Path | None:
    safes = [c for c in p.iterdir() if c.name.upper().endswith(".SAFE") and c.is_dir()]
    return safes[0] if len(safes) == 1 else None


def accepts_safe(ref: Any) -> bool:
    """A SAFE folder, its ``MTD_MSIL*.xml``, or a folder holding exactly one ``.SAFE``."""
    if not isinstance(ref, (str, os.PathLike)):
        return False
    p = Path(ref)
    if p.is_file():
        return bool(PRODUCT_MTD_RE.match(p.name))
    if not p.is_dir():
        return False
    if folder_markers(p):
        return is_safe_listing(FolderStore(p).list())
    return _single_safe_child(p) is not None


def accepts_zip(ref: Any) -> bool:
    """A file that is a zip archive (by its magic bytes or a ``.zip`` suffix)."""
    if not isinstance(ref, (str, os.PathLike)):
        return False
    p = Path(ref)
    if not p.is_file():
        return False
    with open(p, "rb") as fh:
        head = fh.read(4)
    return head[:2] == b"PK" or p.suffix.lower() == ".zip"


# ----------------------------------------------------------------------------------------- opening


def open_zip(ref: Any, tile: str | None = None) -> Product:
    """Open a zipped SAFE in place.

    Raises:
        CorruptArchiveError: the archive is corrupt or truncated.
        NotAProductError: the zip holds no Sentinel-2 product.
    """
    p = Path(ref)
    return _open_safe_listing(p, "zip", ZipStore(p), tile)


def open_safe(ref: Any, tile: str | None = None) -> Product:
    """Open a SAFE folder (or its ``MTD_MSIL*.xml``, or a folder holding exactly one ``.SAFE``)."""
    p = Path(ref)
    if p.is_file():
        p = p.parent
    if not folder_markers(p):
        child = _single_safe_child(p)
        if child is None:
            raise NotAProductError(f"{p}: folder holds no Sentinel-2 product")
        p = child
    store = FolderStore(p)
    return _open_safe_listing(p, "safe", store, tile, store.list())


def _open_safe_listing(path: Path, layout: str, src: FileStore, tile: str | None, names: list[str] | None = None) -> Product:
    names = src.list() if names is None else names
    per_tile = find_band_files(names)
    product_xmls, tile_xmls = find_metadata_files(names)
    if not per_tile:
        raise NotAProductError(f"{path}: no Sentinel-2 band files (B01..B12, B8A) found")
    tiles = sorted(per_tile)
    chosen = select_tile(str(path), per_tile, tile)
    files = per_tile[chosen]
    tmd: TileMetadata | None = None
    if product_xmls:
        rel = product_xmls[0]
        md = parse_product_metadata(src.read_bytes(rel), name=src.describe(rel))
        txml = tile_xmls.get(chosen) or (next(iter(tile_xmls.values())) if len(tile_xmls) == 1 else None)
        if txml is not None:
            tmd = parse_tile_metadata(src.read_bytes(txml), name=src.describe(txml))
    elif tile_xmls:
        txml = tile_xmls.get(chosen) or next(iter(tile_xmls.values()))
        tmd = parse_tile_metadata(src.read_bytes(txml), name=src.describe(txml))
        md = ProductMetadata(source=tmd.source, level=tmd.level, baseline=tmd.baseline, sensing_time=tmd.sensing_time,
                             offsets={b: (-1000.0 if baseline_has_offsets(tmd.baseline) else 0.0) for b in BANDS}, cloud_cover=tmd.cloud_cover)  # fmt: skip
    elif layout == "zip":
        raise NotAProductError(f"{path}: zip holds band files but no Sentinel-2 metadata (MTD_MSIL*.xml)")
    else:  # a GRANULE/ tree without any XML: read like a band-file folder
        from nimbus.sources.cogfolder import open_cog_folder

        return open_cog_folder(path, tile, layout="safe")
    parts = [x for x in product_xmls[0].split("/") if x] if product_xmls else []
    safe_dir = parts[-2] if len(parts) > 1 else ""
    if safe_dir.upper().endswith(".SAFE"):
        prod_id = safe_dir[:-5]
    elif md.product_format == "SAFE" and (path.name.upper().endswith(".SAFE") or "_TL_" in (md.product_uri or "")):
        # OPER naming: PRODUCT_URI names a granule, so the folder (as `nimbus extract` names it) is the product id
        prod_id = path.name.removesuffix(".SAFE").removesuffix(".zip")
    else:
        prod_id = md.product_uri or path.name.removesuffix(".zip").removesuffix(".SAFE")
    tile_code = chosen or (tmd.tile if tmd else "") or tile_from_name(prod_id) or tile_from_name(path.name)
    return Product(path, layout, src, files, md, tmd, tile_code, prod_id, [t for t in tiles if t != chosen])
