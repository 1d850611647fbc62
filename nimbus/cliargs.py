"""The command line's checks, made before any command runs (python-fire stays the dispatcher).

python-fire runs a command first and interprets what it did not use afterwards: a misspelt
``--quicklok`` is applied to the command's *result* after the whole segmentation, ``-h`` is taken
as ``--host`` where a parameter starts with "h", and help opens in a pager with types such as
``Optional['str | None']``. :func:`preflight` refuses unknown commands and options, and surplus
arguments, before anything runs (with a "did you mean" hint), turns ``-h`` into help, and
:func:`configure_fire` makes help print straight to the terminal with readable types.
"""

from __future__ import annotations

import difflib
import inspect
import types
import typing
from collections.abc import Sequence
from typing import Any

from nimbus.errors import UsageError

__all__ = ["configure_fire", "preflight", "readable_type"]

_HELP = ("--help", "-h", "-help")


def _hint(word: str, choices: Sequence[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {prefix}{close[0]}?" if close else ""


def readable_type(annotation: Any) -> str:
    """A short, readable name for a parameter annotation: ``str``, ``int or str``, ``float``.

    ``None`` is left out of unions: python-fire itself writes ``Optional[...]`` around the type of
    a parameter whose default is None.

    Args:
        annotation: a type, a ``typing`` construct, a ``X | Y`` union or a string annotation.
    """
    if isinstance(annotation, typing.ForwardRef):
        annotation = annotation.__forward_arg__
    if isinstance(annotation, str):
        text = annotation.replace("Optional[", "").replace("]", "")
        names = [p.strip().strip("'\"") for p in text.split("|")]
        return " or ".join(dict.fromkeys(n for n in names if n and n != "None")) or "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [readable_type(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(dict.fromkeys(names))
    if annotation is Any:
        return "any"
    if origin is not None:
        return getattr(origin, "__name__", str(annotation))
    return getattr(annotation, "__name__", str(annotation))


def configure_fire() -> None:
    """Make python-fire print help without a pager and with readable types (one place, on start)."""
    import fire.core
    import fire.helptext

    def display(lines: Sequence[str], out: Any) -> None:
        out.write("\n".join(lines) + "\n")

    def arg_type(arg: str, spec: Any) -> str:
        return readable_type(spec.annotations[arg]) if arg in spec.annotations else ""

    fire.core.Display = display
    fire.helptext._GetArgType = arg_type  # noqa: SLF001 - the one hook fire offers for type names


def _parameters(method: Any) -> tuple[dict[str, inspect.Parameter], bool]:
    params = dict(inspect.signature(method).parameters)
    varargs = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params.values())
    named = {n: p for n, p in params.items() if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
    return named, varargs


def preflight(component: Any, argv: Sequence[str], prog: str = "nimbus") -> list[str]:
    """Check a command line against the component's methods before python-fire runs it.

    Args:
        component: the CLI object (one public method per command).
        argv: the arguments after the program name.
        prog: the program name used in messages.

    Returns:
        The arguments to hand to fire (``-h`` rewritten as ``--help``).

    Raises:
        UsageError: for an unknown command, an unknown or misspelt option (with a "did you mean"
            hint), an option given twice, or more positional arguments than the command takes.
    """
    args = ["--help" if a in _HELP else a for a in argv]
    commands = sorted(n for n in dir(component) if not n.startswith("_") and callable(getattr(component, n)))
    if not args or args[0] == "--help" or args[0].startswith("-"):
        if args and args[0] not in ("--help", "--"):
            raise UsageError(f"{prog}: give a command first ({', '.join(commands)}); `{prog} --help` lists them")
        return args
    command = args[0]
    if command not in commands:
        raise UsageError(f"unknown command {command!r}{_hint(command, commands)} (commands: {', '.join(commands)})")
    if "--help" in args:
        return [command, "--help"]
    params, varargs = _parameters(getattr(component, command))
    names = {n.replace("_", "-"): n for n in params}
    shorts: dict[str, str] = {}
    for n in params:  # fire's short flags: the first letter, when no other parameter shares it
        if sum(m[0] == n[0] for m in params) == 1:
            shorts[n[0]] = n
    seen: set[str] = set()
    positional = 0
    i = 1
    while i < len(args):
        a = args[i]
        if a == "--":  # fire's own flags follow
            break
        if a.startswith("--") or (a.startswith("-") and len(a) >= 2 and a[1].isalpha()):
            key, has_value = (a.split("=", 1)[0], True) if "=" in a else (a, False)
            if key.startswith("--"):
                word = key[2:].replace("_", "-")
                name = names.get(word)
                if name is None and word.startswith("no") and names.get(word[2:].lstrip("-")) is not None:
                    name = names[word[2:].lstrip("-")]  # fire's --noflag for booleans
                    has_value = True
            else:
                name = shorts.get(key[1:]) if len(key) == 2 else None
            if name is None:
                flags = sorted(f"--{k}" for k in names)
                hint = _hint(key if key.startswith("--") else "--" + key.lstrip("-"), flags)
                raise UsageError(f"{prog} {command}: unknown option {key}{hint} (options: {', '.join(flags) or 'none'})")
            if name in seen:
                raise UsageError(f"{prog} {command}: option --{name.replace('_', '-')} given twice")
            seen.add(name)
            if not has_value and i + 1 < len(args) and not args[i + 1].startswith("--"):
                i += 1  # fire takes the next word as the value (a bare flag means True)
        else:
            positional += 1
        i += 1
    free = [n for n, p in params.items() if n not in seen]
    if not varargs and positional > len(free):
        raise UsageError(
            f"{prog} {command}: takes at most {len(free)} positional argument(s) here, got {positional}; "
            f"`{prog} {command} --help` shows its arguments"
        )
    return args
