#!/usr/bin/env python
"""Run the fuzzing properties of ``tests/test_fuzz.py`` for minutes instead of seconds.

Usage::

    python tools/fuzz.py --minutes 10                     # every target, the time shared evenly
    python tools/fuzz.py --minutes 3 --target zip         # metadata | zip | modelspec | labeler (repeatable)

The strategies and checks are those of the test module (one definition each, see
``tests.test_fuzz.PROPERTIES``); here they run with random seeds in rounds of ``--batch`` examples
until the time is up. A failing property is shrunk by hypothesis, printed (the minimal example and
its traceback) and not run again; the exit status is 1 when anything failed. Failures are kept in a
hypothesis example database outside the working tree (``--db``), so the next run replays them first.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["fuzz_property", "main"]

ROOT = Path(__file__).resolve().parents[1]


def _load_properties() -> dict[str, list[tuple[str, Any, Callable[[Any], None]]]]:
    sys.path.insert(0, str(ROOT / "tests"))
    import test_fuzz

    return test_fuzz.PROPERTIES


def fuzz_property(
    name: str, strategy: Any, check: Callable[[Any], None], seconds: float, batch: int, database: Any
) -> tuple[int, BaseException | None]:
    """Run one property for ``seconds`` (whole rounds of ``batch`` examples).

    Args:
        name: the property's name, for messages.
        strategy: the hypothesis strategy of its inputs.
        check: the property (raises on a violation).
        seconds: the time budget.
        batch: examples per hypothesis run (each run draws a fresh random seed).
        database: the hypothesis example database (None: none).

    Returns:
        ``(examples run, the failure or None)``.
    """
    from hypothesis import HealthCheck, given, settings

    count = 0

    @settings(
        max_examples=batch,
        deadline=None,
        database=database,
        derandomize=False,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def run(value: Any) -> None:
        nonlocal count
        count += 1
        check(value)

    run.__name__ = name.replace("-", "_")
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            run()
        except Exception as exc:  # a property failed: hypothesis has shrunk it and attached the example
            return count, exc
    return count, None


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when no property failed, 1 otherwise.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="total time, shared evenly by the properties run")
    parser.add_argument("--target", action="append", choices=["metadata", "zip", "modelspec", "labeler"],
                        help="what to fuzz (repeatable; default: everything)")
    parser.add_argument("--batch", type=int, default=200, help="examples per hypothesis run")
    parser.add_argument("--max-note", type=int, default=3000, help="cut printed examples to this many characters")
    parser.add_argument("--db", default=os.path.join(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "nimbus-fuzz"),
                        help="hypothesis example database folder ('' for none)")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.batch < 1:
        parser.error("--minutes must be > 0 and --batch >= 1")

    from hypothesis.database import DirectoryBasedExampleDatabase

    properties = _load_properties()
    targets = args.target or list(properties)
    chosen = [(t, *p) for t in dict.fromkeys(targets) for p in properties[t]]
    database = DirectoryBasedExampleDatabase(args.db) if args.db else None
    share = args.minutes * 60.0 / len(chosen)
    failures: list[tuple[str, BaseException]] = []
    total = 0
    print(f"fuzzing {len(chosen)} properties for {args.minutes:g} min ({share:.0f} s each)", flush=True)
    for target, name, strategy, check in chosen:
        started = time.monotonic()
        count, failure = fuzz_property(name, strategy, check, share, args.batch, database)
        total += count
        status = "FAILED" if failure else "ok"
        print(f"  {target:<9s} {name:<24s} {count:7d} examples in {time.monotonic() - started:5.0f} s  {status}", flush=True)
        if failure is not None:
            failures.append((name, failure))
    print(f"{total} examples, {len(failures)} failing properties", flush=True)
    for name, exc in failures:
        notes = getattr(exc, "__notes__", [])
        exc.__notes__ = [n if len(n) <= args.max_note else n[: args.max_note] + f"... ({len(n)} characters)" for n in notes]
        print(f"\n=== {name} ===", flush=True)
        print("".join(traceback.format_exception(exc)), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
