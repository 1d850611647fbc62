"""Altitude from the Copernicus DEM GLO-30 Public (1° COG tiles on AWS, login-free).

Layout of the public bucket (``https://copernicus-dem-30m.s3.amazonaws.com``, readme.html there):
``Copernicus_DSM_COG_10_N46_00_E007_00_DEM/Copernicus_DSM_COG_10_N46_00_E007_00_DEM.tif``, named by
the tile's south-west corner; ``tileList.txt`` lists the tiles that exist. Ocean has no tiles: a tile
absent from the list is sea, 0 m. Rows are 1 arc-second apart everywhere; the longitude spacing grows
with latitude (1" below 50°, 1.5" to 60°, 2" to 70°, 3" to 80°, 5" to 85°, 10" above; 3600, 2400,
1800, 1200, 720 or 360 columns) and the pixels are centred on whole arc-seconds (the file's origin
is half a pixel north-west of the corner). Nimbus reads each file's own transform, so none of this is
assumed. Heights are metres above the EGM2008 geoid (a surface model: trees and buildings included).

Mirror: ``NIMBUS_COPDEM_URL`` or ``--mirror altitude=URL`` (a folder laid out like the bucket works too).
"""

from __future__ import annotations

from nimbus.fetch.source import TileSource, lat_label, lon_label, register

__all__ = ["COPDEM", "dem_columns", "tile_name"]


def tile_name(south: int, west: int) -> str:
    """The GLO-30 tile name of the 1° cell with south-west corner (south, west), e.g. ``Copernicus_DSM_COG_10_N46_00_E007_00_DEM``."""
    return f"Copernicus_DSM_COG_10_{lat_label(south)}_00_{lon_label(west)}_00_DEM"


def dem_columns(south: int) -> int:
    """Columns of the GLO-30 COG tile whose south edge is ``south`` (3600 below 50°, 2400 to 60°, ... 360 above 85°)."""
    lat = south if south >= 0 else -(south + 1)  # the tile's edge nearest the equator, in |degrees|
    for limit, cols in ((50, 3600), (60, 2400), (70, 1800), (80, 1200), (85, 720)):
        if lat < limit:
            return cols
    return 360


def _path(south: int, west: int) -> str:
    name = tile_name(south, west)
    return f"{name}/{name}.tif"


COPDEM = register(
    TileSource(
        name="copdem-glo30",
        layer="altitude",
        title="Copernicus DEM GLO-30 Public",
        version="2021_1 (AWS COG release)",
        licence=(
            "Copernicus DEM licence: GLO-30 Public is free for the general public "
            "(https://spacedata.copernicus.eu/collections/copernicus-digital-elevation-model)"
        ),
        credit=(
            "© DLR e.V. 2010-2014 and © Airbus Defence and Space GmbH 2014-2018 provided under COPERNICUS "
            "by the European Union and ESA; all rights reserved"
        ),
        default_url="https://copernicus-dem-30m.s3.amazonaws.com",
        env="NIMBUS_COPDEM_URL",
        cell=1,
        path=_path,
        lat_range=(-90.0, 90.0),
        sea_value=0.0,
        index="tileList.txt",
        index_name=tile_name,
        aliases=("copdem", "dem", "glo30", "elevation"),
        notes={"vertical_datum": "EGM2008 geoid", "source_units": "m"},
    )
)
