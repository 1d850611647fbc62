"""One writer per output: an ``O_EXCL`` lock file holding the owner's host and pid.

Two processes that segment the same product into the same folder would both do the whole work and
race on the renames. :class:`OutputLock` makes the second one wait (or give up) while the first
works; afterwards it finds the outputs complete and skips them. A lock whose owner process no
longer runs on this host (killed, machine rebooted) is stale and taken over. The owner refreshes
the lock file's time every ``heartbeat`` seconds while it holds it, so a lock of another host (a
cluster node that vanished, where no pid can be checked) is stale once it has not been refreshed
for ``stale_after`` seconds.

Example:
    >>> with OutputLock("maps/S2A_..._classes.tif"):          # doctest: +SKIP
    ...     segment(...)
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from nimbus.errors import OutputError

__all__ = ["LockBusyError", "OutputLock", "lock_owner"]


class LockBusyError(OutputError):
    """Another live process holds the lock and the wait ran out."""


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            state = f.read().rsplit(")", 1)[-1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return True


def lock_owner(path: str | os.PathLike[str]) -> dict | None:
    """The owner recorded in a lock file (``{"host", "pid", "since"}``), or None when unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) and isinstance(data.get("pid"), int) else None
    except (OSError, ValueError):
        return None


class OutputLock:
    """An exclusive lock on one output, as the file ``.<name>.lock`` beside it.

    Args:
        output: the output the lock protects (the lock file is ``.<output name>.lock``).
        wait: seconds to wait for another process (None: as long as it lives; 0: do not wait).
        poll: seconds between two looks at a busy lock.
        on_wait: called once as ``on_wait(owner)`` when the lock is busy and waiting starts.
        heartbeat: seconds between two refreshes of the lock file's time while it is held.
        stale_after: a lock of another host not refreshed for this long is stale.
    """

    def __init__(
        self,
        output: str | os.PathLike[str],
        wait: float | None = None,
        poll: float = 0.2,
        on_wait: Callable[[dict], None] | None = None,
        heartbeat: float = 30.0,
        stale_after: float = 180.0,
    ) -> None:
        output = Path(output)
        self.path = output.parent / f".{output.name}.lock"
        self.wait = wait
        self.poll = poll
        self.on_wait = on_wait
        self.held = False
        self.waited = False
        self.took_over = False
        self.heartbeat = float(heartbeat)
        self.stale_after = float(stale_after)
        self._beat: threading.Thread | None = None
        self._stop = threading.Event()

    def _stale(self) -> bool:
        owner = lock_owner(self.path)
        if owner is None:  # half-written by a process that died between create and write
            try:
                return time.time() - self.path.stat().st_mtime > 10.0
            except FileNotFoundError:
                return True
        if owner.get("host") == socket.gethostname():
            return not _alive(int(owner["pid"]))
        try:  # another host: its pid means nothing here, but a live owner keeps the file fresh
            return time.time() - self.path.stat().st_mtime > self.stale_after
        except FileNotFoundError:
            return True

    def _refresh(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                os.utime(self.path)
            except OSError:  # removed under us (taken over as stale): nothing to refresh
                return

    def acquire(self) -> OutputLock:
        """Take the lock, waiting for a live owner, taking over a stale one.

        Raises:
            LockBusyError: when ``wait`` runs out while another live process holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()})
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if self._stale():
                    self.took_over = True  # a dead owner: whatever it left half-written is ours to clear
                    try:  # whoever removes it first wins the next O_EXCL round
                        os.unlink(self.path)
                    except FileNotFoundError:
                        pass
                    continue
                if not self.waited:
                    self.waited = True
                    if self.on_wait is not None:
                        self.on_wait(lock_owner(self.path) or {})
                if self.wait is not None and time.monotonic() - start >= self.wait:
                    owner = lock_owner(self.path) or {}
                    raise LockBusyError(f"{self.path}: held by pid {owner.get('pid', '?')} on {owner.get('host', '?')}") from None
                time.sleep(self.poll)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(me)
            self.held = True
            self._stop.clear()
            self._beat = threading.Thread(target=self._refresh, name="nimbus-lock-heartbeat", daemon=True)
            self._beat.start()
            return self

    def release(self) -> None:
        """Remove the lock file (only when this object holds it)."""
        if self.held:
            self.held = False
            self._stop.set()
            if self._beat is not None:
                self._beat.join()
                self._beat = None
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
