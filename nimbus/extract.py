"""Unpack zipped Sentinel-2 products into an organised store, safely, atomically and idempotently.

``DST/<tile>/<product id>/`` holds the content of one SAFE product (``manifest.safe``,
``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml``, ``GRANULE/...``), whatever the archive's own layout (with
or without a top ``.SAFE`` folder). The product id is the SAFE name without ``.SAFE`` (from the
metadata's ``PRODUCT_URI``, else the top folder, else the archive name), so two passes on the same
day or two satellites never collide.

Safety: an archive with an absolute path, a ``..`` component or a link among its entries is
refused whole (zip-slip); an archive whose entries would expand beyond a total size or compression
ratio limit is refused (zip bomb), and each entry is cut off if it writes more than it declared.
A corrupt or truncated archive is reported and skipped; the others go on.

Atomicity: a product is unpacked into a hidden temporary folder beside its final place and renamed
when complete (after the optional COG transcoding), so an interrupted run never leaves a
half-extracted product under its final name; the next run removes stale temporary folders and
skips finished products.

``cog=True`` transcodes every JPEG2000 image in ``IMG_DATA`` into a Cloud-Optimized GeoTIFF
(ZSTD, horizontal predictor) with the same name and a ``.tif`` extension, deleting the ``.jp2``;
the metadata is kept unchanged, and the product reader looks for ``.tif`` when the ``.jp2`` named
by the metadata is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from nimbus.atomic import atomic_path
from nimbus.errors import CorruptArchiveError, ExtractError, NimbusError, explain
from nimbus.validate import is_valid

__all__ = [
    "ArchiveInfo",
    "ExtractLimits",
    "ExtractSummary",
    "extract_all",
    "extract_product",
    "find_archives",
    "inspect_archive",
    "transcode_to_cog",
]

_CHUNK = 1 << 20
_OWNER = ".nimbus-extract.pid"
_MTD = re.compile(r"(^|/)(MTD_MSIL(1C|2A)\.xml|S2[A-D]_(OPER|USER)_MTD_SAF[A-Z0-9]*_.*\.xml)$", re.IGNORECASE)
_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}  # what zipfile decompresses
_TILE = re.compile(r"(?:^|[_/])T(\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})(?=[_./]|$)")


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds that make an archive a zip bomb.

    Attributes:
        max_total_bytes: most bytes all entries together may expand to (a full L2A is ~1.2 GB).
        max_ratio: highest compression ratio allowed for an entry larger than ``ratio_min_bytes``
            (JPEG2000 barely compresses; XML ~10-20x).
        ratio_min_bytes: entries smaller than this are not ratio-checked.
        max_entries: most entries an archive may hold.
    """

    max_total_bytes: int = 8 * 1024**3
    max_ratio: float = 200.0
    ratio_min_bytes: int = 1 << 20
    max_entries: int = 20_000


@dataclass
class ArchiveInfo:
    """What the listing of a product archive says, before anything is written.

    Attributes:
        path: the archive.
        product_id: the SAFE name without ``.SAFE``.
        tile: the MGRS tile code (``"MULTI"`` for old multi-tile products, ``"UNKNOWN"`` if none).
        prefix: the folder inside the archive that holds the SAFE content ("" when at the root).
        total_bytes: uncompressed size of all entries.
        entries: number of entries.
    """

    path: Path
    product_id: str
    tile: str
    prefix: str
    total_bytes: int
    entries: int


@dataclass
class ExtractSummary:
    """The outcome of :func:`extract_all`.

    Attributes:
        extracted: product folders written by this run.
        skipped: product folders already complete.
        failed: ``(archive, reason)`` of the archives that could not be extracted.
    """

    extracted: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"extracted {len(self.extracted)}, skipped {len(self.skipped)}, failed {len(self.failed)}"]
        lines += [f"  failed: {p.name}: {why}" for p, why in self.failed]
        return "\n".join(lines)


