"""Nimbus: semantic segmentation of Sentinel-2 images into cloud, ground, snow and water.

The deployment path (product reading, resampling, onnxruntime inference, blending, writing) needs
only numpy, onnxruntime, rasterio and numba; ``import nimbus`` never imports torch. The training
side lives in :mod:`nimbus.train` (extra ``[train]``).
"""

from __future__ import annotations

from nimbus.errors import (
    AuxiliaryDataError,
    CorruptArchiveError,
    MetadataError,
    MissingBandError,
    ModelError,
    NimbusError,
    NotAProductError,
    ProductError,
)

__version__ = "0.1.0"

__all__ = [
    "AuxiliaryDataError",
    "CorruptArchiveError",
    "MetadataError",
    "MissingBandError",
    "ModelError",
    "NimbusError",
    "NotAProductError",
    "ProductError",
    "__version__",
]
