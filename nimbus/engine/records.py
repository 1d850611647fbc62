"""Per-product records of a run and the run report (JSON Lines), written as results arrive.

A :class:`ProductRecord` is what became of one product: ``done``, ``skipped`` (its outputs exist
and validate) or ``failed`` (with the error in one line and whether it is transient, i.e. worth
retrying elsewhere). :class:`RunReport` appends one JSON object per record to a ``.jsonl`` file and
flushes it, so a report survives a killed run line by line; :func:`read_report` reads it back.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from nimbus.errors import explain

__all__ = ["ProductRecord", "RunReport", "Status", "is_transient", "read_report"]

Status = Literal["done", "skipped", "failed"]

#: errno values of I/O that may well succeed on a second try (network, NFS, object stores).
_TRANSIENT_ERRNO = {errno.EIO, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EHOSTUNREACH,
                    errno.ENETUNREACH, errno.EAGAIN, errno.ESTALE}  # fmt: skip
_TRANSIENT_WORDS = ("timed out", "timeout", "connection reset", "connection refused", "temporarily unavailable",
                    "http response code: 5", "http error 5", "broken pipe", "remote end closed")  # fmt: skip


def is_transient(exc: BaseException) -> bool:
    """Whether a failure may pass on a second try: network and I/O trouble, not a bad product or model.

    Deterministic failures (a truncated file, a missing band, a model that does not fit, a full
    disk) are never retried: they would fail the same way on every worker.
    """
    from nimbus.errors import AuxiliaryFetchError, ModelError, OutputError, ProductError, RemoteReadError

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if getattr(e, "transient", None) is not None:
            return bool(e.transient)
        if isinstance(e, (RemoteReadError, AuxiliaryFetchError)):  # a server that answered 4xx will answer it again
            return e.status is None or e.status >= 500 or e.status in (408, 429)
        if isinstance(e, (ModelError, ProductError, OutputError)) and e.__cause__ is None:
            return False
        if isinstance(e, (ConnectionError, TimeoutError, socket.timeout)):
            return True
        if isinstance(e, OSError) and e.errno in _TRANSIENT_ERRNO:
            return True
        if any(w in str(e).lower() for w in _TRANSIENT_WORDS):
            return True
        e = e.__cause__ or e.__context__
    return False


@dataclass
class ProductRecord:
    """What became of one product in a run.

    Attributes:
        product: the product reference as given (path, URL).
        status: ``"done"``, ``"skipped"`` or ``"failed"``.
        seconds: wall time spent on it (0 for a skip decided without work).
        outputs: output kind -> path (class map first).
        error: the failure in one line (message and root cause), for a failed product.
        transient: whether the failure looked transient (network / I/O).
        product_id: the product identifier, when the product could be opened.
        windows: windows run through the model.
        worker: where it ran (``host:pid``, or a Dask worker address).
        finished: UNIX time the record was made.
        traceback: the failure's full traceback down to its root cause (``--debug`` prints it).
        model: the model's file tag (``<name>-v<version>``) of a product that was segmented.
    """

    product: str
    status: Status
    seconds: float = 0.0
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    transient: bool = False
    product_id: str | None = None
    windows: int = 0
    worker: str = ""
    finished: float = field(default_factory=time.time)
    traceback: str | None = None
    model: str = ""

    @classmethod
    def failure(cls, product: str, exc: BaseException, seconds: float = 0.0, worker: str = "") -> ProductRecord:
        """The record of a product whose work raised ``exc``."""
        import traceback

        tb = "".join(traceback.format_exception(exc))
        return cls(str(product), "failed", seconds, error=explain(exc), transient=is_transient(exc), worker=worker, traceback=tb)

    def line(self) -> str:
        """One human line: the class map and counts, the skip, or the error."""
        classes = self.outputs.get("classes", "")
        if self.status == "failed":
            return self.error or "failed"
        if self.status == "skipped":
            return f"skipped (exists, use --overwrite): {classes}"
        return f"{classes}  ({self.windows} windows, {self.seconds:.1f} s)"

    def to_json(self) -> str:
        """The record as one JSON line."""
        return json.dumps(asdict(self), sort_keys=True)


class RunReport:
    """Appends records to a JSON Lines file as they arrive (flushed and fsynced line by line).

    Args:
        path: the ``.jsonl`` file (its folder is made); None: no file, records are only counted.
        run: an identifier written into every line (default: time and pid).
    """

    def __init__(self, path: str | os.PathLike[str] | None, run: str | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.run = run or f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        self.counts: dict[str, int] = {"done": 0, "skipped": 0, "failed": 0}
        self._f: IO[str] | None = None
        self.broken = False

    def add(self, record: ProductRecord) -> None:
        """Count a record and append it to the file.

        A report that cannot be written (a full disk, a read-only folder) is a warning naming the
        file, once; the run goes on and its results are still printed.
        """
        self.counts[record.status] = self.counts.get(record.status, 0) + 1
        if self.path is None or self.broken:
            return
        data = json.loads(record.to_json())
        data["run"] = self.run
        try:
            if self._f is None:  # made with the first record: a run that never started leaves no file
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._f = open(self.path, "a", encoding="utf-8")
            self._f.write(json.dumps(data, sort_keys=True) + "\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as exc:
            import warnings

            from nimbus.errors import NimbusWarning

            self.broken = True
            warnings.warn(f"run report {self.path} cannot be written ({exc}); the results are still printed", NimbusWarning, stacklevel=2)

    def close(self) -> None:
        """Close the file."""
        if self._f is not None:
            try:
                self._f.close()
            except OSError:  # the buffer could not be flushed: already reported by add()
                pass
            self._f = None

    def __enter__(self) -> RunReport:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_report(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a report file (a last line cut by a killed run is left out)."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out
