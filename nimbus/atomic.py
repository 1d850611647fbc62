"""Atomic outputs: write to a temporary name in the destination folder, validate, then rename.

A reader never sees a half-written file: either the old file (or none) or the complete new one.
Before the rename every output is reopened and checked (:mod:`nimbus.validate`), because a full
disk or a write error reported only when GDAL closes a file can leave a file that opens but is
incomplete. Outputs that belong together (a class map and its probabilities) are committed as one
:class:`AtomicGroup`: all are validated first, then renamed in order, the last one (the class map)
marking the set as complete; Ctrl-C during the renames is held until they are done.

Example:
    >>> with atomic_path("out/labels.tif") as tmp:       # doctest: +SKIP
    ...     write_geotiff(tmp, data)
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nimbus.errors import NimbusError, OutputError, explain, root_cause

__all__ = ["AtomicGroup", "atomic_path", "deferred_interrupts", "remove_stale_temporaries", "temporary_name", "write_failure"]

Validator = Callable[[Path], None]

_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", -1)}
_DISK_WORDS = ("no space left", "file too large", "write error", "write failed", "disk quota")


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    except OSError:
        pass


def temporary_name(final: str | os.PathLike[str], tag: str = "tmp") -> Path:
    """A hidden name beside ``final`` that keeps its suffix: ``.<stem>.<tag>-<random><suffix>``."""
    final = Path(final)
    suffix = "".join(final.suffixes[-2:]) if final.name.endswith(".tar.gz") else final.suffix
    stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
    return final.parent / f".{stem}.{tag}-{uuid.uuid4().hex[:10]}{suffix}"


def remove_stale_temporaries(final: str | os.PathLike[str]) -> list[Path]:
    """Remove the hidden temporary files of ``final`` left by a killed run (call it holding the output's lock).

    Args:
        final: an output path; its temporaries are ``.<stem>.<tag>-<random><suffix>``.

    Returns:
        The paths removed.
    """
    final = Path(final)
    probe = temporary_name(final, "X")
    head, tail = probe.name.split(".X-", 1)
    suffix = tail[10:]
    found = sorted(final.parent.glob(f"{head}.*-*{suffix}"))
    for p in found:
        _remove(p)
    return found


def write_failure(exc: BaseException, final: str | os.PathLike[str]) -> BaseException:
    """Turn an exception raised while writing ``final`` into a named :class:`OutputError` when it is
    a write failure (disk full, file too large, a GDAL write error); other exceptions are returned
    unchanged.

    Args:
        exc: the exception raised inside the write.
        final: the output being written.

    Returns:
        An :class:`OutputError` (chained to ``exc``) or ``exc`` itself.
    """
    if isinstance(exc, NimbusError) or not isinstance(exc, Exception):
        return exc
    root = root_cause(exc)
    text = f"{exc} {root}".lower()
    if (isinstance(root, OSError) and root.errno in _DISK_ERRNOS) or any(w in text for w in _DISK_WORDS):
        err = OutputError(f"could not write {final}: {explain(exc)} (is the disk full?)")
        err.__cause__ = exc
        return err
    return exc


@contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration of the block, then deliver them.

    Only in the main thread (elsewhere signals are not delivered to Python anyway).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, Any]] = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, lambda s, f: pending.append((s, f)))
        except (ValueError, OSError):  # pragma: no cover - not the main interpreter
            pass
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig, _ in pending[:1]:
            if sig == signal.SIGINT:
                raise KeyboardInterrupt
            os.kill(os.getpid(), sig)


def _replace(tmp: Path, final: Path) -> None:
    if final.is_dir() and not final.is_symlink() and tmp.is_dir():
        old = temporary_name(final, "old")
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def _check(tmp: Path, final: Path, validate: Validator | str | None) -> None:
    if validate is None:
        return
    if validate == "auto":
        from nimbus.validate import validate_path

        validate = validate_path
    try:
        validate(tmp)  # type: ignore[operator]
    except OutputError as exc:
        raise OutputError(f"{final} was not committed: {exc}") from exc


@contextmanager
def atomic_path(final: str | os.PathLike[str], validate: Validator | str | None = "auto") -> Iterator[Path]:
    """Yield a temporary path next to ``final``; validate it and rename it onto ``final`` when the block succeeds.

    The temporary name keeps ``final``'s suffix (so drivers that look at the extension, such as
    GDAL's, pick the right format) and lives in the same folder (so the rename is atomic). The
    caller may create a file or a folder at the temporary path. On success the result is validated
    and replaces ``final`` (an existing folder at ``final`` is removed first); on any exception, or
    when validation fails, the temporary path is removed and the error propagates (write failures
    such as a full disk as :class:`OutputError` naming ``final``). The parent folder is created
    when missing.

    Args:
        final: the path the output must finally have.
        validate: ``"auto"`` (by suffix, :func:`nimbus.validate.validate_path`), a function that
            raises :class:`OutputError` on a bad file, or None (no check).

    Yields:
        The temporary path to write to (nothing exists there yet).

    Raises:
        OutputError: when writing failed for lack of space or the result does not validate.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(final)
    try:
        yield tmp
    except BaseException as exc:
        _remove(tmp)
        err = write_failure(exc, final)
        if err is exc:
            raise
        raise err from exc
    if not tmp.exists():
        return
    try:
        _check(tmp, final, validate)
        with deferred_interrupts():
            _replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


class AtomicGroup:
    """Several outputs committed together: all validated, then renamed in the order they were added.

    Add the output whose presence means "done" (a class map) last. If the block fails, or any
    output does not validate, no output is renamed and every temporary file is removed.

    Example:
        >>> with AtomicGroup() as group:                           # doctest: +SKIP
        ...     write(group.path("out/x_probabilities.tif"))
        ...     write(group.path("out/x_classes.tif"))             # renamed last
    """

    def __init__(self) -> None:
        self._items: list[tuple[Path, Path, Validator | str | None]] = []
        self._last: list[tuple[Path, Path, Validator | str | None]] = []

    def path(self, final: str | os.PathLike[str], validate: Validator | str | None = "auto", last: bool = False) -> Path:
        """Register an output and return the temporary path to write it to.

        Args:
            final: the output's final path.
            validate: as in :func:`atomic_path`.
            last: rename it after every output without ``last`` (the "done" marker).
        """
        final = Path(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(final)
        (self._last if last else self._items).append((final, tmp, validate))
        return tmp

    def temporary(self, final: str | os.PathLike[str]) -> Path:
        """The temporary path registered for ``final`` (to read an output before the commit)."""
        for f, tmp, _ in self._items + self._last:
            if f == Path(final):
                return tmp
        raise KeyError(str(final))

    def abort(self) -> None:
        """Remove every temporary file."""
        for _, tmp, _ in self._items + self._last:
            _remove(tmp)

    def commit(self) -> None:
        """Validate every output, then rename them all (SIGINT held until the last rename).

        Raises:
            OutputError: when an output is missing or does not validate; nothing is renamed then.
        """
        items = self._items + self._last
        try:
            for final, tmp, validate in items:
                if not tmp.exists():
                    raise OutputError(f"{final} was not written")
                _check(tmp, final, validate)
            with deferred_interrupts():
                for final, tmp, _ in items:
                    _replace(tmp, final)
        except BaseException:
            self.abort()
            raise

    def __enter__(self) -> AtomicGroup:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
            return
        self.commit()