def _check_name(info: zipfile.ZipInfo, archive: Path) -> PurePosixPath:
    name = info.filename.replace("\\", "/")
    pure = PurePosixPath(name)
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in pure.parts:
        raise ExtractError(f"{archive}: entry {info.filename!r} would be written outside the product (zip-slip); archive refused")
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise ExtractError(f"{archive}: entry {info.filename!r} is a symbolic link; archive refused")
    return pure


def _check_readable(info: zipfile.ZipInfo, archive: Path) -> None:
    """Refuse an entry ``zipfile`` cannot decompress (encrypted, patched data, an unsupported method)."""
    if info.flag_bits & 0x61:  # bit 0 encrypted, bit 5 compressed patched data, bit 6 strong encryption
        raise ExtractError(f"{archive}: entry {info.filename!r} is encrypted or patched (zip flags {info.flag_bits:#x}); archive refused")
    if info.compress_type not in _METHODS:
        method = zipfile.compressor_names.get(info.compress_type, "unknown")
        raise ExtractError(
            f"{archive}: entry {info.filename!r} uses compression method {info.compress_type} ({method}), which cannot be "
            "decompressed (only store, deflate, bzip2, lzma); archive refused"
        )


def inspect_archive(path: str | os.PathLike[str], limits: ExtractLimits = ExtractLimits()) -> ArchiveInfo:
    """Check an archive's listing (zip-slip, zip bomb) and find its product id and tile.

    Args:
        path: the ``.zip`` file.
        limits: the zip-bomb bounds.

    Returns:
        The :class:`ArchiveInfo`.

    Raises:
        CorruptArchiveError: the file is not a readable zip archive.
        ExtractError: unsafe entries, a zip bomb, entries that cannot be decompressed, or no Sentinel-2
            metadata inside.
    """
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CorruptArchiveError(f"{path}: not a readable zip archive ({exc}); download it again") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_entries:
            raise ExtractError(f"{path}: {len(infos)} entries exceed the limit of {limits.max_entries}; archive refused")
        total = 0
        for info in infos:
            if not info.filename:  # zipfile cuts a name at its first NUL byte
                raise CorruptArchiveError(f"{path}: an entry has an empty name; the archive is corrupt, download it again")
            _check_name(info, path)
            total += info.file_size
            if (
                info.file_size >= limits.ratio_min_bytes
                and info.file_size > limits.max_ratio * max(info.compress_size, 1)
            ):
                raise ExtractError(
                    f"{path}: entry {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                    f"(limit {limits.max_ratio:.0f}x): looks like a zip bomb; archive refused"
                )
        if total > limits.max_total_bytes:
            raise ExtractError(
                f"{path}: expands to {total / 1e9:.2f} GB (limit {limits.max_total_bytes / 1e9:.2f} GB): "
                f"looks like a zip bomb; archive refused"
            )
        names = [i.filename.replace("\\", "/") for i in infos]
        mtd = sorted((n for n in names if _MTD.search(n)), key=lambda n: n.count("/"))
        if not mtd:
            raise ExtractError(f"{path}: no Sentinel-2 product metadata (MTD_MSIL1C.xml, MTD_MSIL2A.xml) inside; not a product")
        prefix = mtd[0].rsplit("/", 1)[0] + "/" if "/" in mtd[0] else ""
        for info in infos:
            if info.filename.replace("\\", "/").startswith(prefix):
                _check_readable(info, path)
        top = PurePosixPath(prefix).name  # empty for ./
        product_id = top if top.upper().endswith(".SAFE") else ""
        if not product_id:
            try:
                from nimbus.metadata import parse_product_metadata

                uri = parse_product_metadata(zf.read(mtd[0]), name=f"{path}!{mtd[0]}").product_uri
            except (NimbusError, KeyError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ImportError, RuntimeError, NotImplementedError):
                uri = ""
            # old "OPER" products may name a granule in PRODUCT_URI: only a product name will do
            if re.search(r"_(MSIL1C|MSIL2A|PRD_MSIL1C|PRD_MSIL2A)_", uri):
                product_id = uri
        if not product_id:
            product_id = top or path.name.removesuffix(".zip")
        product_id = product_id.removesuffix(".SAFE")
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", product_id) or product_id in (".", ".."):
            raise ExtractError(f"{path}: product id {product_id[:80]!r} is not a plain name of at most 200 characters; archive refused")
        tiles = sorted({m.group(1) for n in names if n.startswith(prefix) for m in [_TILE.search(n[len(prefix):])] if m})
        tile_in_id = _TILE.search(product_id)
        if tile_in_id:
            tile = tile_in_id.group(1)
        elif len(tiles) == 1:
            tile = tiles[0]
        else:
            tile = "MULTI" if tiles else "UNKNOWN"
        return ArchiveInfo(path, product_id, tile, prefix, total, len(infos))


