"""The one compatibility step between a CPU build of PyTorch and PyPI's CUDA torchvision.

segmentation-models-pytorch and timm import torchvision. The only torchvision matching
torch 2.13.0 on PyPI is a CUDA build, whose ``torchvision._meta_registrations`` registers fake
kernels for compiled ops (``torchvision::nms``, ...) that a CPU torch never loaded, so
``import torchvision`` fails with ``operator torchvision::nms does not exist``. We need none of those
detection ops, so when (and only when) that failure happens we pre-register an empty
``torchvision._meta_registrations`` module and import again.
"""

from __future__ import annotations

import sys
import types

__all__ = ["ensure_torchvision"]


def ensure_torchvision() -> None:
    """Import torchvision, applying the CPU-torch workaround only if the plain import fails."""
    if "torchvision" in sys.modules:
        return
    try:
        import torchvision  # noqa: F401
    except RuntimeError as exc:  # pragma: no cover - depends on the installed wheels
        if "torchvision::" not in str(exc):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
        import torchvision  # noqa: F401,F811
