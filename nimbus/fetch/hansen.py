"""Tree cover from Hansen/UMD Global Forest Change ``treecover2000`` (10° GeoTIFF tiles, login-free).

Layout of the public bucket (``https://storage.googleapis.com/earthenginepartners-hansen/GFC-2023-v1.11``):
``Hansen_GFC-2023-v1.11_treecover2000_50N_000E.tif``, named by the tile's **north-west** corner
(``50N_000E`` covers 40-50° N, 0-10° E), 40000² pixels of 0.00025° (1 arc-second), uint8 percent canopy
closure of vegetation taller than 5 m in 2000. The tiles cover 80° N to 60° S; a missing tile is an
error (a wrong mirror), never silently zero.

Mirror: ``NIMBUS_HANSEN_URL`` or ``--mirror treecover=URL`` (the URL of the version folder).
"""

from __future__ import annotations

from nimbus.fetch.source import TileSource, register

__all__ = ["HANSEN", "VERSION", "tile_name"]

#: The Global Forest Change release read.
VERSION = "GFC-2023-v1.11"


def tile_name(south: int, west: int) -> str:
    """``50N_000E``: the Hansen granule of the 10° cell with south-west corner (south, west)."""
    north = south + 10
    return f"{abs(north):02d}{'N' if north >= 0 else 'S'}_{abs(west):03d}{'E' if west >= 0 else 'W'}"


def _path(south: int, west: int) -> str:
    return f"Hansen_{VERSION}_treecover2000_{tile_name(south, west)}.tif"


HANSEN = register(
    TileSource(
        name="hansen-gfc",
        layer="treecover",
        title="Hansen/UMD/Google/USGS/NASA Global Forest Change treecover2000",
        version=VERSION,
        licence="CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
        credit=(
            "Source: Hansen/UMD/Google/USGS/NASA. Hansen, M. C. et al. 2013. High-Resolution Global Maps of "
            "21st-Century Forest Cover Change. Science 342: 850-53. Data: https://glad.earthengine.app/view/global-forest-change"
        ),
        default_url=f"https://storage.googleapis.com/earthenginepartners-hansen/{VERSION}",
        env="NIMBUS_HANSEN_URL",
        cell=10,
        path=_path,
        lat_range=(-60.0, 80.0),
        aliases=("hansen", "gfc", "tree_cover"),
        notes={"source_units": "% canopy closure of vegetation > 5 m in 2000"},
    )
)