def _copy_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, archive: Path) -> int:
    written = 0
    with zf.open(info) as src, open(target, "wb") as dst:
        while True:
            chunk = src.read(_CHUNK)
            if not chunk:
                break
            written += len(chunk)
            if written > info.file_size:
                raise ExtractError(f"{archive}: entry {info.filename!r} expands beyond its declared size; archive refused")
            dst.write(chunk)
    return written


def transcode_to_cog(src: str | os.PathLike[str], dst: str | os.PathLike[str], overviews: bool = True) -> None:
    """Transcode one JPEG2000 band into a Cloud-Optimized GeoTIFF (ZSTD + horizontal predictor).

    Args:
        src: the JPEG2000 file.
        dst: the ``.tif`` to write (atomically).
        overviews: build internal overviews (for quick looks in GIS tools).
    """
    import rasterio
    from rasterio.shutil import copy as rio_copy

    with rasterio.open(src) as ds:
        dtype = ds.dtypes[0]
    opts = {"compress": "ZSTD", "blocksize": 512, "BIGTIFF": "IF_SAFER", "NUM_THREADS": "ALL_CPUS"}
    if dtype in ("uint8", "uint16", "int16", "uint32", "int32"):
        # Sentinel-2 JPEG2000 is 15-bit: store full 16-bit samples so the predictor applies
        opts.update(predictor="2", NBITS=str(8 * np.dtype(dtype).itemsize))
    else:
        opts["predictor"] = "3"
    if not overviews:
        opts["overviews"] = "NONE"
    with atomic_path(dst) as tmp:
        rio_copy(src, tmp, driver="COG", **opts)


def _stale_temps(tile_dir: Path, product_id: str) -> list[Path]:
    """Temporary folders of earlier interrupted runs (``atomic_path`` names: ``.<stem>.tmp-<id><suffix>``)."""
    suffix = Path(product_id).suffix
    stem = product_id[: len(product_id) - len(suffix)] if suffix else product_id
    if not tile_dir.is_dir():
        return []
    return [p for p in tile_dir.glob(f".{stem}.tmp-*") if p.is_dir() and p.name.endswith(suffix) and not _owner_alive(p)]


