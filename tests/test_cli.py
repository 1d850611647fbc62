"""The nimbus command line: help from docstrings, clean errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nimbus", *args], capture_output=True, text=True, timeout=300)


def test_help_lists_commands() -> None:
    res = run_cli("--help")
    assert "info" in res.stdout + res.stderr


def test_bad_product_is_a_clean_error(tmp_path) -> None:
    bogus = tmp_path / "not_a_product.txt"
    bogus.write_text("hello")
    res = run_cli("info", str(bogus))
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert "not_a_product.txt" in res.stderr


def test_import_nimbus_never_imports_torch() -> None:
    code = "import sys, nimbus, nimbus.cli; assert 'torch' not in sys.modules, 'torch imported'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
