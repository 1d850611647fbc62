"""The Nimbus exception hierarchy.

Every error a user can cause derives from :class:`NimbusError`. The CLI prints its message and
exits non-zero without a traceback (``--debug`` shows it). Messages name the file and say what to do.
"""

from __future__ import annotations

__all__ = [
    "AuxiliaryDataError",
    "CorruptArchiveError",
    "ExtractError",
    "LabelError",
    "MetadataError",
    "MissingBandError",
    "ModelError",
    "NimbusError",
    "NotAProductError",
    "ProductError",
    "ResampleError",
    "TrainingError",
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


class ModelError(NimbusError):
    """A model file is missing, unreadable, lacks metadata or asks for what cannot be provided."""


class AuxiliaryDataError(NimbusError):
    """An auxiliary layer (DEM, tree cover, water) is missing or does not cover the tile."""


class ExtractError(NimbusError):
    """A product archive cannot be extracted safely."""


class LabelError(NimbusError):
    """Label inputs are inconsistent (grid, values) or a hand label is malformed."""


class ResampleError(NimbusError, ValueError):
    """A resampling request is invalid (dtype, shape, factor, method or window)."""


class TrainingError(NimbusError):
    """Training or export configuration is invalid."""