def _owner_alive(tmp: Path) -> bool:
    """Whether the process that is filling a temporary folder still runs (then it is not stale)."""
    try:
        pid = int((tmp / _OWNER).read_text().strip())
    except (OSError, ValueError):
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def extract_product(
    archive: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    cog: bool = False,
    limits: ExtractLimits = ExtractLimits(),
    on_entry: Callable[[int, str], None] | None = None,
) -> tuple[Path, bool]:
    """Extract one zipped product into ``dst/<tile>/<product id>/``.

    Args:
        archive: the ``.zip`` file.
        dst: the store's root folder.
        cog: transcode the JPEG2000 images of ``IMG_DATA`` into COG (ZSTD + predictor).
        limits: the zip-bomb bounds.
        on_entry: called as ``on_entry(index, name)`` before each entry is written (progress).

    Returns:
        ``(product folder, extracted)``: ``extracted`` is False when it was already complete.

    Raises:
        CorruptArchiveError: the archive is corrupt or truncated.
        ExtractError: the archive is unsafe or holds no product.
    """
    archive = Path(archive)
    info = inspect_archive(archive, limits)
    tile_dir = Path(dst) / info.tile
    final = tile_dir / info.product_id
    for stale in _stale_temps(tile_dir, info.product_id):
        shutil.rmtree(stale, ignore_errors=True)
    if final.is_dir() and is_valid(final):
        return final, False  # complete; a folder that does not validate is extracted again
    try:
        with atomic_path(final) as tmp, zipfile.ZipFile(archive) as zf:
            tmp.mkdir()
            (tmp / _OWNER).write_text(str(os.getpid()))
            total = 0
            for i, entry in enumerate(zf.infolist()):
                name = entry.filename.replace("\\", "/")
                if not name.startswith(info.prefix):
                    continue  # e.g. a readme beside the SAFE folder
                rel = _check_name(entry, archive).relative_to(info.prefix.rstrip("/") or ".")
                if on_entry is not None:
                    on_entry(i, name)
                target = tmp / rel
                if entry.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                total += _copy_entry(zf, entry, target, archive)
                if total > limits.max_total_bytes:
                    raise ExtractError(f"{archive}: expands beyond {limits.max_total_bytes / 1e9:.2f} GB; archive refused")
            if cog:
                for jp2 in sorted(tmp.rglob("*.jp2")):
                    if "IMG_DATA" in jp2.parts:
                        transcode_to_cog(jp2, jp2.with_suffix(".tif"))
                        jp2.unlink()
            (tmp / _OWNER).unlink()
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:  # a damaged local header
        raise CorruptArchiveError(f"{archive}: corrupt or truncated archive ({exc}); download it again") from exc
    except OSError as exc:
        if isinstance(exc, NimbusError):
            raise
        raise ExtractError(f"{archive}: cannot be extracted ({exc})") from exc
    return final, True


def find_archives(src: Path) -> list[Path]:
    """The zipped products of a folder (or the one ``.zip`` given), sorted.

    Raises:
        ExtractError: when ``src`` is neither a file nor a folder.
    """
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise ExtractError(f"{src}: no such folder of zipped products")
    return sorted(p for p in src.iterdir() if p.is_file() and p.suffix.lower() == ".zip")


def extract_all(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    cog: bool = False,
    limits: ExtractLimits = ExtractLimits(),
    progress: bool = True,
    archives: Iterable[str | os.PathLike[str]] | None = None,
) -> ExtractSummary:
    """Extract every zipped product of a folder into ``dst/<tile>/<product id>/``.

    Corrupt or unsafe archives are reported in the summary and skipped; the others go on.

    Args:
        src: a folder of ``.zip`` products (or one ``.zip``).
        dst: the store's root folder.
        cog: transcode JPEG2000 bands to COG (ZSTD + predictor).
        limits: the zip-bomb bounds.
        progress: show a progress bar (quiet when output is not a terminal).
        archives: explicit archives instead of the content of ``src``.

    Returns:
        The :class:`ExtractSummary`.
    """
    from tqdm import tqdm

    paths = [Path(a) for a in archives] if archives is not None else find_archives(Path(src))
    summary = ExtractSummary()
    bar = tqdm(paths, desc="extract", unit="product", disable=not progress or None)
    for path in bar:
        bar.set_postfix_str(path.name[:40])
        try:
            folder, done = extract_product(path, dst, cog=cog, limits=limits)
        except Exception as exc:  # one archive, one failure: the others go on
            summary.failed.append((path, explain(exc)))
            continue
        (summary.extracted if done else summary.skipped).append(folder)
    return summary
