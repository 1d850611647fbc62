"""Synthetic Sentinel-2 products in the real SAFE format, with their true class map.

A scene is built on the 10 m grid from fractal noise: a DEM-like terrain, snow above a noisy snow
line, lakes in the lowest ground and a meandering river, ground as a vegetation/soil mix that
follows a tree-cover layer, and textured clouds whose edges are thin and semi-transparent (the
"ambiguous" pixels). Per-class spectra come from :mod:`nimbus.spectra`. Bands are area-averaged to
their native 10/20/60 m grids, get sensor noise, are quantised like the real processor (with the
+1000 DN offset from baseline 04.00 on) and written as lossless JPEG2000 in a real SAFE layout with
``MTD_MSIL1C.xml``/``MTD_MSIL2A.xml`` and ``MTD_TL.xml`` shaped like ESA's, so the product reader
parses them exactly as it parses real files.

Truth classes: 0 cloud, 1 ground, 2 snow, 3 water, 255 nodata.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import date as date_cls
from datetime import datetime, timedelta, timezone
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from nimbus.atomic import atomic_path
from nimbus.bands import BANDS, L1C_BANDS, L2A_BANDS, NATIVE_RESOLUTION
from nimbus.legend import DEFAULT_LEGEND
from nimbus.metadata import baseline_has_offsets
from nimbus.spectra import BOA_SPECTRA, CIRRUS_B10, PATH_REFLECTANCE, TRANSMITTANCE

__all__ = [
    "CLASSES",
    "NODATA_CLASS",
    "SyntheticProduct",
    "fractal_noise",
    "make_product",
    "tile_origin",
]

#: Class values of the truth map (the Nimbus legend: cloud 0, ground 1, snow 2, water 3).
CLASSES: dict[str, int] = {c.name: c.value for c in DEFAULT_LEGEND.classes}
#: Truth value of pixels without data.
NODATA_CLASS = 255

_NOISE_MAX = 2048  # fractal fields larger than this are drawn at a coarser grid and upsampled

_QUANT = 10000.0
_SOLAR = (1884.69, 1959.66, 1823.24, 1512.06, 1424.64, 1287.61, 1162.08, 1041.63, 955.32, 812.92, 367.15, 245.59, 85.25)
_WAVE = ((432, 453, 442.7), (447, 545, 492.7), (537, 583, 559.8), (645, 684, 664.6), (694, 714, 704.1), (731, 749, 740.5),
         (768, 796, 782.8), (763, 908, 832.8), (848, 881, 864.7), (932, 958, 945.1), (1337, 1412, 1373.5), (1539, 1682, 1613.7),
         (2078, 2320, 2202.4))  # fmt: skip
_L2A_SCL_NAMES = ("NO_DATA", "SATURATED_DEFECTIVE", "DARK_FEATURE_SHADOW", "CLOUD_SHADOW", "VEGETATION", "NOT_VEGETATED",
                  "WATER", "UNCLASSIFIED", "CLOUD_MEDIUM_PROBA", "CLOUD_HIGH_PROBA", "THIN_CIRRUS", "SNOW_ICE")  # fmt: skip


@dataclass(eq=False)
class SyntheticProduct:
    """A synthetic product on disk and what was used to make it.

    Attributes:
        path: the product (``.SAFE`` folder or ``.SAFE.zip``... named like ESA's ``.zip``).
        truth_path: the true class map (uint8 GeoTIFF on the 10 m grid, 255 nodata).
        truth: the class map itself, uint8 (size, size).
        aux_dir: folder with ``<TILE>_altitude_<res>m.tif`` and ``<TILE>_treecover_<res>m.tif``.
        product_id: the product name (no extension).
        tile: MGRS tile code.
        level: "L1C" or "L2A".
        baseline: processing baseline.
        sensing_time: aware UTC datetime.
        altitude: 10 m altitude in metres, float32.
        treecover: 10 m tree cover in percent, float32.
        cloud_opacity: 10 m cloud opacity 0..1 (1 = opaque cloud), float32.
        ambiguous: pixels with semi-transparent cloud (0.1 < opacity < 0.9), bool.
        reflectance: (property) the noiseless 13-band reflectance on the 10 m grid (TOA for L1C,
            BOA for L2A); :meth:`band_reflectance` gives one band.
        crs: "EPSG:326xx".
        transform: 6 numbers of the 10 m grid (a, b, c, d, e, f).
    """

    path: Path
    truth_path: Path
    truth: np.ndarray
    aux_dir: Path
    product_id: str
    tile: str
    level: str
    baseline: str
    sensing_time: datetime
    altitude: np.ndarray = field(repr=False)
    treecover: np.ndarray = field(repr=False)
    cloud_opacity: np.ndarray = field(repr=False)
    ambiguous: np.ndarray = field(repr=False)
    crs: str = ""
    transform: tuple[float, ...] = ()
    _scene: _Scene | None = field(default=None, repr=False, compare=False)

    def band_reflectance(self, band: str) -> np.ndarray:
        """The noiseless reflectance of one band on the 10 m grid (TOA for L1C, BOA for L2A), float32."""
        if self._scene is None:
            raise ValueError("this SyntheticProduct no longer holds its scene")
        return self._scene.reflectance(BANDS.index(band), self.level)

    @property
    def reflectance(self) -> np.ndarray:
        """All 13 bands of :meth:`band_reflectance`, (13, size, size) float32 (memory: 52 bytes a pixel)."""
        return np.stack([self.band_reflectance(b) for b in BANDS])


# ----------------------------------------------------------------------------------------- scene


def fractal_noise(shape: tuple[int, int], rng: np.random.Generator, beta: float = 3.0, min_freq: float = 1.0) -> np.ndarray:
    """Gaussian random field with a power-law spectrum (``power ~ f^-beta``), normalised to mean 0, std 1.

    Args:
        shape: (rows, cols).
        rng: the random generator (determinism per seed).
        beta: spectral slope; 2-4 gives terrain-like fields, larger is smoother.
        min_freq: frequencies below this (in cycles per image) are damped, avoiding one giant blob.

    Returns:
        float32 array of ``shape``.
    """
    h, w = shape
    k = -(-max(h, w) // _NOISE_MAX)
    if k > 1:  # large scenes: the field at 1/k resolution, bilinear-upsampled (a power law is smooth at small scales)
        from nimbus.resample import upsample

        small = fractal_noise((-(-h // k), -(-w // k)), rng, beta, min_freq)
        big = upsample(small, k, "bilinear", nodata=None)[:h, :w]
        big -= big.mean()
        sd = big.std()
        return big / sd if sd > 0 else big
    fy = np.fft.fftfreq(h)[:, None] * h
    fx = np.fft.rfftfreq(w)[None, :] * w
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp *= 1.0 - np.exp(-((f / max(min_freq, 1e-6)) ** 2))
    amp[0, 0] = 0.0
    spec = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    field_ = np.fft.irfft2(spec, s=(h, w)).astype(np.float32)
    field_ -= field_.mean()
    sd = field_.std()
    return field_ / sd if sd > 0 else field_


def _quantile(a: np.ndarray, q: float) -> float:
    """Quantile of a 2-D field, from a regular subsample when it is large (fast, deterministic)."""
    step = max(1, max(a.shape) // 1024)
    return float(np.quantile(a[::step, ::step], q))


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _block_mean(a: np.ndarray, f: int) -> np.ndarray:
    if f == 1:
        return a
    *lead, h, w = a.shape
    return a.reshape(*lead, h // f, f, w // f, f).mean(axis=(-3, -1), dtype=np.float64).astype(np.float32)


@dataclass
class _Scene:
    altitude: np.ndarray
    treecover: np.ndarray
    truth: np.ndarray
    opacity: np.ndarray
    veg_frac: np.ndarray
    brightness: np.ndarray
    snow: np.ndarray
    water: np.ndarray
    nodata60: np.ndarray  # bool on the 60 m grid

    def reflectance(self, i: int, level: str) -> np.ndarray:
        """Noiseless reflectance of band index ``i`` on the 10 m grid (TOA for L1C, BOA for L2A).

        Computed one band at a time so that large scenes stay within memory.
        """
        b = self.brightness
        surf = self.veg_frac * BOA_SPECTRA["vegetation"][i] + (1.0 - self.veg_frac) * BOA_SPECTRA["soil"][i]
        surf *= b
        surf = np.where(self.snow, BOA_SPECTRA["snow"][i] * (0.92 + 0.08 * b), surf)
        surf = np.where(self.water, BOA_SPECTRA["water"][i] * (0.9 + 0.1 * b), surf)
        np.clip(surf, 0.0, 1.2, out=surf)
        cloud = BOA_SPECTRA["cloud"][i] * (0.9 + 0.1 * b)
        if level == "L1C":
            surf = surf * TRANSMITTANCE[i] + PATH_REFLECTANCE[i]
            if BANDS[i] == "B10":
                cloud = CIRRUS_B10 * (0.8 + 0.2 * b)
        out = (1.0 - self.opacity) * surf + self.opacity * cloud
        return out.astype(np.float32, copy=False)


def _make_scene(size: int, rng: np.random.Generator, cloud_fraction: float, nodata_swath: bool) -> _Scene:
    shape = (size, size)
    scale = max(size / 240.0, 1.0)
    # Terrain: smooth large-scale relief plus rougher detail, 200..3200 m.
    relief = 0.8 * fractal_noise(shape, rng, beta=4.0, min_freq=1.5) + 0.2 * fractal_noise(shape, rng, beta=2.6, min_freq=2.0)
    relief = (relief - relief.min()) / max(float(np.ptp(relief)), 1e-6)
    altitude = (200.0 + 3000.0 * relief**1.3).astype(np.float32)

    # River: a meander through the lower half of the relief, carved into the terrain.
    yy = np.arange(size, dtype=np.float32)[:, None]
    xx = np.arange(size, dtype=np.float32)[None, :]
    phase, period = rng.uniform(0, 2 * np.pi), rng.uniform(0.6, 1.2) * size
    x0 = rng.uniform(0.3, 0.7) * size
    centre = x0 + 0.12 * size * np.sin(2 * np.pi * yy / period + phase) + 0.02 * size * fractal_noise(shape, rng, 4.0)
    half_width = max(1.5, 2.0 * scale**0.5)
    dist = np.abs(xx - centre)
    river = dist < half_width
    valley = np.exp(-((dist / (8.0 * half_width)) ** 2)).astype(np.float32)
    altitude = (altitude * (1.0 - 0.55 * valley)).astype(np.float32)
    altitude = np.maximum(altitude, 150.0).astype(np.float32)

    # Lakes: the lowest ground outside the river, as connected blobs (a quantile of a smoothed altitude).
    lake_field = altitude + 150.0 * fractal_noise(shape, rng, beta=3.5, min_freq=3.0)
    lakes = lake_field < _quantile(lake_field, 0.05)
    del lake_field
    water = river | lakes
    altitude[water] = np.minimum(altitude[water], _quantile(altitude, 0.05)).astype(np.float32)

    # Snow above a noisy snow line.
    snowline = _quantile(altitude, 0.72) + 120.0 * fractal_noise(shape, rng, beta=3.0, min_freq=2.0)
    snow = (altitude > snowline) & ~water

    # Tree cover: dense below the tree line, patchy, none on snow/water.
    treeline = _quantile(altitude, 0.6)
    tc = 100.0 * _smoothstep(0.45 * fractal_noise(shape, rng, beta=2.8, min_freq=2.0) + 0.55, 0.1, 0.95)
    tc *= 1.0 - _smoothstep(altitude, treeline - 250.0, treeline + 150.0)
    tc[snow | water] = 0.0
    treecover = np.clip(tc, 0.0, 100.0).astype(np.float32)

    # Ground = vegetation/soil mix following tree cover, with illumination texture (spectra per band later).
    veg_frac = np.clip(0.25 + 0.7 * treecover / 100.0 + 0.15 * fractal_noise(shape, rng, beta=2.2), 0.0, 1.0).astype(np.float32)
    brightness = (1.0 + 0.08 * fractal_noise(shape, rng, beta=2.0)).astype(np.float32)

    # Clouds: thresholded fractal noise with soft, semi-transparent edges.
    truth = np.full(shape, CLASSES["ground"], np.uint8)
    truth[snow] = CLASSES["snow"]
    truth[water] = CLASSES["water"]
    opacity = np.zeros(shape, np.float32)
    if cloud_fraction > 0:
        cfield = 0.75 * fractal_noise(shape, rng, beta=3.2, min_freq=1.5) + 0.25 * fractal_noise(shape, rng, beta=2.0, min_freq=4.0)
        thr = _quantile(cfield, 1.0 - min(cloud_fraction, 1.0))
        edge = 0.35
        opacity = _smoothstep(cfield, thr - edge, thr + edge)
        opacity[cfield >= thr + edge] = 1.0
        del cfield
    truth[opacity >= 0.5] = CLASSES["cloud"]

    # Nodata swath: the upper-left corner beyond a diagonal, decided on the 60 m grid so every band agrees.
    n60 = size // 6
    nodata60 = np.zeros((n60, n60), bool)
    if nodata_swath:
        r, c = np.mgrid[0:n60, 0:n60]
        nodata60 = (r + c + 1.0) < 0.45 * n60 + 0.1 * n60 * np.sin(r / max(n60, 1) * 3.0)
    nodata10 = np.repeat(np.repeat(nodata60, 6, axis=0), 6, axis=1)
    truth[nodata10] = NODATA_CLASS
    return _Scene(altitude, treecover, truth, opacity, veg_frac, brightness, snow, water, nodata60)


# ----------------------------------------------------------------------------------------- tile grid


def tile_origin(tile: str) -> tuple[int, float, float]:
    """EPSG code and upper-left corner of a Sentinel-2 tile (from :mod:`nimbus.grid`).

    Args:
        tile: MGRS code, e.g. ``"32TMS"``.

    Returns:
        (epsg, ulx, uly) exactly as in the real tile metadata's ``Geoposition``.
    """
    from nimbus.grid import tile_grid

    try:
        g = tile_grid(tile, 10)
    except Exception as exc:  # TileCodeError, a NimbusError and a ValueError
        raise ValueError(str(exc)) from exc
    return int(g.crs.to_epsg()), float(g.transform.c), float(g.transform.f)


# ----------------------------------------------------------------------------------------- metadata XML


def _fmt_time(t: datetime, digits: int = 3) -> str:
    s = t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{t.microsecond:06d}"[:digits]
    return f"{s}.{frac}Z"


def _product_xml(
    level: str, baseline: str, uri: str, sensing: datetime, generation: datetime, spacecraft: str, orbit: int,
    granule: str, image_files: list[str], datastrip_id: str, granule_id: str, cloud_cover: float, footprint: str,
) -> str:
    n = "1C" if level == "L1C" else "2A"
    offsets = baseline_has_offsets(baseline)
    files = "\n".join(f"                        <IMAGE_FILE>{escape(f)}</IMAGE_FILE>" for f in image_files)
    if level == "L1C":
        quant = '            <QUANTIFICATION_VALUE unit="none">10000</QUANTIFICATION_VALUE>'
        off = ""
        if offsets:
            off = "            <Radiometric_Offset_List>\n" + "\n".join(
                f'                <RADIO_ADD_OFFSET band_id="{i}">-1000</RADIO_ADD_OFFSET>' for i in range(13)
            ) + "\n            </Radiometric_Offset_List>"
    else:
        quant = (
            "            <QUANTIFICATION_VALUES_LIST>\n"
            '                <BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE>\n'
            '                <AOT_QUANTIFICATION_VALUE unit="none">1000.0</AOT_QUANTIFICATION_VALUE>\n'
            '                <WVP_QUANTIFICATION_VALUE unit="cm">1000.0</WVP_QUANTIFICATION_VALUE>\n'
            "            </QUANTIFICATION_VALUES_LIST>"
        )
        off = ""
        if offsets:
            off = "            <BOA_ADD_OFFSET_VALUES_LIST>\n" + "\n".join(
                f'                <BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13)
            ) + "\n            </BOA_ADD_OFFSET_VALUES_LIST>"
    irr = "\n".join(f'                    <SOLAR_IRRADIANCE bandId="{i}" unit="W/m²/µm">{v}</SOLAR_IRRADIANCE>' for i, v in enumerate(_SOLAR))
    spec = "\n".join(
        f'                <Spectral_Information bandId="{i}" physicalBand="{_physical(b)}">\n'
        f"                    <RESOLUTION>{NATIVE_RESOLUTION[b]}</RESOLUTION>\n"
        f"                    <Wavelength>\n"
        f'                        <MIN unit="nm">{_WAVE[i][0]}</MIN>\n'
        f'                        <MAX unit="nm">{_WAVE[i][1]}</MAX>\n'
        f'                        <CENTRAL unit="nm">{_WAVE[i][2]}</CENTRAL>\n'
        f"                    </Wavelength>\n"
        f"                </Spectral_Information>"
        for i, b in enumerate(BANDS)
    )
    scl = ""
    if level == "L2A":
        scl = "            <Scene_Classification_List>\n" + "\n".join(
            "                <Scene_Classification_ID>\n"
            f"                    <SCENE_CLASSIFICATION_TEXT>SC_{name}</SCENE_CLASSIFICATION_TEXT>\n"
            f"                    <SCENE_CLASSIFICATION_INDEX>{i}</SCENE_CLASSIFICATION_INDEX>\n"
            "                </Scene_Classification_ID>"
            for i, name in enumerate(_L2A_SCL_NAMES)
        ) + "\n            </Scene_Classification_List>"
    doi = '            <PRODUCT_DOI>https://doi.org/10.5270/S2_-synthetic</PRODUCT_DOI>\n' if offsets else ""
    psd = "14"
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{n}_User_Product xmlns:n1="https://psd-{psd}.sentinel2.eo.esa.int/PSD/User_Product_Level-{n}.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="https://psd-{psd}.sentinel2.eo.esa.int/PSD/User_Product_Level-{n}.xsd">
    <!-- Synthetic product written by nimbus.synthetic: the structure of ESA's MTD_MSIL{n}.xml, invented pixels. -->
    <n1:General_Info>
        <Product_Info>
            <PRODUCT_START_TIME>{_fmt_time(sensing)}</PRODUCT_START_TIME>
            <PRODUCT_STOP_TIME>{_fmt_time(sensing)}</PRODUCT_STOP_TIME>
            <PRODUCT_URI>{uri}.SAFE</PRODUCT_URI>
            <PROCESSING_LEVEL>Level-{n}</PROCESSING_LEVEL>
            <PRODUCT_TYPE>S2MSI{n}</PRODUCT_TYPE>
            <PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>
{doi}            <GENERATION_TIME>{_fmt_time(generation, 6)}</GENERATION_TIME>
            <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
            <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
            <Datatake datatakeIdentifier="G{uri[:3]}_{sensing.strftime('%Y%m%dT%H%M%S')}_{orbit * 100:06d}_N{baseline}">
                <SPACECRAFT_NAME>{spacecraft}</SPACECRAFT_NAME>
                <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
                <DATATAKE_SENSING_START>{_fmt_time(sensing)}</DATATAKE_SENSING_START>
                <SENSING_ORBIT_NUMBER>{orbit}</SENSING_ORBIT_NUMBER>
                <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
            </Datatake>
            <Query_Options completeSingleTile="true">
                <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
            </Query_Options>
            <Product_Organisation>
                <Granule_List>
                    <Granule datastripIdentifier="{datastrip_id}" granuleIdentifier="{granule_id}" imageFormat="JPEG2000">
{files}
                    </Granule>
                </Granule_List>
            </Product_Organisation>
        </Product_Info>
        <Product_Image_Characteristics>
            <Special_Values>
                <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
                <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
            </Special_Values>
            <Special_Values>
                <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
                <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
            </Special_Values>
            <Image_Display_Order>
                <RED_CHANNEL>3</RED_CHANNEL>
                <GREEN_CHANNEL>2</GREEN_CHANNEL>
                <BLUE_CHANNEL>1</BLUE_CHANNEL>
            </Image_Display_Order>
{quant}
{off}
            <Reflectance_Conversion>
                <U>1.0</U>
                <Solar_Irradiance_List>
{irr}
                </Solar_Irradiance_List>
            </Reflectance_Conversion>
            <Spectral_Information_List>
{spec}
            </Spectral_Information_List>
            <REFERENCE_BAND>{3 if level == 'L2A' else 0}</REFERENCE_BAND>
{scl}
        </Product_Image_Characteristics>
    </n1:General_Info>
    <n1:Geometric_Info>
        <Product_Footprint>
            <Product_Footprint>
                <Global_Footprint>
                    <EXT_POS_LIST>{footprint}</EXT_POS_LIST>
                </Global_Footprint>
            </Product_Footprint>
            <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>
            <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
        </Product_Footprint>
        <Coordinate_Reference_System>
            <GEO_TABLES version="1">EPSG</GEO_TABLES>
            <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
        </Coordinate_Reference_System>
    </n1:Geometric_Info>
    <n1:Quality_Indicators_Info>
        <Cloud_Coverage_Assessment>{cloud_cover:.4f}</Cloud_Coverage_Assessment>
        <Technical_Quality_Assessment>
            <DEGRADED_ANC_DATA_PERCENTAGE>0.0</DEGRADED_ANC_DATA_PERCENTAGE>
            <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
        </Technical_Quality_Assessment>
    </n1:Quality_Indicators_Info>
</n1:Level-{n}_User_Product>
"""


def _physical(band: str) -> str:
    return "B8A" if band == "B8A" else f"B{int(band[1:])}"


def _tile_xml(
    level: str, tile_id: str, datastrip_id: str, sensing: datetime, epsg: int, size: int, ulx: float, uly: float,
    cloud_cover: float, sun_zenith: float, sun_azimuth: float, granule_dir: str, rng: np.random.Generator,
) -> str:
    n = "1C" if level == "L1C" else "2A"
    zone = epsg % 100
    hemi = "N" if epsg < 32700 else "S"
    sizes = "\n".join(
        f'            <Size resolution="{r}">\n                <NROWS>{size * 10 // r}</NROWS>\n                <NCOLS>{size * 10 // r}</NCOLS>\n            </Size>'
        for r in (10, 20, 60)
    )
    geos = "\n".join(
        f'            <Geoposition resolution="{r}">\n                <ULX>{ulx:.0f}</ULX>\n                <ULY>{uly:.0f}</ULY>\n'
        f"                <XDIM>{r}</XDIM>\n                <YDIM>-{r}</YDIM>\n            </Geoposition>"
        for r in (10, 20, 60)
    )
    views = "\n".join(
        f'                <Mean_Viewing_Incidence_Angle bandId="{i}">\n'
        f'                    <ZENITH_ANGLE unit="deg">{4.0 + 0.05 * i + rng.uniform(0, 0.5):.10f}</ZENITH_ANGLE>\n'
        f'                    <AZIMUTH_ANGLE unit="deg">{100.0 + 0.3 * i + rng.uniform(0, 2):.10f}</AZIMUTH_ANGLE>\n'
        f"                </Mean_Viewing_Incidence_Angle>"
        for i in range(13)
    )
    grid = "\n".join(" ".join(f"{sun_zenith + 0.02 * (r - c):.4f}" for c in range(5)) for r in range(5))
    grid_az = "\n".join(" ".join(f"{sun_azimuth + 0.03 * (c - r):.4f}" for c in range(5)) for r in range(5))
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<n1:Level-{n}_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{n}_Tile_Metadata.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="https://psd-14.sentinel2.eo.esa.int/PSD/S2_PDI_Level-{n}_Tile_Metadata.xsd">
    <!-- Synthetic tile metadata written by nimbus.synthetic. -->
    <n1:General_Info>
        <TILE_ID metadataLevel="Brief">{tile_id}</TILE_ID>
        <DATASTRIP_ID metadataLevel="Standard">{datastrip_id}</DATASTRIP_ID>
        <DOWNLINK_PRIORITY metadataLevel="Standard">NOMINAL</DOWNLINK_PRIORITY>
        <SENSING_TIME metadataLevel="Standard">{_fmt_time(sensing, 6)}</SENSING_TIME>
        <Archiving_Info metadataLevel="Expertise">
            <ARCHIVING_CENTRE>SYNT</ARCHIVING_CENTRE>
            <ARCHIVING_TIME>{_fmt_time(sensing + timedelta(hours=2), 6)}</ARCHIVING_TIME>
        </Archiving_Info>
    </n1:General_Info>
    <n1:Geometric_Info>
        <Tile_Geocoding metadataLevel="Brief">
            <HORIZONTAL_CS_NAME>WGS84 / UTM zone {zone:02d}{hemi}</HORIZONTAL_CS_NAME>
            <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
{sizes}
{geos}
        </Tile_Geocoding>
        <Tile_Angles metadataLevel="Standard">
            <Sun_Angles_Grid>
                <Zenith>
                    <COL_STEP unit="m">{max(size * 10 // 4, 10)}</COL_STEP>
                    <ROW_STEP unit="m">{max(size * 10 // 4, 10)}</ROW_STEP>
                    <Values_List>
{chr(10).join('                        <VALUES>' + line + '</VALUES>' for line in grid.splitlines())}
                    </Values_List>
                </Zenith>
                <Azimuth>
                    <COL_STEP unit="m">{max(size * 10 // 4, 10)}</COL_STEP>
                    <ROW_STEP unit="m">{max(size * 10 // 4, 10)}</ROW_STEP>
                    <Values_List>
{chr(10).join('                        <VALUES>' + line + '</VALUES>' for line in grid_az.splitlines())}
                    </Values_List>
                </Azimuth>
            </Sun_Angles_Grid>
            <Mean_Sun_Angle>
                <ZENITH_ANGLE unit="deg">{sun_zenith:.10f}</ZENITH_ANGLE>
                <AZIMUTH_ANGLE unit="deg">{sun_azimuth:.10f}</AZIMUTH_ANGLE>
            </Mean_Sun_Angle>
            <Mean_Viewing_Incidence_Angle_List>
{views}
            </Mean_Viewing_Incidence_Angle_List>
        </Tile_Angles>
    </n1:Geometric_Info>
    <n1:Quality_Indicators_Info metadataLevel="Standard">
        <Image_Content_QI>
            <CLOUDY_PIXEL_PERCENTAGE>{cloud_cover:.6f}</CLOUDY_PIXEL_PERCENTAGE>
            <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
        </Image_Content_QI>
        <PVI_FILENAME>{granule_dir}/QI_DATA/PVI.jp2</PVI_FILENAME>
    </n1:Quality_Indicators_Info>
</n1:Level-{n}_Tile_ID>
"""


def _manifest(uri: str, files: list[str]) -> str:
    items = "\n".join(
        f'    <dataObject ID="{escape(Path(f).stem)}">\n      <byteStream mimeType="application/octet-stream">\n'
        f'        <fileLocation locatorType="URL" href="./{escape(f)}"/>\n      </byteStream>\n    </dataObject>'
        for f in files
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l1c_user_product">
  <!-- Synthetic product {uri} written by nimbus.synthetic -->
  <dataObjectSection>
{items}
  </dataObjectSection>
</xfdu:XFDU>
"""


# ----------------------------------------------------------------------------------------- writing


def _write_jp2(path: Path, data: np.ndarray, epsg: int, transform: tuple[float, ...]) -> None:
    import rasterio
    from affine import Affine

    with rasterio.open(
        path, "w", driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
        crs=f"EPSG:{epsg}", transform=Affine(*transform), QUALITY=100, REVERSIBLE="YES",
    ) as dst:  # fmt: skip
        dst.write(data, 1)


#: Colours of the truth classes for viewers: the class maps' palette (:data:`nimbus.legend.DEFAULT_LEGEND`).
_PALETTE = DEFAULT_LEGEND.gdal_colormap()


def _write_tif(
    path: Path, data: np.ndarray, epsg: int, transform: tuple[float, ...], nodata: float | None, palette: bool = False
) -> None:
    import rasterio
    from affine import Affine

    tiled = min(data.shape) >= 256
    opts = {"tiled": True, "blockxsize": 256, "blockysize": 256} if tiled else {}
    with atomic_path(path) as tmp:
        with rasterio.open(
            tmp, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
            crs=f"EPSG:{epsg}", transform=Affine(*transform), nodata=nodata, compress="deflate", **opts,
        ) as dst:  # fmt: skip
            dst.write(data, 1)
            if palette:
                dst.write_colormap(1, _PALETTE)
                dst.update_tags(**DEFAULT_LEGEND.tags())


def _quantise(refl: np.ndarray, offset: float, rng: np.random.Generator, noise: float) -> np.ndarray:
    """Reflectance -> DN with the processor's rule DN = refl * 10000 - offset, plus sensor noise."""
    noisy = refl + rng.normal(0.0, noise, refl.shape).astype(np.float32) * np.sqrt(np.maximum(refl, 0.01) / 0.1)
    dn = np.rint(noisy.astype(np.float64) * _QUANT) - offset  # round first: the same DN + offset in every baseline
    return np.clip(dn, 1, 65534).astype(np.uint16)


def make_product(
    out_dir: str | os.PathLike[str],
    size: int = 240,
    level: str = "L1C",
    baseline: str = "05.10",
    zipped: bool = False,
    seed: int = 0,
    tile: str = "32TMS",
    date: str | date_cls | None = None,
    nodata_swath: bool = False,
    cloud_fraction: float = 0.3,
    spacecraft: str = "Sentinel-2A",
) -> SyntheticProduct:
    """Write a synthetic Sentinel-2 product in the real SAFE format, with its truth map and auxiliary layers.

    Args:
        out_dir: folder for the product, ``<product_id>_truth.tif`` and ``<product_id>_aux/``.
        size: width and height in 10 m pixels; a multiple of 6 (20/60 m bands get size/2 and size/6).
        level: "L1C" (TOA reflectance) or "L2A" (BOA reflectance + SCL, AOT, WVP).
        baseline: processing baseline "NN.NN"; from "04.00" on DN carry the +1000 offset and the
            metadata lists RADIO_ADD_OFFSET / BOA_ADD_OFFSET = -1000.
        zipped: write ``<product_id>.zip`` (holding ``<product_id>.SAFE/``) instead of the folder.
        seed: random seed; the same arguments give the same product, bit for bit.
        tile: MGRS tile code, e.g. "32TMS" (sets the UTM CRS and the grid origin).
        date: sensing date ("YYYY-MM-DD" or a date); default: derived from the seed.
        nodata_swath: add a diagonal region without data (DN 0 in all bands, truth 255).
        cloud_fraction: target fraction of cloud (opacity >= 0.5) before thin edges, 0..1.
        spacecraft: "Sentinel-2A", "Sentinel-2B" or "Sentinel-2C".

    Returns:
        The :class:`SyntheticProduct`.

    Raises:
        ValueError: size not a positive multiple of 6, unknown level, malformed baseline or tile.
    """
    import rasterio  # noqa: F401  (fail early if the raster stack is missing)

    level = level.upper()
    if level not in ("L1C", "L2A"):
        raise ValueError(f"level must be 'L1C' or 'L2A', not {level!r}")
    if size <= 0 or size % 6:
        raise ValueError(f"size must be a positive multiple of 6 (10/20/60 m grids nest), not {size}")
    try:
        major, minor = baseline.split(".")
        baseline = f"{int(major):02d}.{int(minor):02d}"
    except ValueError as exc:
        raise ValueError(f"baseline must look like '05.10', not {baseline!r}") from exc
    tile = tile.upper().removeprefix("T")
    if len(tile) != 5 or not tile[:2].isdigit():
        raise ValueError(f"tile must be an MGRS code like '32TMS', not {tile!r}")

    rng = np.random.default_rng(seed)
    if date is None:
        day = date_cls(2023, 1, 1) + timedelta(days=int(seed * 37 % 365))
    elif isinstance(date, str):
        day = date_cls.fromisoformat(date)
    else:
        day = date
    sensing = datetime(day.year, day.month, day.day, 10, 20, 31, 24000, tzinfo=timezone.utc) + timedelta(seconds=int(seed % 600))
    generation = sensing + timedelta(hours=1, minutes=int(seed % 50), seconds=int(seed * 7 % 60))
    orbit = 1 + seed % 143
    sc = spacecraft[-2:].upper().replace("-", "")
    sat = f"S2{sc[-1]}"
    n = "1C" if level == "L1C" else "2A"
    bl = baseline.replace(".", "")
    sdate = sensing.strftime("%Y%m%dT%H%M%S")
    uri = f"{sat}_MSIL{n}_{sdate}_N{bl}_R{orbit:03d}_T{tile}_{generation.strftime('%Y%m%dT%H%M%S')}"
    abs_orbit = 30000 + seed % 10000
    granule = f"L{n}_T{tile}_A{abs_orbit:06d}_{sdate}"
    centre = "SYNT"
    gen_s = generation.strftime("%Y%m%dT%H%M%S")
    datastrip_id = f"{sat}_OPER_MSI_L{n}_DS_{centre}_{gen_s}_S{sdate}_N{baseline}"
    granule_id = f"{sat}_OPER_MSI_L{n}_TL_{centre}_{gen_s}_A{abs_orbit:06d}_T{tile}_N{baseline}"

    epsg, ulx, uly = tile_origin(tile)
    scene = _make_scene(size, rng, cloud_fraction, nodata_swath)
    offset = -1000.0 if baseline_has_offsets(baseline) else 0.0

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    safe_name = f"{uri}.SAFE"
    bands = L1C_BANDS if level == "L1C" else L2A_BANDS
    img_rel: dict[str, str] = {}
    for b in bands:
        r = NATIVE_RESOLUTION[b]
        if level == "L1C":
            img_rel[b] = f"GRANULE/{granule}/IMG_DATA/T{tile}_{sdate}_{b}"
        else:
            img_rel[b] = f"GRANULE/{granule}/IMG_DATA/R{r}m/T{tile}_{sdate}_{b}_{r}m"

    cloud_cover = 100.0 * float((scene.truth == CLASSES["cloud"]).sum()) / max(float((scene.truth != NODATA_CLASS).sum()), 1.0)
    sun_zenith = 25.0 + 40.0 * abs(np.cos(2 * np.pi * (day.timetuple().tm_yday - 172) / 365.0)) * 0.9
    sun_azimuth = 150.0 + rng.uniform(0, 15)

    transform10 = (10.0, 0.0, ulx, 0.0, -10.0, uly)
    noise_rng = np.random.default_rng([seed, 1])

    def build(root: Path) -> None:
        gdir = root / "GRANULE" / granule
        (gdir / "IMG_DATA").mkdir(parents=True)
        (gdir / "QI_DATA").mkdir()
        (gdir / "AUX_DATA").mkdir()
        (root / "DATASTRIP").mkdir()
        (root / "AUX_DATA").mkdir()
        (root / "HTML").mkdir()
        (root / "rep_info").mkdir()
        written: list[str] = []
        for b in bands:
            r = NATIVE_RESOLUTION[b]
            f = r // 10
            nodata = np.repeat(np.repeat(scene.nodata60, 6 // f, axis=0), 6 // f, axis=1)
            if b in BANDS:
                i = BANDS.index(b)
                band_refl = _block_mean(scene.reflectance(i, level), f)
                dn = _quantise(band_refl, offset, noise_rng, 0.002)
            elif b == "SCL":
                dn = _scl(scene, f).astype(np.uint8)
            elif b == "AOT":
                dn = np.clip(np.rint(120 + 20 * _block_mean(fractal_noise((size, size), noise_rng, 4.0), f)), 1, 1000).astype(np.uint16)
            else:  # WVP
                alt = _block_mean(scene.altitude, f)
                dn = np.clip(np.rint(2500 - 0.6 * alt), 100, 5000).astype(np.uint16)
            dn[nodata] = 0
            rel = img_rel[b] + ".jp2"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tr = (float(r), 0.0, ulx, 0.0, -float(r), uly)
            _write_jp2(path, dn, epsg, tr)
            written.append(rel)
        footprint = _footprint(epsg, ulx, uly, size)
        mtd = _product_xml(level, baseline, uri, sensing, generation, spacecraft, orbit, granule, list(img_rel.values()),
                           datastrip_id, granule_id, cloud_cover, footprint)  # fmt: skip
        (root / f"MTD_MSIL{n}.xml").write_text(mtd, encoding="utf-8")
        tl = _tile_xml(level, granule_id, datastrip_id, sensing + timedelta(seconds=3.5), epsg, size, ulx, uly, cloud_cover,
                       sun_zenith, sun_azimuth, f"GRANULE/{granule}", rng)  # fmt: skip
        (gdir / "MTD_TL.xml").write_text(tl, encoding="utf-8")
        (root / "INSPIRE.xml").write_text('<?xml version="1.0" encoding="UTF-8"?>\n<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd"/>\n')
        (root / "manifest.safe").write_text(_manifest(uri, [f"MTD_MSIL{n}.xml", f"GRANULE/{granule}/MTD_TL.xml", *written]))

    if zipped:
        final = out_dir / f"{uri}.zip"
        with atomic_path(final) as tmp_zip:
            staging = out_dir / f".{uri}.staging-{os.getpid()}"
            if staging.exists():
                shutil.rmtree(staging)
            try:
                build(staging / safe_name)
                with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_STORED) as zf:
                    for p in sorted((staging / safe_name).rglob("*")):
                        arc = f"{safe_name}/{p.relative_to(staging / safe_name).as_posix()}"
                        if p.is_dir():
                            zf.writestr(arc + "/", b"")
                        else:
                            zf.write(p, arc, compress_type=zipfile.ZIP_STORED if p.suffix == ".jp2" else zipfile.ZIP_DEFLATED)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        product_path = final
    else:
        final = out_dir / safe_name
        with atomic_path(final) as tmp_dir:
            build(tmp_dir)
        product_path = final

    truth_path = out_dir / f"{uri}_truth.tif"
    _write_tif(truth_path, scene.truth, epsg, transform10, NODATA_CLASS, palette=True)
    aux_dir = out_dir / f"{uri}_aux"
    aux_dir.mkdir(exist_ok=True)
    for r in (10, 20, 60):
        f = r // 10
        tr = (float(r), 0.0, ulx, 0.0, -float(r), uly)
        _write_tif(aux_dir / f"{tile}_altitude_{r}m.tif", _block_mean(scene.altitude, f), epsg, tr, None)
        _write_tif(aux_dir / f"{tile}_treecover_{r}m.tif", _block_mean(scene.treecover, f), epsg, tr, None)

    return SyntheticProduct(
        path=product_path,
        truth_path=truth_path,
        truth=scene.truth,
        aux_dir=aux_dir,
        product_id=uri,
        tile=tile,
        level=level,
        baseline=baseline,
        sensing_time=sensing,
        altitude=scene.altitude,
        treecover=scene.treecover,
        cloud_opacity=scene.opacity,
        ambiguous=(scene.opacity > 0.1) & (scene.opacity < 0.9) & (scene.truth != NODATA_CLASS),
        _scene=scene,
        crs=f"EPSG:{epsg}",
        transform=transform10,
    )


def _scl(scene: _Scene, f: int) -> np.ndarray:
    """A scene classification (SCL) at 10*f m from the truth, like Sen2Cor's classes."""
    t = scene.truth[::f, ::f] if f > 1 else scene.truth
    op = scene.opacity[::f, ::f] if f > 1 else scene.opacity
    tc = scene.treecover[::f, ::f] if f > 1 else scene.treecover
    scl = np.where(tc > 30, 4, 5).astype(np.uint8)
    scl[t == CLASSES["water"]] = 6
    scl[t == CLASSES["snow"]] = 11
    scl[(op > 0.2) & (op < 0.5)] = 10
    scl[t == CLASSES["cloud"]] = 8
    scl[(t == CLASSES["cloud"]) & (op > 0.95)] = 9
    scl[t == NODATA_CLASS] = 0
    return scl


def _footprint(epsg: int, ulx: float, uly: float, size: int) -> str:
    try:
        from rasterio.warp import transform as warp_transform

        xs = [ulx, ulx + size * 10, ulx + size * 10, ulx, ulx]
        ys = [uly, uly, uly - size * 10, uly - size * 10, uly]
        lon, lat = warp_transform(f"EPSG:{epsg}", "EPSG:4326", xs, ys)
        return " ".join(f"{la:.10f} {lo:.10f}" for la, lo in zip(lat, lon))
    except Exception:  # noqa: BLE001  (a footprint is cosmetic)
        return ""
