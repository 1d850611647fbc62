"""Tests of nimbus.extras and the install split: what `pip install .` pulls, one-line hints for missing extras."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from nimbus.errors import NimbusError, explain
from nimbus.extras import EXTRAS, MissingExtraError, require

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("s2cloudless", "sentinelhub", "lightgbm", "opencv", "scipy", "shapely", "pyproj", "flask", "torch", "xarray", "dask")


def _setup_lists() -> dict[str, list[str]]:
    """install_requires and the extras of setup.py, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    names = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign) for t in node.targets if isinstance(t, ast.Name)}
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}

    def strings(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Name):
            return strings(names[node.id])
        if isinstance(node, ast.Starred):
            return strings(node.value)
        if isinstance(node, ast.List):
            return [s for e in node.elts for s in strings(e)]
        return [node.value] if isinstance(node, ast.Constant) else []

    out = {"install_requires": strings(kw["install_requires"])}
    extras = kw["extras_require"]
    out.update({k.value: strings(v) for k, v in zip(extras.keys, extras.values)})
    return out


def test_deployment_install_is_lean_and_test_extra_has_everything() -> None:
    lists = _setup_lists()
    base = [re.split(r"[<>=\[]", r)[0].lower() for r in lists["install_requires"]]
    assert not [h for h in HEAVY if any(b.startswith(h) for b in base)], f"pip install . pulls {base}"
    assert lists["labels"] == ["s2cloudless>=1.7"] and lists["label"] == ["flask>=2.3"]
    for extra in ("labels", "label"):
        assert set(lists[extra]) <= set(lists["test"]), f"the test extra must carry [{extra}] so the suite runs"
    assert set(EXTRAS) <= set(lists), "every extra named in hints exists in setup.py"


def test_missing_extra_is_one_line_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)  # import flask -> ImportError
    with pytest.raises(MissingExtraError) as info:
        require("label", "flask")
    msg = explain(info.value)
    assert isinstance(info.value, NimbusError) and "\n" not in msg
    assert "flask is not installed" in msg and '"nimbus-s2[label]"' in msg and "nimbus label" in msg
    assert require("labels", "json").__name__ == "json"
    with pytest.raises(ValueError, match="unknown extra"):
        require("nope", "json")


def test_s2cloudless_labels_need_the_labels_extra(monkeypatch: pytest.MonkeyPatch, synthetic_l1c, tmp_path: Path) -> None:
    from nimbus.labels import cloud_probability_coarse
    from nimbus.product import open_product

    monkeypatch.setitem(sys.modules, "s2cloudless", None)
    with pytest.raises(MissingExtraError, match=r'needed for local S2cloudless .*"nimbus-s2\[labels\]"'):
        cloud_probability_coarse(open_product(synthetic_l1c.path))
