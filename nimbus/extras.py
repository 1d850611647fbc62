"""Optional dependencies (pip extras): import them or say, in one line, how to install them.

``pip install nimbus-s2`` installs the deployment path only (numpy, onnxruntime, rasterio, numba,
fire, tqdm, pillow). What only some commands need lives in extras (see ``setup.py``):

========== ======================== ==============================================
extra      modules                  needed by
========== ======================== ==============================================
labels     s2cloudless              ``nimbus labels --s2cloudless``
label      flask                    ``nimbus label`` (the labelling web tool)
xarray     xarray, rioxarray, dask  :func:`nimbus.segment_xarray`
stac       pystac, pystac_client    ``nimbus search`` against a STAC API
dask       distributed              ``--scheduler`` / ``--workers`` batches
train      torch, smp, onnx         ``nimbus train``, ``nimbus export``, ``nimbus uncertain``
========== ======================== ==============================================

Example:
    >>> from nimbus.extras import require
    >>> np = require("labels", "numpy")  # any importable module comes back as is
"""

from __future__ import annotations

import importlib
from types import ModuleType

from nimbus.errors import NimbusError

__all__ = ["EXTRAS", "MissingExtraError", "install_hint", "require"]

#: Extra name -> what it is for (the hint's second half).
EXTRAS: dict[str, str] = {
    "dask": "batches on Dask distributed (--scheduler / --workers)",
    "label": "the labelling web tool (nimbus label)",
    "labels": "local S2cloudless cloud probabilities (nimbus labels --s2cloudless)",
    "stac": "STAC API search (nimbus search)",
    "train": "training, export and sample selection (torch)",
    "xarray": "the xarray API (nimbus.segment_xarray)",
}


class MissingExtraError(NimbusError, ImportError):
    """A command needs an optional dependency that is not installed (the message says which extra)."""


def install_hint(extra: str) -> str:
    """The pip command that installs an extra, e.g. ``pip install -c constraints.txt "nimbus-s2[labels]"``."""
    return f'pip install -c constraints.txt "nimbus-s2[{extra}]"  (from a checkout: pip install -c constraints.txt ".[{extra}]")'


def require(extra: str, module: str) -> ModuleType:
    """Import ``module``, or fail with one line naming the extra that provides it.

    Args:
        extra: the pip extra that installs the module (a key of :data:`EXTRAS`).
        module: the module to import (``"s2cloudless"``, ``"flask"``, ``"xarray"``...).

    Returns:
        The imported module.

    Raises:
        MissingExtraError: when the module (or one it needs) cannot be imported.
        ValueError: when ``extra`` is not a Nimbus extra (a programming error).
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(sorted(EXTRAS))}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        raise MissingExtraError(
            f"{module} is not installed (missing module {missing!r}), needed for {EXTRAS[extra]}: {install_hint(extra)}"
        ) from exc
