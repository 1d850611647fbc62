"""The Nimbus exception hierarchy.

Every error a user can cause derives from :class:`NimbusError`. The CLI prints its message and
exits non-zero without a traceback (``--debug`` shows it). Messages name the file and say what to do.
"""

from __future__ import annotations

__all__ = [
    "AuxiliaryDataError",
    "AuxiliaryFetchError",
    "CorruptArchiveError",
    "EvaluationError",
    "ExtractError",
    "LabelError",
    "MetadataError",
    "MissingBandError",
    "ModelError",
    "NimbusError",
    "NimbusWarning",
    "NotAProductError",
    "OutputError",
    "ProductError",
    "RemoteReadError",
    "ResampleError",
    "TrainingError",
    "UsageError",
    "explain",
    "root_cause",
]


class NimbusError(Exception):
    """Base class of every error Nimbus raises on purpose."""


class ProductError(NimbusError):
    """A Sentinel-2 product cannot be opened or read."""


class NotAProductError(ProductError):
    """The path is not a Sentinel-2 product (SAFE folder, zipped SAFE or COG folder)."""


class CorruptArchiveError(ProductError):
    """A zipped product is corrupt or truncated."""


class MissingBandError(ProductError):
    """A band file the product should hold, or the caller asked for, is missing."""


class MetadataError(ProductError):
    """A product's metadata XML/JSON is missing or cannot be parsed."""


class RemoteReadError(ProductError):
    """A remote file (band COG, STAC item, catalogue) cannot be fetched: the message names the URL.

    Attributes:
        url: the URL that failed.
        status: the HTTP status, when the server answered (404, 403...).
    """

    def __init__(self, message: str, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class ModelError(NimbusError):
    """A model file is missing, unreadable, lacks metadata or asks for what cannot be provided."""


class AuxiliaryDataError(NimbusError):
    """An auxiliary layer (DEM, tree cover, water) is missing or does not cover the tile."""


class AuxiliaryFetchError(AuxiliaryDataError):
    """An auxiliary layer cannot be fetched from its public source or mirror (tile not found, server
    failing after the retries, a file that is not the expected raster): the message names the URL.

    Attributes:
        url: the URL (or mirror path) that failed.
        status: the HTTP status, when the server answered.
    """

    def __init__(self, message: str, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class EvaluationError(NimbusError):
    """A prediction or reference raster cannot be evaluated (unreadable, no overlap, wrong values)."""


class ExtractError(NimbusError):
    """A product archive cannot be extracted safely."""


class LabelError(NimbusError):
    """Label inputs are inconsistent (grid, values) or a hand label is malformed."""


class ResampleError(NimbusError, ValueError):
    """A resampling request is invalid (dtype, shape, factor, method or window)."""


class TrainingError(NimbusError):
    """Training or export configuration is invalid."""


class OutputError(NimbusError):
    """An output could not be written completely (disk full, write error) or does not validate."""


class UsageError(NimbusError):
    """A command-line option or argument is unknown, misspelt or out of range."""


class NimbusWarning(UserWarning):
    """Something that does not stop the work but would mislead a user if left unsaid."""


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (``raise ... from`` and implicit contexts).

    GDAL errors often reach Python as "Write failed. See previous exception for details." with the
    real reason (``TIFFAppendToStrip: Write error``, ``File too large``) only in the chain.

    Args:
        exc: the exception caught.

    Returns:
        The last exception of its ``__cause__`` / ``__context__`` chain (``exc`` itself when none).
    """
    seen = {id(exc)}
    while True:
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None or id(nxt) in seen:
            return exc
        seen.add(id(nxt))
        exc = nxt


def explain(exc: BaseException) -> str:
    """One line for a user: the message of ``exc`` and, when it differs, of its root cause.

    Args:
        exc: the exception caught.

    Returns:
        ``"<message>"`` or ``"<message> (cause: <Type>: <root message>)"``; exceptions outside
        Nimbus's own hierarchy carry their type name.
    """

    def text(e: BaseException) -> str:
        msg = " ".join(str(e).split()) or type(e).__name__
        return msg if isinstance(e, NimbusError) else f"{type(e).__name__}: {msg}"

    root = root_cause(exc)
    head = text(exc)
    if root is exc:
        return head
    tail = text(root)
    return head if tail in head else f"{head} (cause: {tail})"
