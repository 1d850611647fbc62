"""The command line refuses before it works: unknown options, -h, surplus arguments, readable help."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

from nimbus.cli import NimbusCLI
from nimbus.cliargs import preflight, readable_type
from nimbus.errors import UsageError


def test_misspelt_option_is_refused_with_a_hint() -> None:
    with pytest.raises(UsageError, match=r"unknown option --quicklok; did you mean --quicklook\?"):
        preflight(NimbusCLI(), ["segment", "P.SAFE", "--quicklok"])
    with pytest.raises(UsageError, match=r"did you mean --overlap"):
        preflight(NimbusCLI(), ["segment", "P.SAFE", "--overlpa=0.2"])


def test_valid_forms_pass() -> None:
    cli = NimbusCLI()
    args = ["segment", "A.SAFE", "B.zip", "--model", "m.onnx", "--overlap=0.25", "--quicklook", "--no-overwrite", "--out", "o"]
    assert preflight(cli, args) == args
    assert preflight(cli, ["label", "DIR", "--no_browser", "--port", "0"])[0] == "label"
    assert preflight(cli, ["segment", "A", "-m", "x.onnx"])  # fire's one-letter flags


def test_h_always_means_help() -> None:
    assert preflight(NimbusCLI(), ["label", "DIR", "-h"]) == ["label", "--help"]
    assert preflight(NimbusCLI(), ["-h"]) == ["--help"]


def test_unknown_command_and_surplus_arguments() -> None:
    with pytest.raises(UsageError, match="did you mean segment"):
        preflight(NimbusCLI(), ["segmnt", "P"])
    with pytest.raises(UsageError, match="at most 1 positional"):
        preflight(NimbusCLI(), ["info", "a", "b"])
    with pytest.raises(UsageError, match="given twice"):
        preflight(NimbusCLI(), ["segment", "a", "--out", "x", "--out", "y"])


def test_readable_types() -> None:
    assert readable_type(str | None) == "str"
    assert readable_type("str | None") == "str"
    assert readable_type(str | bool | None) == "str or bool"
    assert readable_type(int) == "int"


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nimbus", *args], capture_output=True, text=True, timeout=120, **kw)


def test_misspelt_option_fails_before_any_work(tmp_path: Path) -> None:
    res = _run("segment", str(tmp_path / "does-not-exist.SAFE"), "--out", str(tmp_path / "o"), "--quicklok")
    assert res.returncode == 2
    assert "did you mean --quicklook" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "o").exists(), "nothing ran"


def test_option_values_blamed_on_the_option(tmp_path: Path) -> None:
    res = _run("segment", "whatever.SAFE", "--overlap", "1.5")
    assert res.returncode == 2 and "--overlap 1.5" in res.stderr and "metadata" not in res.stderr
    res = _run("demo", "--size", "7", "--out", str(tmp_path / "d"))
    assert res.returncode == 2 and "--size 7" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "d").exists()


def test_help_prints_without_a_pager_and_with_readable_types(tmp_path: Path) -> None:
    """In a real terminal (a pty) fire would start $PAGER; here a pager that marks its use."""
    marker = tmp_path / "pager-used"
    pager = tmp_path / "pager.sh"
    pager.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    pager.chmod(0o755)
    master, slave = pty.openpty()
    env = {**os.environ, "PAGER": str(pager), "TERM": "xterm"}
    proc = subprocess.Popen([sys.executable, "-m", "nimbus", "label", "DIR", "-h"], stdin=slave, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    out = b""
    while True:
        r, _, _ = select.select([master], [], [], 60)
        if not r:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(master)
    text = out.decode(errors="replace")
    assert "SAMPLES_DIR" in text and "--port" in text
    assert not marker.exists(), "help must not open a pager"
    assert "Optional['" not in text and "str | None" not in text


def test_every_command_help_names_exactly_its_options() -> None:
    """fire parses the Google docstrings into the help: a continuation line that looks like
    ``word: ...`` would become a bogus option and cut the real one's text short."""
    import inspect

    from fire import docstrings

    from nimbus.cli import NimbusCLI

    for name, fn in inspect.getmembers(NimbusCLI, inspect.isfunction):
        if name.startswith("_"):
            continue
        params = set(inspect.signature(fn).parameters) - {"self"}
        documented = {a.name for a in docstrings.parse(fn.__doc__ or "").args or []}
        assert documented == params, f"nimbus {name}: help documents {sorted(documented - params)}, misses {sorted(params - documented)}"
