"""Progress bars of the training loop: tqdm, only on a terminal and only when asked."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["progress_bar"]


def progress_bar(iterable: Any, enabled: bool, **kw: Any) -> Any:
    """``iterable`` wrapped in a tqdm bar, shown only when ``enabled`` and stderr is a terminal."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not enabled or not sys.stderr.isatty(), leave=False, dynamic_ncols=True, **kw)
