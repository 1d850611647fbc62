"""Land cover from ESA WorldCover 10 m 2021 v200 (3° COG tiles on AWS, login-free), an optional layer.

Layout of the public bucket (``https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map``):
``ESA_WorldCover_10m_2021_v200_N45E006_Map.tif``, named by the tile's south-west corner (multiples of
3°), uint8 classes 10 (tree cover) ... 100 (moss and lichen), 0 no data. Stored as the ``landcover``
layer (nearest neighbour). A missing tile is an error.

Mirror: ``NIMBUS_WORLDCOVER_URL`` or ``--mirror landcover=URL``.
"""

from __future__ import annotations

from nimbus.fetch.source import TileSource, lat_label, lon_label, register

__all__ = ["WORLDCOVER", "tile_name"]


def tile_name(south: int, west: int) -> str:
    """``N45E006``: the WorldCover tile of the 3° cell with south-west corner (south, west)."""
    return f"{lat_label(south)}{lon_label(west)}"


def _path(south: int, west: int) -> str:
    return f"ESA_WorldCover_10m_2021_v200_{tile_name(south, west)}_Map.tif"


WORLDCOVER = register(
    TileSource(
        name="esa-worldcover",
        layer="landcover",
        title="ESA WorldCover 10 m 2021 v200",
        version="v200 (2021)",
        licence="CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
        credit="© ESA WorldCover project / Contains modified Copernicus Sentinel data (2021) processed by ESA WorldCover consortium",
        default_url="https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map",
        env="NIMBUS_WORLDCOVER_URL",
        cell=3,
        path=_path,
        lat_range=(-60.0, 84.0),
        nodata=0.0,
        aliases=("worldcover", "esa-worldcover", "land_cover"),
        notes={"source_units": "ESA WorldCover class"},
    )
)
