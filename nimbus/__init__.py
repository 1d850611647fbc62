"""Nimbus: semantic segmentation of Sentinel-2 images into cloud, ground, snow and water.

The deployment path (product reading, resampling, onnxruntime inference, blending, writing) needs
only numpy, onnxruntime, rasterio and numba; ``import nimbus`` never imports torch. The training
side lives in :mod:`nimbus.train` (extra ``[train]``). Entry points: :func:`nimbus.product.open_product`,
:class:`nimbus.segmenter.Segmenter`, :class:`nimbus.modelspec.ModelSpec`, :func:`segment_xarray`
(xarray in, xarray out; extra ``[xarray]``, imported on first use) and the ``nimbus`` command.
"""

from __future__ import annotations

from typing import Any

from nimbus.errors import (
    AuxiliaryDataError,
    CorruptArchiveError,
    EvaluationError,
    ExtractError,
    LabelError,
    MetadataError,
    MissingBandError,
    ModelError,
    NimbusError,
    NimbusWarning,
    NotAProductError,
    OutputError,
    ProductError,
    ResampleError,
    TrainingError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "AuxiliaryDataError",
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
    "ResampleError",
    "TrainingError",
    "UsageError",
    "__version__",
    "segment_xarray",
]


def __getattr__(name: str) -> Any:
    """Lazy attributes: ``nimbus.segment_xarray`` imports :mod:`nimbus.dataarray` (not xarray) on first use."""
    if name == "segment_xarray":
        from nimbus.dataarray import segment_xarray

        return segment_xarray
    raise AttributeError(f"module 'nimbus' has no attribute {name!r}")
