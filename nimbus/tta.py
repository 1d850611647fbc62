"""Test-time augmentation: the eight transforms of the dihedral group D4 and their inverses.

A window is flipped and/or rotated, segmented, and its probabilities transformed back before they
are averaged (:class:`nimbus.segmenter.Segmenter` with ``tta=N`` uses the first N transforms).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["D4"]


def _d4(k: int) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
    """Transform ``k`` (0..7) of the dihedral group on the last two axes, and its inverse."""
    rot, flip = k % 4, k >= 4

    def fwd(a: np.ndarray) -> np.ndarray:
        if flip:
            a = a[..., ::-1]
        return np.rot90(a, rot, axes=(-2, -1))

    def inv(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, -rot, axes=(-2, -1))
        return a[..., ::-1] if flip else a

    return fwd, inv


#: The 8 transforms of the dihedral group D4 as ``(forward, inverse)`` pairs; 0 is the identity.
D4: tuple[tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]], ...] = tuple(_d4(k) for k in range(8))
