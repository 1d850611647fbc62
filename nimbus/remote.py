"""Remote reads: GDAL's ``/vsicurl/`` and ``/vsis3/`` with the settings cloud-COG readers use, in one place.

Every remote band file is opened and read inside :func:`remote_env` (a ``rasterio.Env``, entered
in the thread that does the GDAL call, so parallel band reads in worker threads get the same
settings). The defaults:

- ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR``: no directory listing (no ``.aux.xml``/``.ovr`` probing);
- ``CPL_VSIL_CURL_ALLOWED_EXTENSIONS``: only raster/metadata suffixes are fetched;
- ``GDAL_HTTP_MAX_RETRY`` / ``GDAL_HTTP_RETRY_DELAY``: 5 retries with exponential back-off on 429/5xx
  and dropped connections;
- ``VSI_CACHE`` (per-file cache) and ``CPL_VSIL_CURL_CACHE_SIZE`` (the shared cache of fetched blocks);
- ``GDAL_HTTP_MERGE_CONSECUTIVE_RANGES`` so adjacent tiles come in one request.

A variable already set in the process environment wins over the default (so ``GDAL_HTTP_MAX_RETRY=0``
in the shell is honoured). ``s3://`` hrefs read without signing (``AWS_NO_SIGN_REQUEST=YES``) unless AWS
credentials are in the environment (CDSE: ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_S3_ENDPOINT=eodata.dataspace.copernicus.eu``, ``AWS_VIRTUAL_HOSTING=FALSE``).

JSON documents (STAC items, catalogues) are fetched by :func:`fetch_bytes` with the same retry rule.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from nimbus.errors import RemoteReadError

__all__ = [
    "REMOTE_OPTIONS",
    "RemoteReadError",
    "fetch_bytes",
    "gdal_error",
    "gdal_path",
    "http_status",
    "is_remote",
    "read_threads",
    "remote_env",
    "retry_delays",
]

#: GDAL configuration used for every remote read (process environment variables override these).
REMOTE_OPTIONS: dict[str, str] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF,.jp2,.JP2,.xml,.json,.vrt",
    "GDAL_HTTP_MAX_RETRY": "5",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_HTTP_TIMEOUT": "60",
    "GDAL_HTTP_CONNECTTIMEOUT": "15",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": "32768",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": str(64 * 1024 * 1024),
    "CPL_VSIL_CURL_CACHE_SIZE": str(256 * 1024 * 1024),
}

_SCHEMES = ("http://", "https://", "s3://", "gs://", "/vsicurl/", "/vsis3/", "/vsigs/", "/vsiaz/")
_RETRY_STATUS = {429, 500, 502, 503, 504}
_HTTP_CODE_RE = re.compile(r"HTTP (?:response )?(?:code|error)[: ]*(\d{3})", re.IGNORECASE)


def is_remote(ref: Any) -> bool:
    """Whether ``ref`` names a file on a server (http(s), s3, gs, or a GDAL ``/vsi*`` network path)."""
    return isinstance(ref, str) and ref.startswith(_SCHEMES)


def gdal_path(href: str) -> str:
    """The GDAL path of an href: ``/vsicurl/`` for http(s), ``/vsis3/`` for s3, ``/vsigs/`` for gs.

    Args:
        href: a URL, a ``file://`` URL, a GDAL path or a local path.

    Returns:
        The path to hand to ``rasterio.open``.
    """
    if href.startswith(("http://", "https://")):
        return "/vsicurl/" + href
    if href.startswith("s3://"):
        return "/vsis3/" + href[5:]
    if href.startswith("gs://"):
        return "/vsigs/" + href[5:]
    if href.startswith("file://"):
        return urllib.request.url2pathname(href[7:])
    return href


def _options(overrides: dict[str, str]) -> dict[str, str]:
    opts = {k: v for k, v in REMOTE_OPTIONS.items() if k not in os.environ}
    if not (os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE") or "AWS_NO_SIGN_REQUEST" in os.environ):
        opts["AWS_NO_SIGN_REQUEST"] = "YES"
    opts.update(overrides)
    return opts


@contextlib.contextmanager
def remote_env(**overrides: str) -> Iterator[None]:
    """The GDAL settings of remote reads, for the calling thread.

    Args:
        **overrides: GDAL configuration options that replace the defaults for this block.

    Yields:
        Nothing; GDAL calls in the block (in this thread) use the settings.
    """
    import rasterio

    with rasterio.Env(**_options(overrides)):
        yield


def read_threads() -> int:
    """How many band files are read at once from a server (``NIMBUS_READ_THREADS``, default 8)."""
    try:
        return max(1, int(os.environ.get("NIMBUS_READ_THREADS", "8")))
    except ValueError:
        return 8


def retry_delays() -> list[float]:
    """Back-off before each retry of a remote read: ``GDAL_HTTP_RETRY_DELAY`` doubled, ``GDAL_HTTP_MAX_RETRY`` times."""
    try:
        n = int(os.environ.get("GDAL_HTTP_MAX_RETRY", REMOTE_OPTIONS["GDAL_HTTP_MAX_RETRY"]))
        d = float(os.environ.get("GDAL_HTTP_RETRY_DELAY", REMOTE_OPTIONS["GDAL_HTTP_RETRY_DELAY"]))
    except ValueError:
        n, d = 5, 0.5
    return [d * 2**i for i in range(max(0, n))]


def http_status(exc: BaseException) -> int | None:
    """The HTTP status code a GDAL (or urllib) error carries, if any."""
    if isinstance(exc, urllib.error.HTTPError):
        return int(exc.code)
    m = _HTTP_CODE_RE.search(str(exc))
    return int(m.group(1)) if m else None


def gdal_error(url: str, what: str, exc: BaseException) -> RemoteReadError:
    """A :class:`RemoteReadError` naming ``url`` for a failed GDAL open/read of a remote file.

    Args:
        url: the href (not the ``/vsicurl/`` path).
        what: what was being read ("band B04").
        exc: the error GDAL raised.

    Returns:
        The error to raise (404/403 say so; anything else keeps GDAL's message).
    """
    from nimbus.errors import explain

    code = http_status(exc)
    if code == 404:
        return RemoteReadError(f"{url}: {what} not found on the server (HTTP 404); the item's href is stale or wrong", url, 404)
    if code in (401, 403):
        return RemoteReadError(
            f"{url}: {what} refused (HTTP {code}); the server needs credentials or a signed URL "
            "(Planetary Computer: pip install 'nimbus-s2[stac]' planetary-computer; CDSE: AWS_* variables)",
            url,
            code,
        )
    return RemoteReadError(f"{url}: {what} cannot be read from the server ({explain(exc)})", url, code)


def fetch_bytes(url: str, retries: int | None = None, delay: float | None = None, timeout: float = 30.0) -> bytes:
    """GET a (small) document over HTTP(S), retrying 429/5xx and dropped connections with back-off.

    Args:
        url: an http(s) URL (``s3://`` is refused: read such items through a mirror or GDAL).
        retries: attempts after the first (default ``GDAL_HTTP_MAX_RETRY`` or 5).
        delay: first back-off in seconds, doubled each retry (default ``GDAL_HTTP_RETRY_DELAY`` or 0.5).
        timeout: seconds per attempt.

    Returns:
        The body.

    Raises:
        RemoteReadError: 4xx, or still failing after the retries; names the URL.
    """
    if not url.startswith(("http://", "https://")):
        raise RemoteReadError(f"{url}: only http(s) URLs can be fetched directly", url)
    retries = int(os.environ.get("GDAL_HTTP_MAX_RETRY", REMOTE_OPTIONS["GDAL_HTTP_MAX_RETRY"])) if retries is None else retries
    delay = float(os.environ.get("GDAL_HTTP_RETRY_DELAY", REMOTE_OPTIONS["GDAL_HTTP_RETRY_DELAY"])) if delay is None else delay
    last: BaseException | None = None
    for attempt in range(retries + 1):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "nimbus", "Accept": "application/json, */*"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only, checked above
                return resp.read()
        except urllib.error.HTTPError as exc:
            last = exc
            if exc.code not in _RETRY_STATUS:
                raise gdal_error(url, "document", exc) from exc
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError, OSError) as exc:
            last = exc
        if attempt < retries:
            time.sleep(delay * (2**attempt))
    assert last is not None
    raise RemoteReadError(f"{url}: cannot be fetched after {retries + 1} attempts ({last})", url, http_status(last)) from last
