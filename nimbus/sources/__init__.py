"""Product sources: one module per kind of input, behind one registry.

- :mod:`nimbus.sources.protocol`: :class:`BandSource`, what every opened product provides;
- :mod:`nimbus.sources.registry`: :func:`open_source` (what :func:`nimbus.product.open_product` calls),
  :func:`register_source` for new kinds;
- :mod:`nimbus.sources.stac`, :mod:`nimbus.sources.safe`, :mod:`nimbus.sources.cogfolder`: the built-in kinds;
- :mod:`nimbus.sources.discovery`: :func:`find_products`, which paths are products (every command uses it).
"""

from __future__ import annotations

from nimbus.sources.cogfolder import accepts_cog_folder, open_cog_folder
from nimbus.sources.discovery import find_products
from nimbus.sources.protocol import BandSource
from nimbus.sources.registry import SourceType, open_source, register_source, registered_sources, source_for
from nimbus.sources.safe import accepts_safe, accepts_zip, open_safe, open_zip
from nimbus.sources.stac import accepts_stac, open_stac

__all__ = [
    "BandSource",
    "SourceType",
    "find_products",
    "open_source",
    "register_source",
    "registered_sources",
    "source_for",
]

register_source(SourceType("stac", accepts_stac, open_stac, "STAC Item: JSON file (FILE#ID), http(s) URL, pystac.Item"))
register_source(SourceType("zip", accepts_zip, open_zip, "zipped SAFE, read in place"))
register_source(SourceType("safe", accepts_safe, open_safe, ".SAFE folder (or its MTD_MSIL*.xml)"))
register_source(SourceType("cog", accepts_cog_folder, open_cog_folder, "folder of per-band GeoTIFF/COG files"))
