"""Where the model files that ship with Nimbus are: :func:`default_model_path`, :func:`resolve_model`.

Shipped models have short names (:data:`SHIPPED_MODELS`): ``default`` (the trained demonstration
model) and ``rules`` (the spectral rule classifier of :mod:`nimbus.rules`, ``nimbus-rules.onnx``),
so ``nimbus segment --model rules`` works; anything else is a path to a model file.

The default model (``nimbus-default.onnx`` and its card ``nimbus-default.md``) lives in the
``export/`` folder of the source tree, installed as the package data of ``nimbus.export``. It is
located without importing ``nimbus.export`` (whose modules need torch): the deployment path stays
torch-free. ``$NIMBUS_DEFAULT_MODEL`` overrides the location.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from nimbus.errors import ModelError

__all__ = [
    "DEFAULT_MODEL_ENV",
    "DEFAULT_MODEL_NAME",
    "RULES_MODEL_NAME",
    "SHIPPED_MODELS",
    "default_model_card",
    "default_model_path",
    "resolve_model",
    "shipped_models_dir",
]

#: File name of the built-in default model.
DEFAULT_MODEL_NAME: str = "nimbus-default.onnx"

#: Environment variable that points at another default model file.
DEFAULT_MODEL_ENV: str = "NIMBUS_DEFAULT_MODEL"

#: File name of the shipped spectral-rules model (``export/rules_onnx.py`` writes it).
RULES_MODEL_NAME: str = "nimbus-rules.onnx"

#: Short model names -> file names in :func:`shipped_models_dir` (``default`` also honours ``$NIMBUS_DEFAULT_MODEL``).
SHIPPED_MODELS: dict[str, str] = {"default": DEFAULT_MODEL_NAME, "rules": RULES_MODEL_NAME}


def shipped_models_dir() -> Path:
    """The folder holding the shipped model files (the ``nimbus.export`` package data).

    Returns:
        The folder (``<source tree>/export`` in a development install).
    """
    try:
        spec = importlib.util.find_spec("nimbus.export")  # locates the package without running it
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "export"


def default_model_path() -> Path:
    """The default model file used by ``nimbus segment`` and ``nimbus demo`` when no model is given.

    Returns:
        ``$NIMBUS_DEFAULT_MODEL`` when set, else ``nimbus-default.onnx`` from :func:`shipped_models_dir`.

    Raises:
        ModelError: when the file is missing (pass ``--model MODEL.onnx`` or reinstall nimbus).
    """
    override = os.environ.get(DEFAULT_MODEL_ENV)
    path = Path(override) if override else shipped_models_dir() / DEFAULT_MODEL_NAME
    if not path.is_file():
        where = f"${DEFAULT_MODEL_ENV}={override}" if override else str(path)
        raise ModelError(
            f"default model not found at {where}; pass --model MODEL.onnx, or rebuild it with export/train_default.py"
        )
    return path


def default_model_card() -> Path:
    """The model card (``.md``) beside the default model.

    Returns:
        The card's path (it may be missing when ``$NIMBUS_DEFAULT_MODEL`` points elsewhere).

    Raises:
        ModelError: when the default model itself is missing.
    """
    return default_model_path().with_suffix(".md")


def resolve_model(name_or_path: str | os.PathLike[str] | None = None) -> Path:
    """The model file for a short name (:data:`SHIPPED_MODELS`) or a path.

    Args:
        name_or_path: ``"default"`` (or None): :func:`default_model_path`; ``"rules"``: the shipped
            spectral-rules model; anything else (including any name with a suffix, e.g.
            ``rules.onnx``) is a model file path.

    Returns:
        The path of an existing model file.

    Raises:
        ModelError: when the shipped file is missing, or the path names no file (the message lists
            the known short names).
    """
    if name_or_path is None:
        return default_model_path()
    text = os.fspath(name_or_path)
    key = text.strip().lower()
    if key in SHIPPED_MODELS and not Path(text).suffix:
        if key == "default":
            return default_model_path()
        path = shipped_models_dir() / SHIPPED_MODELS[key]
        if not path.is_file():
            raise ModelError(
                f"shipped model {key!r} not found at {path}; rebuild it with `python export/rules_onnx.py` or reinstall nimbus"
            )
        return path
    path = Path(text).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(SHIPPED_MODELS))
        raise ModelError(f"model {text} not found: give a model file (.onnx) or one of the shipped names: {known}")
    return path
