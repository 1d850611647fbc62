"""Atomic outputs: write to a temporary name in the destination folder, then rename.

A reader never sees a half-written file: either the old file (or none) or the complete new one.

Example:
    >>> with atomic_path("out/labels.tif") as tmp:       # doctest: +SKIP
    ...     write_geotiff(tmp, data)
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path"]


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it onto ``final`` when the block succeeds.

    The temporary name keeps ``final``'s suffix (so drivers that look at the extension, such as
    GDAL's, pick the right format) and lives in the same folder (so the rename is atomic). The
    caller may create a file or a folder at the temporary path. On success it replaces ``final``
    (an existing folder at ``final`` is removed first); on any exception the temporary path is
    removed and the exception propagates. The parent folder is created when missing.

    Args:
        final: the path the output must finally have.

    Yields:
        The temporary path to write to (nothing exists there yet).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".tar.gz") else final.suffix
    stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
    tmp = final.parent / f".{stem}.tmp-{uuid.uuid4().hex[:10]}{suffix}"
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if not tmp.exists():
        return
    try:
        if final.is_dir() and not final.is_symlink() and tmp.is_dir():
            old = final.parent / f".{stem}.old-{uuid.uuid4().hex[:10]}{suffix}"
            os.replace(final, old)
            os.replace(tmp, final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise
