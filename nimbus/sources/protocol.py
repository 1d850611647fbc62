"""The band-source protocol: "something that gives Sentinel-2 bands on a tile grid".

Every source (:mod:`nimbus.sources.safe`, :mod:`nimbus.sources.cogfolder`, :mod:`nimbus.sources.stac`)
returns a :class:`nimbus.product.Product`, which satisfies :class:`BandSource`; code that only
needs bands on a grid (inputs, arrays, segmenter) can be typed against the protocol and accept any
object that implements it (a mosaic, an in-memory array for tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import numpy as np
from affine import Affine

__all__ = ["BandSource"]


@runtime_checkable
class BandSource(Protocol):
    """Bands of one Sentinel-2 product on its tile grid.

    Attributes:
        product_id: the product name (outputs are named after it).
        tile: MGRS tile code ("32TMS").
        level: "L1C" or "L2A".
        baseline: processing baseline ("05.10"; "" when unknown).
        sensing_time: aware UTC datetime, or None.
        crs: the tile's rasterio CRS.
        bands: the band names available.
        offsets: per spectral band DN offset added by ``kind="harmonized"`` (-1000.0 or 0.0).
        harmonization: the rule that set ``offsets``, in words.
    """

    product_id: str
    tile: str
    level: str
    baseline: str
    sensing_time: datetime | None
    crs: Any
    bands: tuple[str, ...]
    offsets: dict[str, float]
    harmonization: str

    def transform(self, res: int = 10) -> Affine:
        """The affine transform of the ``res`` m grid."""
        ...

    def shape(self, res: int = 10) -> tuple[int, int]:
        """(rows, cols) of the ``res`` m grid."""
        ...

    def read(
        self,
        bands: str | Sequence[str],
        res: int = 10,
        window: Any = None,
        kind: str = "harmonized",
        resampling: str = "bilinear",
    ) -> tuple[np.ndarray, np.ndarray]:
        """(data (C, h, w), valid (h, w) bool) of ``bands`` on the ``res`` grid in ``window``."""
        ...
