"""Per-class reflectance spectra of the Sentinel-2 bands, for the synthetic product generator.

Values are surface (bottom-of-atmosphere, BOA) reflectances, 0..1, in ``nimbus.bands.BANDS`` order
(B01 B02 B03 B04 B05 B06 B07 B08 B8A B09 B10 B11 B12), rounded from published measurements:

- vegetation (green grass / deciduous canopy) and bare soil (dry loam): USGS Spectral Library
  version 7 (Kokaly et al., 2017, doi:10.5066/F7RR1WDJ), convolved to the S2 bands; the same shapes
  appear in the class means of Hollstein et al. (2016), Remote Sensing 8(8):666, Fig. 3.
- fresh/old snow: high and flat in the visible, falling in the NIR and very low in SWIR (B11/B12),
  which is what the NDSI uses (Dozier, 1989, Remote Sens. Environ. 28:9-22; Hollstein et al., 2016).
- clear inland water: a few percent in the visible, near zero from the red edge on (Hollstein et
  al., 2016; Pahlevan et al., 2017, Remote Sens. Environ. 201:47-56).
- thick cloud: bright and nearly flat to the NIR, still bright in SWIR (0.3-0.45, higher than snow),
  depressed in B09 by water vapour above it; cirrus band B10 lit for high clouds (Zhu & Woodcock,
  2012, Fmask, Remote Sens. Environ. 118:83-94; Hollstein et al., 2016 class "cloud").

Top-of-atmosphere (TOA, L1C) reflectance is modelled as ``TOA = T_b * BOA + P_b`` with a path
reflectance ``P_b`` (Rayleigh + aerosol, strongest in the blue), a two-way transmittance ``T_b``,
strong water-vapour absorption in B09 and near-opaque B10 (1375 nm) for surfaces, as in the 6S
simulations summarised in the Sentinel-2 ATBD for Sen2Cor (Main-Knorn et al., 2017, Proc. SPIE
10427). The values are plausible, not a radiative-transfer model.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOA_SPECTRA",
    "CIRRUS_B10",
    "PATH_REFLECTANCE",
    "TRANSMITTANCE",
    "toa_from_boa",
]

#: Surface reflectance per class, in BANDS order (B10 for surfaces is the surface value before the
#: near-total absorption of the 1375 nm band; it only matters for TOA).
BOA_SPECTRA: dict[str, np.ndarray] = {
    "vegetation": np.array([0.030, 0.035, 0.070, 0.040, 0.110, 0.280, 0.340, 0.360, 0.380, 0.380, 0.010, 0.200, 0.100], np.float32),
    "soil": np.array([0.080, 0.100, 0.140, 0.180, 0.210, 0.230, 0.250, 0.260, 0.270, 0.270, 0.010, 0.330, 0.290], np.float32),
    "snow": np.array([0.880, 0.900, 0.890, 0.870, 0.850, 0.830, 0.800, 0.780, 0.740, 0.680, 0.020, 0.060, 0.040], np.float32),
    "water": np.array([0.050, 0.050, 0.045, 0.025, 0.018, 0.012, 0.010, 0.008, 0.007, 0.005, 0.001, 0.003, 0.002], np.float32),
    "cloud": np.array([0.560, 0.560, 0.550, 0.560, 0.570, 0.580, 0.580, 0.580, 0.580, 0.450, 0.150, 0.420, 0.310], np.float32),
}

#: Path reflectance added at TOA (clear, mid-latitude summer, visibility ~ 40 km).
PATH_REFLECTANCE = np.array([0.110, 0.075, 0.045, 0.028, 0.022, 0.016, 0.013, 0.011, 0.009, 0.004, 0.000, 0.002, 0.001], np.float32)

#: Two-way atmospheric transmittance (B09: water vapour; B10: near opaque at the surface).
TRANSMITTANCE = np.array([0.78, 0.83, 0.88, 0.91, 0.92, 0.93, 0.94, 0.94, 0.95, 0.35, 0.02, 0.95, 0.93], np.float32)

#: TOA reflectance of B10 for a fully opaque high cloud (its top above most water vapour).
CIRRUS_B10 = 0.15


def toa_from_boa(boa: np.ndarray, band_axis: int = 0) -> np.ndarray:
    """Surface reflectance -> top-of-atmosphere reflectance with the simple model above.

    Args:
        boa: reflectances with the 13 bands along ``band_axis``.
        band_axis: the axis of the bands.

    Returns:
        TOA reflectance, same shape, float32.
    """
    shape = [1] * boa.ndim
    shape[band_axis] = len(PATH_REFLECTANCE)
    return (boa * TRANSMITTANCE.reshape(shape) + PATH_REFLECTANCE.reshape(shape)).astype(np.float32)
