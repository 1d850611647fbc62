"""A loopback HTTP server for the remote-read tests (a helper module, not a test).

A threaded ``http.server`` bound to 127.0.0.1 on a free port that serves folders, in-memory files and
handler functions, answers ``Range: bytes=`` requests (206 + ``Content-Range``), keeps a request log
(method, path, range, status, body bytes sent) and injects faults on request: HTTP 500s, dropped
connections (headers sent, body cut short, socket closed), resets (closed before any reply) and 404s.

Example:
    >>> with LoopbackServer() as srv:                                   # doctest: +SKIP
    ...     srv.add_dir("/cogs", folder)
    ...     srv.fault("B04.tif", "500", times=2)
    ...     url = srv.url + "/cogs/B04.tif"
"""

from __future__ import annotations

import fnmatch
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Fault", "LoopbackServer", "Request"]

Handler = Callable[[str, str, bytes], tuple[int, dict[str, str], bytes]]
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Request:
    """One request the server answered (or dropped)."""

    method: str
    path: str
    query: str
    range: str | None
    status: int
    sent: int


@dataclass
class Fault:
    """A fault for paths matching ``pattern`` (fnmatch on the path, or a substring): kind 500|drop|reset|404."""

    pattern: str
    kind: str
    times: int | None

    def matches(self, path: str) -> bool:
        return self.pattern in path or fnmatch.fnmatch(path, self.pattern)


class LoopbackServer:
    """Serve files, folders and handlers on ``http://127.0.0.1:<free port>`` (use as a context manager)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes | Path, str]] = {}
        self._dirs: list[tuple[str, Path]] = []
        self._handlers: dict[str, Handler] = {}
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.log: list[Request] = []
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                server._answer(self, head=True)

            def do_GET(self) -> None:  # noqa: N802
                server._answer(self, head=False)

            def do_POST(self) -> None:  # noqa: N802
                server._answer(self, head=False)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="loopback-http", daemon=True)

    # ------------------------------------------------------------------ content

    def add_file(self, path: str, data: bytes | Path, content_type: str = "application/octet-stream") -> str:
        """Serve ``data`` (bytes or a file) at ``path``; returns its URL."""
        self._files["/" + path.lstrip("/")] = (data, content_type)
        return self.url + "/" + path.lstrip("/")

    def add_dir(self, prefix: str, folder: Path) -> str:
        """Serve the files of ``folder`` under ``prefix``; returns the URL of the prefix."""
        self._dirs.append(("/" + prefix.strip("/"), Path(folder)))
        return self.url + "/" + prefix.strip("/")

    def add_handler(self, path: str, fn: Handler) -> str:
        """``fn(method, query, body) -> (status, headers, body)`` answers ``path``; returns its URL."""
        self._handlers["/" + path.lstrip("/")] = fn
        return self.url + "/" + path.lstrip("/")

    def fault(self, pattern: str, kind: str, times: int | None = 1) -> None:
        """The next ``times`` requests (None: all) of paths matching ``pattern`` fail with ``kind``."""
        if kind not in ("500", "drop", "reset", "404"):
            raise ValueError(kind)
        with self._lock:
            self._faults.append(Fault(pattern, kind, times))

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()

    # ------------------------------------------------------------------ log

    def reset_log(self) -> None:
        """Forget the requests so far."""
        with self._lock:
            self.log.clear()

    def requests(self, pattern: str = "") -> list[Request]:
        """The logged requests whose path contains ``pattern``."""
        with self._lock:
            return [r for r in self.log if pattern in r.path]

    def bytes_sent(self, pattern: str = "") -> int:
        """Body bytes sent for paths containing ``pattern``."""
        return sum(r.sent for r in self.requests(pattern))

    # ------------------------------------------------------------------ lifetime

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # ------------------------------------------------------------------ serving

    def _lookup(self, path: str) -> tuple[bytes | Path, str] | None:
        if path in self._files:
            return self._files[path]
        for prefix, folder in self._dirs:
            if path.startswith(prefix + "/"):
                f = (folder / path[len(prefix) + 1 :]).resolve()
                if f.is_file() and folder.resolve() in f.parents:
                    ctype = "image/tiff" if f.suffix.lower() in (".tif", ".tiff") else "application/json" if f.suffix == ".json" else "application/octet-stream"
                    return f, ctype
        return None

    def _take_fault(self, path: str) -> str | None:
        with self._lock:
            for f in self._faults:
                if f.matches(path) and (f.times is None or f.times > 0):
                    if f.times is not None:
                        f.times -= 1
                    return f.kind
        return None

    def _record(self, h: BaseHTTPRequestHandler, path: str, query: str, status: int, sent: int) -> None:
        with self._lock:
            self.log.append(Request(h.command, path, query, h.headers.get("Range"), status, sent))

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler) -> None:
        """Cut the connection (a reset, or a transfer cut short)."""
        h.close_connection = True
        try:
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes, head: bool, path: str, query: str) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head:
            h.wfile.write(body)
        self._record(h, path, query, status, 0 if head else len(body))

    def _answer(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        parts = urlsplit(h.path)
        path, query = parts.path, parts.query
        length = int(h.headers.get("Content-Length") or 0)
        body_in = h.rfile.read(length) if length else b""
        kind = self._take_fault(path)
        if kind == "reset":
            self._record(h, path, query, 0, 0)
            self._drop(h)
            return
        if kind in ("500", "404"):
            self._send(h, int(kind), {"Content-Type": "text/plain"}, f"fault {kind}".encode(), head, path, query)
            return
        if path in self._handlers:
            status, headers, body = self._handlers[path](h.command, query, body_in)
            self._send(h, status, headers, body, head, path, query)
            return
        found = self._lookup(path)
        if found is None:
            self._send(h, 404, {"Content-Type": "text/plain"}, b"not found", head, path, query)
            return
        data, ctype = found
        blob = data.read_bytes() if isinstance(data, Path) else data
        size = len(blob)
        rng = h.headers.get("Range")
        status, start, end = 200, 0, size - 1
        headers = {"Content-Type": ctype, "Accept-Ranges": "bytes"}
        if rng:
            m = _RANGE_RE.match(rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self._send(h, 416, {"Content-Range": f"bytes */{size}"}, b"", head, path, query)
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:
                start, end = max(0, size - int(m.group(2))), size - 1
            if start >= size:
                self._send(h, 416, {"Content-Range": f"bytes */{size}"}, b"", head, path, query)
                return
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        body = blob[start : end + 1]
        if kind == "drop":
            # promise the whole body, send a part, close: the client sees a truncated transfer
            h.send_response(status)
            for k, v in headers.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            part = body[: max(1, len(body) // 3)] if not head else b""
            h.wfile.write(part)
            h.wfile.flush()
            self._record(h, path, query, -status, len(part))
            self._drop(h)
            return
        self._send(h, status, headers, body, head, path, query)
