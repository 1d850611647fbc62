"""Output locks: one writer at a time, stale locks taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nimbus.lock import LockBusyError, OutputLock, lock_owner


def test_lock_file_names_its_owner_and_goes_away(tmp_path: Path) -> None:
    out = tmp_path / "x_classes.tif"
    with OutputLock(out) as lock:
        assert lock.path == tmp_path / ".x_classes.tif.lock"
        owner = lock_owner(lock.path)
        assert owner is not None and owner["pid"] == os.getpid() and owner["host"] == socket.gethostname()
    assert not lock.path.exists()


def test_a_live_owner_blocks_and_the_wait_can_run_out(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    seen: list[dict] = []
    with OutputLock(out):
        with pytest.raises(LockBusyError, match=str(os.getpid())):
            OutputLock(out, wait=0.3, poll=0.05, on_wait=seen.append).acquire()
    assert seen and seen[0]["pid"] == os.getpid()


def test_a_waiter_gets_the_lock_when_the_owner_releases_it(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    first = OutputLock(out).acquire()
    threading.Timer(0.3, first.release).start()
    t = time.monotonic()
    with OutputLock(out, wait=10, poll=0.05) as second:
        assert second.waited and time.monotonic() - t >= 0.25


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    dead = int(proc.stdout)
    lock_file = tmp_path / ".x.tif.lock"
    lock_file.write_text(json.dumps({"host": socket.gethostname(), "pid": dead, "since": 0}))
    with OutputLock(out, wait=0) as lock:
        assert lock_owner(lock.path)["pid"] == os.getpid()


def test_lock_of_another_host_is_respected(tmp_path: Path) -> None:
    out = tmp_path / "x.tif"
    (tmp_path / ".x.tif.lock").write_text(json.dumps({"host": "elsewhere.example", "pid": 1, "since": 0}))
    with pytest.raises(LockBusyError, match="elsewhere.example"):
        OutputLock(out, wait=0).acquire()


def test_lock_of_a_killed_unreaped_process_is_taken_over(tmp_path) -> None:
    """A killed process not yet reaped by its parent (a zombie, e.g. a Dask worker whose nanny has
    not collected it) holds no lock."""
    import json
    import signal
    import socket
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    out = tmp_path / "classes.tif"
    (tmp_path / ".classes.tif.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": child.pid, "since": 0}))
    child.send_signal(signal.SIGKILL)
    try:
        import time

        time.sleep(0.3)  # dead, not reaped: /proc still lists it as a zombie
        with OutputLock(out, wait=2.0) as lock:
            assert lock.held and not lock.waited
    finally:
        child.wait()


def test_lock_of_another_host_is_stale_only_when_not_refreshed(tmp_path: Path) -> None:
    """A cluster node that vanished cannot be asked about its pid: its lock is stale once its
    heartbeat stopped; a live owner elsewhere keeps it fresh."""
    import json

    out = tmp_path / "classes.tif"
    lock_file = tmp_path / ".classes.tif.lock"
    lock_file.write_text(json.dumps({"host": "node-that-vanished", "pid": 1, "since": 0}))
    os.utime(lock_file, (time.time() - 10, time.time() - 10))
    with pytest.raises(LockBusyError):  # refreshed 10 s ago: a live owner, we wait
        OutputLock(out, wait=0.3, stale_after=60.0).acquire()
    lock_file.write_text(json.dumps({"host": "node-that-vanished", "pid": 1, "since": 0}))
    os.utime(lock_file, (time.time() - 600, time.time() - 600))
    with OutputLock(out, wait=0.3, stale_after=60.0) as lock:
        assert lock.held and lock.took_over


def test_a_held_lock_is_kept_fresh(tmp_path: Path) -> None:
    out = tmp_path / "classes.tif"
    with OutputLock(out, heartbeat=0.05) as lock:
        os.utime(lock.path, (time.time() - 100, time.time() - 100))
        time.sleep(0.3)
        assert time.time() - lock.path.stat().st_mtime < 5
    assert not lock.path.exists()
