"""Surface water from the JRC Global Surface Water ``occurrence`` layer (10° GeoTIFF tiles, login-free).

Layout of the public bucket (``https://storage.googleapis.com/global-surface-water/downloads2021/occurrence``):
``occurrence_0E_50Nv1_4_2021.tif``, named by the tile's **north-west** corner without zero padding
(``0E_50N`` covers 40-50° N, 0-10° E), 40000² pixels of 0.00025°, uint8: the percentage of valid
observations 1984-2021 with water (0-100), 255 no data. Stored as the ``water`` layer in percent
(nearest-neighbour resampling). A missing tile is an error.

Mirror: ``NIMBUS_JRC_GSW_URL`` or ``--mirror water=URL``.
"""

from __future__ import annotations

from nimbus.fetch.source import TileSource, register

__all__ = ["JRC_GSW", "tile_name"]


def tile_name(south: int, west: int) -> str:
    """``0E_50N``: the GSW tile of the 10° cell with south-west corner (south, west)."""
    north = south + 10
    return f"{abs(west)}{'E' if west >= 0 else 'W'}_{abs(north)}{'N' if north >= 0 else 'S'}"


def _path(south: int, west: int) -> str:
    return f"occurrence_{tile_name(south, west)}v1_4_2021.tif"


JRC_GSW = register(
    TileSource(
        name="jrc-gsw",
        layer="water",
        title="JRC Global Surface Water occurrence",
        version="v1.4 (1984-2021)",
        licence=(
            "Produced under the Copernicus Programme, free of charge and without restriction of use "
            "(https://global-surface-water.appspot.com/download)"
        ),
        credit=(
            "Source: EC JRC/Google. Pekel, J.-F., Cottam, A., Gorelick, N., Belward, A. S. 2016. High-resolution "
            "mapping of global surface water and its long-term changes. Nature 540: 418-422"
        ),
        default_url="https://storage.googleapis.com/global-surface-water/downloads2021/occurrence",
        env="NIMBUS_JRC_GSW_URL",
        cell=10,
        path=_path,
        lat_range=(-60.0, 80.0),
        nodata=255.0,
        aliases=("jrc", "gsw", "jrc_water", "surface_water"),
        notes={"source_units": "% of observations with water, 1984-2021"},
    )
)
