"""Sentinel-2 MSI band names, their native resolutions and their index in the metadata.

``BANDS`` is the model order (the order of ESA's ``bandId`` 0..12). L2A products also carry
``SCL`` (scene classification), ``AOT`` (aerosol optical thickness) and ``WVP`` (water vapour) and
have no B10.
"""

from __future__ import annotations

__all__ = [
    "BANDS",
    "BAND_ID",
    "L1C_BANDS",
    "L2A_BANDS",
    "L2A_EXTRAS",
    "NATIVE_RESOLUTION",
    "RESOLUTIONS",
    "band_from_id",
    "normalise_band",
]

#: Spectral bands in model order (ESA bandId 0..12).
BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

#: Extra L2A layers.
L2A_EXTRAS: tuple[str, ...] = ("SCL", "AOT", "WVP")

#: The bands an L1C product holds.
L1C_BANDS: tuple[str, ...] = BANDS

#: The bands and layers an L2A product holds (no B10: the cirrus band is not corrected).
L2A_BANDS: tuple[str, ...] = tuple(b for b in BANDS if b != "B10") + L2A_EXTRAS

#: The three pixel sizes of the tile grids, in metres.
RESOLUTIONS: tuple[int, ...] = (10, 20, 60)

#: Native pixel size (m) of every band and L2A layer.
NATIVE_RESOLUTION: dict[str, int] = {
    "B01": 60,
    "B02": 10,
    "B03": 10,
    "B04": 10,
    "B05": 20,
    "B06": 20,
    "B07": 20,
    "B08": 10,
    "B8A": 20,
    "B09": 60,
    "B10": 60,
    "B11": 20,
    "B12": 20,
    "SCL": 20,
    "AOT": 20,
    "WVP": 20,
}

#: ESA ``bandId`` (as in ``MTD_*.xml``: offsets, angles, spectral information) of each band.
BAND_ID: dict[str, int] = {b: i for i, b in enumerate(BANDS)}


def band_from_id(band_id: int | str) -> str:
    """The band name of an ESA ``bandId`` (0..12).

    Args:
        band_id: the integer (or its text) used by the metadata's ``bandId``/``band_id`` attributes.

    Returns:
        The band name, e.g. ``"B8A"`` for 8.
    """
    return BANDS[int(band_id)]


def normalise_band(name: str) -> str:
    """Canonical band name: ``"b2"``, ``"B2"``, ``"B02"`` -> ``"B02"``; ``"b8a"`` -> ``"B8A"``; ``"scl"`` -> ``"SCL"``.

    Args:
        name: a band name in any of the usual spellings.

    Returns:
        The canonical name.

    Raises:
        ValueError: when ``name`` is not a Sentinel-2 band or L2A layer.
    """
    n = str(name).strip().upper()
    if n in NATIVE_RESOLUTION:
        return n
    if n.startswith("B") and n[1:].isdigit() and 1 <= int(n[1:]) <= 12:
        return f"B{int(n[1:]):02d}"
    if n in ("B8A", "B08A"):
        return "B8A"
    raise ValueError(f"unknown Sentinel-2 band {name!r}; expected one of {', '.join(BANDS + L2A_EXTRAS)}")
