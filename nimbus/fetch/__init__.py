"""Auxiliary layers from public, login-free sources: fetched by window, mosaicked, warped and cached.

=========== ====================================================== ============================
layer       source (module)                                        mirror variable
=========== ====================================================== ============================
altitude    Copernicus DEM GLO-30 Public, 1° COGs (``copdem``)     ``NIMBUS_COPDEM_URL``
treecover   Hansen GFC-2023-v1.11 treecover2000, 10° (``hansen``)  ``NIMBUS_HANSEN_URL``
water       JRC Global Surface Water occurrence, 10° (``jrcwater``) ``NIMBUS_JRC_GSW_URL``
landcover   ESA WorldCover 2021 v200, 3° COGs (``worldcover``)     ``NIMBUS_WORLDCOVER_URL``
=========== ====================================================== ============================

Example:
    >>> from nimbus.fetch import auto_aux                                   # doctest: +SKIP
    >>> aux_dir = auto_aux(product, ["altitude", "treecover"], res=20)      # doctest: +SKIP
    >>> Segmenter(model, aux_dir=aux_dir)                                   # doctest: +SKIP

The cache (:mod:`nimbus.fetch.cache`) is ``$NIMBUS_CACHE`` or ``~/.cache/nimbus``; a second product on
the same tile grid reads nothing from the network.
"""

from __future__ import annotations

from nimbus.fetch.auto import DEFAULT_LAYERS, FetchedLayer, auto_aux, fetch_auxiliary
from nimbus.fetch.cache import cache_root
from nimbus.fetch.grid import Grid
from nimbus.fetch.source import TileSource, parse_mirrors, source_for, sources

__all__ = [
    "DEFAULT_LAYERS",
    "FetchedLayer",
    "Grid",
    "TileSource",
    "auto_aux",
    "cache_root",
    "fetch_auxiliary",
    "parse_mirrors",
    "source_for",
    "sources",
]
