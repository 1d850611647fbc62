"""The README stays true: its Python example runs and its opening commands are what CI runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_python_example_runs(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - our own README
    finally:
        os.chdir(cwd)
    assert (tmp_path / scope["result"].classes).is_file()
    classes, probs = scope["classes"], scope["probs"]
    assert classes.shape == scope["ok"].shape and probs.shape[0] == 4
    assert set(np.unique(classes)) <= {0, 1, 2, 3, 255}
    np.testing.assert_allclose(probs[:, scope["ok"]].sum(axis=0), 1.0, atol=1e-3)


def test_ci_runs_the_readme_test_command() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    test_cmd = first_block[1].split("#")[0].strip()
    assert "pytest" in test_cmd
    assert test_cmd in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
