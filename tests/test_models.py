"""Shipped model files and their short names (nimbus.models)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nimbus.errors import ModelError
from nimbus.models import (
    DEFAULT_MODEL_ENV,
    RULES_MODEL_NAME,
    SHIPPED_MODELS,
    default_model_path,
    resolve_model,
    shipped_models_dir,
)
from nimbus.modelspec import ModelSpec


def test_rules_by_name() -> None:
    path = resolve_model("rules")
    assert path == shipped_models_dir() / RULES_MODEL_NAME and path.is_file()
    assert resolve_model("Rules") == path
    spec = ModelSpec.from_onnx(path)
    assert spec.name == "nimbus-rules" and spec.resolution == 20.0


def test_default_by_name_and_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DEFAULT_MODEL_ENV, raising=False)
    assert resolve_model("default") == resolve_model(None) == default_model_path()
    other = tmp_path / "mine.onnx"
    other.write_bytes(b"x")
    monkeypatch.setenv(DEFAULT_MODEL_ENV, str(other))
    assert resolve_model("default") == other  # the override applies to the name too


def test_paths_pass_through_and_unknown_names_are_refused(tmp_path: Path) -> None:
    f = tmp_path / "rules.onnx"  # a file that happens to be called like a short name: a path
    f.write_bytes(b"x")
    assert resolve_model(f) == f and resolve_model(str(f)) == f
    with pytest.raises(ModelError) as err:
        resolve_model("nosuchmodel")
    for name in SHIPPED_MODELS:
        assert name in str(err.value)
    with pytest.raises(ModelError, match="not found"):
        resolve_model(tmp_path / "missing.onnx")


def test_missing_shipped_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import nimbus.models as models

    monkeypatch.setattr(models, "shipped_models_dir", lambda: tmp_path)
    with pytest.raises(ModelError, match="rules_onnx.py"):
        resolve_model("rules")
