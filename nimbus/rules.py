"""A physically based classifier: spectral rules from the literature, per pixel, in numpy.

The four Nimbus classes (0 cloud, 1 ground, 2 snow, 3 water; 255 no data) from published tests on
top-of-atmosphere (L1C) or surface (L2A) reflectance, with no training and no scene tuning:

- **snow**: Let-It-Snow pass 1 (Gascoin et al., 2019, Hydrol. Earth Syst. Sci. 23:2887, "LIS"):
  NDSI and a red-band darkness test; the NDSI ramp of the Sen2Cor scene classification (Main-Knorn
  et al., 2017, Proc. SPIE 10427; L2A ATBD, thresholds of the ``L2A_CAL_SC_GIPP`` file); Fmask's NIR
  test (Zhu & Woodcock, 2012, Remote Sens. Environ. 118:83); the snow branch of the Hollstein et al.
  (2016, Remote Sens. 8:666) decision tree (B05/B11) or Sen2Cor's B04/B11 ratio to tell snow from ice
  clouds. With an altitude array, LIS pass 2: a scene snow line, above which the relaxed NDSI and red
  thresholds apply.
- **cloud**: the potential-cloud-pixel tests of Fmask (Zhu & Woodcock, 2012; Zhu et al., 2015,
  Remote Sens. Environ. 159:269; Qiu et al., 2019, Fmask 4.0, Remote Sens. Environ. 231:111205):
  basic test (B12, NDSI, NDVI), whiteness, haze-optimised transformation (HOT) and the NIR/SWIR1
  ratio; multiplied by the Sen2Cor cloud confidence steps (red brightness, NDSI, NDVI, B8A/B03
  vegetation, B02/B11 soil, B8A/B11 desert rock and sand, B04/B11). With B10 (L1C), the Sen2Cor
  cirrus test.
- **water**: MNDWI (Xu, 2006, Int. J. Remote Sens. 27:3025) and NDWI (McFeeters, 1996, Int. J.
  Remote Sens. 17:1425) both positive, the Fmask water test (low NDVI and low NIR, Zhu & Woodcock,
  2012, eq. 5) and Sen2Cor's blue ceiling for water.
- **ground**: everything else.

Every test is a linear ramp between two values (Sen2Cor writes its confidences the same way): the
published threshold sits in the middle of the ramp, or the ramp *is* the published ``T1..T2`` pair.
Where a paper gives one number, the half-width of the ramp (a few hundredths of reflectance or of an
index) is ours and is said next to it. The class memberships are combined in a fixed order so that
the four probabilities sum to one by construction::

    P(snow)  = s
    P(cloud) = (1 - s) c
    P(water) = (1 - s)(1 - c) w
    P(ground)= (1 - s)(1 - c)(1 - w)

Snow comes first as in Sen2Cor (a pixel taken as snow is never cloud), which is why the snow test
carries the ice-cloud guards. The same arithmetic is written once against a tiny operator interface
(:class:`_NumpyOps` here, an ONNX graph builder in ``export/rules_onnx.py``), so the ONNX model and
this module compute the same float32 numbers. Per-pixel only: no cloud shadows, no buffers, no
object tests; the scene-level LIS snow line is the one exception and needs ``altitude``.

Inputs are reflectances (0..1; pass ``scale=1e-4`` for harmonised DN). The bands needed are
:data:`REQUIRED_BANDS`; :data:`OPTIONAL_BANDS` are used when present. B09 is not used.

Example:
    >>> import numpy as np
    >>> snow = {b: np.full((1, 1), v, np.float32) for b, v in
    ...         dict(B02=0.90, B03=0.89, B04=0.87, B08=0.78, B11=0.06).items()}
    >>> int(classify(snow)[0, 0])
    2
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nimbus.errors import MissingBandError, NimbusError

__all__ = [
    "CLASS_ORDER",
    "LIS_SNOWLINE",
    "ONNX_BANDS",
    "OPTIONAL_BANDS",
    "REQUIRED_BANDS",
    "RULE_BANDS",
    "classify",
    "probabilities",
    "rule_scores",
    "rules_graph",
    "rules_labels",
    "snowline",
]

NODATA = 255  # class value of pixels without data

#: Output order of :func:`probabilities` (the Nimbus class values 0..3).
CLASS_ORDER: tuple[str, ...] = ("cloud", "ground", "snow", "water")

#: Bands every rule needs.
REQUIRED_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11")

#: Bands used when present: B05 (Hollstein snow/ice-cloud split), B8A (Sen2Cor tests; else B08),
#: B10 (cirrus, L1C only), B12 (Fmask basic test).
OPTIONAL_BANDS: tuple[str, ...] = ("B05", "B8A", "B10", "B12")

#: Every band the rules can use, in ``nimbus.bands.BANDS`` order.
RULE_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B08", "B8A", "B10", "B11", "B12")

#: The bands of the shipped ONNX rules model: present in L1C and L2A alike (no B10).
ONNX_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B08", "B8A", "B11", "B12")

#: Let-It-Snow pass-2 parameters (Gascoin et al., 2019, Table 2): elevation band height dz (m),
#: snow fraction fsnow_lim and clear fraction fclear_lim, relaxed NDSI n2 and red r2.
LIS_SNOWLINE: dict[str, float] = {"dz": 100.0, "fsnow_lim": 0.1, "fclear_lim": 0.1, "n2": 0.15, "r2": 0.04}

#: Sen2Cor switches the cirrus test off above this altitude (m), where B10 sees the surface.
_CIRRUS_MAX_ALTITUDE = 1500.0

#: Smallest denominator of a ratio or normalised difference (Sen2Cor's ``LOWEST``).
_EPS = 1e-4


# ---------------------------------------------------------------------------- operators
class _NumpyOps:
    """The operator set the rules are written in, on float32 numpy arrays."""

    def const(self, v: float) -> np.float32:
        return np.float32(v)

    def add(self, a: Any, b: Any) -> Any:
        return np.add(a, b, dtype=np.float32)

    def sub(self, a: Any, b: Any) -> Any:
        return np.subtract(a, b, dtype=np.float32)

    def mul(self, a: Any, b: Any) -> Any:
        return np.multiply(a, b, dtype=np.float32)

    def div(self, a: Any, b: Any) -> Any:
        return np.divide(a, b, dtype=np.float32)

    def max(self, a: Any, b: Any) -> Any:
        return np.maximum(a, b, dtype=np.float32)

    def min(self, a: Any, b: Any) -> Any:
        return np.minimum(a, b, dtype=np.float32)

    def abs(self, a: Any) -> Any:
        return np.abs(a)

    def clip01(self, a: Any) -> Any:
        return np.clip(a, np.float32(0.0), np.float32(1.0)).astype(np.float32, copy=False)


def _rules(ops: Any, b: Mapping[str, Any], extra: Mapping[str, Any] | None = None) -> tuple[Any, Any, Any]:
    """Snow, cloud and water memberships (0..1) from reflectances ``b`` (band -> operand).

    Written against ``ops`` (numpy or ONNX builder): the order of the operations *is* the
    numerical definition, shared by both. ``extra`` may hold ``cirrus_ok`` (1 where the cirrus test
    may apply, numpy only) and ``snow2`` (LIS pass-2 snow membership, numpy only).
    """
    c = ops.const
    one = c(1.0)

    def ramp(x: Any, lo: float, hi: float) -> Any:
        """0 at ``lo``, 1 at ``hi`` (``hi < lo`` gives a falling ramp), linear between."""
        return ops.clip01(ops.mul(ops.sub(x, c(lo)), c(1.0 / (hi - lo))))

    def below(x: Any, t: Any, half: float) -> Any:
        """1 where ``x`` is well below the (array) threshold ``t``, linear over ``t +- half``."""
        return ops.clip01(ops.add(ops.mul(ops.sub(t, x), c(0.5 / half)), c(0.5)))

    def ratio(x: Any, y: Any) -> Any:
        return ops.div(x, ops.max(y, c(_EPS)))

    def nd(x: Any, y: Any) -> Any:
        return ops.div(ops.sub(x, y), ops.max(ops.add(x, y), c(_EPS)))

    def not_(x: Any) -> Any:
        return ops.sub(one, x)

    blue, green, red, nir, swir1 = b["B02"], b["B03"], b["B04"], b["B08"], b["B11"]
    nir_a = b.get("B8A", nir)  # Sen2Cor works on B8A; B08 where B8A is absent
    ndsi = nd(green, swir1)  # also Xu's MNDWI: (green - SWIR1) / (green + SWIR1) with S2 B03, B11
    ndvi = nd(nir, red)
    ndwi = nd(green, nir)  # McFeeters (1996)
    r_red_swir = ratio(red, swir1)

    # ----------------------------------------------------------------- snow
    s = ramp(ndsi, 0.35, 0.50)  # Sen2Cor T1_NDSI_SNW, T2_NDSI_SNW; LIS pass 1 n1 = 0.4 lies inside
    s = ops.mul(s, ramp(red, 0.18, 0.22))  # LIS pass 1 r1 = 0.2 (red darkness test); half-width 0.02 ours
    s = ops.mul(s, ramp(nir, 0.09, 0.13))  # Fmask snow test NIR > 0.11 (Zhu & Woodcock 2012, eq. 20); +-0.02 ours
    if "B05" in b:  # Hollstein et al. (2016) tree: B03 > 0.319 and B05/B11 > 4.33 -> snow, else cloud/cirrus
        s = ops.mul(s, ramp(ratio(b["B05"], swir1), 3.9, 4.8))  # 4.33 +-10 % (ours)
    else:  # Sen2Cor step 6bis: B04/B11 between 3 and 6 lowers the cloud confidence (snow/ice, not cloud)
        s = ops.mul(s, ramp(r_red_swir, 3.0, 6.0))
    if extra is not None and "snow2" in extra:  # LIS pass 2 above the snow line (numpy only)
        s = ops.max(s, extra["snow2"])

    # ----------------------------------------------------------------- cloud
    # Fmask potential cloud pixels (Zhu & Woodcock 2012 eqs. 1-4; kept in Fmask 4.0, Qiu et al. 2019)
    mean_vis = ops.max(ops.mul(ops.add(ops.add(blue, green), red), c(1.0 / 3.0)), c(_EPS))
    dev = ops.add(ops.add(ops.abs(ops.sub(blue, mean_vis)), ops.abs(ops.sub(green, mean_vis))), ops.abs(ops.sub(red, mean_vis)))
    whiteness = ops.div(dev, mean_vis)
    hot = ops.sub(ops.sub(blue, ops.mul(red, c(0.5))), c(0.08))  # HOT = B02 - 0.5 B04 - 0.08 (Zhang et al. 2002)
    k = ramp(whiteness, 0.8, 0.6)  # Fmask whiteness < 0.7; +-0.1 ours
    k = ops.mul(k, ramp(hot, -0.02, 0.02))  # Fmask HOT > 0; +-0.02 ours
    k = ops.mul(k, ramp(ratio(nir, swir1), 0.70, 0.80))  # Fmask NIR/SWIR1 > 0.75; +-0.05 ours
    k = ops.mul(k, ramp(ndsi, 0.85, 0.75))  # Fmask basic test NDSI < 0.8; +-0.05 ours
    k = ops.mul(k, ramp(ndvi, 0.85, 0.75))  # Fmask basic test NDVI < 0.8; +-0.05 ours
    if "B12" in b:
        k = ops.mul(k, ramp(b["B12"], 0.02, 0.04))  # Fmask basic test SWIR2 > 0.03; +-0.01 ours
    # Sen2Cor cloud confidence (L2A ATBD; GIPP thresholds), each step multiplies the confidence
    bright = ramp(red, 0.06, 0.25)  # step 1: T1_B04 = 0.06, T2_B04 = 0.25, squared as in Sen2Cor
    k = ops.mul(k, ops.mul(bright, bright))
    k = ops.mul(k, ramp(ndsi, -0.24, -0.16))  # step 1b: T1_NDSI_CLD, T2_NDSI_CLD
    veg = ops.mul(ramp(ndvi, 0.36, 0.42), ramp(blue, 0.17, 0.13))  # step 3: T1/T2_NDVI where B02 < 0.15 (+-0.02 ours)
    k = ops.mul(k, not_(veg))
    k = ops.mul(k, not_(ramp(ratio(nir_a, green), 1.5, 2.5)))  # step 4: T1/T2_R_B8A_B03 (senescing vegetation)
    r_b2_b11 = ratio(blue, swir1)  # step 5.1: soils where B02 < clip(-0.40 r + 0.46, 0.15, 0.32) and r < 0.70..1.0
    ft = ops.max(ops.min(ops.add(ops.mul(r_b2_b11, c(-0.40)), c(0.46)), c(0.32)), c(0.15))  # T11_B02, T12_B02
    soil = ops.mul(not_(ramp(r_b2_b11, 0.70, 1.0)), below(blue, ft, 0.01))  # gate +-0.01 ours
    k = ops.mul(k, not_(soil))
    r_8a_11 = ratio(nir_a, swir1)  # step 6: rock/sand where B02 < clip(-0.25 r + 0.475, 0.16, 0.35) and r < 0.90..1.10
    ft = ops.max(ops.min(ops.add(ops.mul(r_8a_11, c(-0.25)), c(0.475)), c(0.35)), c(0.16))
    desert = ops.mul(not_(ramp(r_8a_11, 0.90, 1.10)), below(blue, ft, 0.01))
    k = ops.mul(k, not_(desert))
    k = ops.mul(k, not_(ramp(r_red_swir, 3.0, 6.0)))  # step 6bis: T1/T2_R_B04_B11 = 3, 6
    # Sen2Cor step 7 calls a pixel cloud from confidence T_CLOUD_MP = 0.20 on (medium probability, SCL 8):
    # scale the confidence so that 0.20 is the 0.5 membership (cloud wins over ground there)
    k = ops.clip01(ops.mul(k, c(2.5)))
    if "B10" in b:  # Sen2Cor step 7: thin cirrus from T1_B10 = 0.012 (to T2_B10 = 0.035), only where B02 < 0.5
        cirrus = ops.mul(ramp(b["B10"], 0.008, 0.016), ramp(blue, 0.52, 0.48))  # 0.012 +-0.004, 0.5 +-0.02 ours
        if extra is not None and "cirrus_ok" in extra:  # switched off above 1500 m (Sen2Cor, with a DEM)
            cirrus = ops.mul(cirrus, extra["cirrus_ok"])
        k = ops.max(k, cirrus)
        s = ops.mul(s, not_(cirrus))  # Sen2Cor assigns cirrus over snow darker than B02 = 0.5

    # ----------------------------------------------------------------- water
    # MNDWI > 0 (Xu 2006), or, for water so dark that green and SWIR1 sink into the noise (over-corrected
    # L2A sea), the shadow-robust AWEIsh > 0 (Feyisa et al. 2014, Remote Sens. Environ. 140:23):
    # AWEIsh = B02 + 2.5 B03 - 1.5 (B08 + B11) - 0.25 B12 (B11 for B12 when absent); ramps +-0.05, +-0.01 ours
    awei = ops.sub(ops.sub(ops.add(blue, ops.mul(green, c(2.5))), ops.mul(ops.add(nir, swir1), c(1.5))), ops.mul(b.get("B12", swir1), c(0.25)))
    w = ops.max(ramp(ndsi, -0.05, 0.05), ramp(awei, -0.01, 0.01))
    w = ops.mul(w, ramp(ndwi, -0.05, 0.05))  # and NDWI > 0 (McFeeters 1996); +-0.05 ours
    # Fmask water test (Zhu & Woodcock 2012, eq. 5): (NDVI < 0.01 and NIR < 0.11) or (NDVI < 0.1 and NIR < 0.05)
    f1 = ops.mul(ramp(ndvi, 0.03, -0.01), ramp(nir, 0.12, 0.10))  # +-0.02 NDVI, +-0.01 NIR ours
    f2 = ops.mul(ramp(ndvi, 0.12, 0.08), ramp(nir, 0.06, 0.04))
    w = ops.mul(w, ops.max(f1, f2))
    w = ops.mul(w, ramp(blue, 0.22, 0.18))  # Sen2Cor step 5.2: water B02 < 0.2 (T_B02); +-0.02 ours
    return s, k, w


def _combine(ops: Any, s: Any, k: Any, w: Any) -> tuple[Any, Any, Any, Any]:
    """(cloud, ground, snow, water) probabilities, summing to one (see the module docstring)."""
    one = ops.const(1.0)
    ns = ops.sub(one, s)
    p_cloud = ops.mul(ns, k)
    rest = ops.mul(ns, ops.sub(one, k))
    p_water = ops.mul(rest, w)
    p_ground = ops.mul(rest, ops.sub(one, w))
    return p_cloud, p_ground, s, p_water


def rules_graph(ops: Any, bands: Mapping[str, Any]) -> tuple[Any, Any, Any, Any]:
    """The rules on any operator backend: (cloud, ground, snow, water) probabilities.

    Used by ``export/rules_onnx.py`` to write the same arithmetic as an ONNX graph.

    Args:
        ops: an object with ``const, add, sub, mul, div, max, min, abs, clip01`` (see :class:`_NumpyOps`).
        bands: band name -> operand holding reflectance (0..1), at least :data:`REQUIRED_BANDS`.

    Returns:
        The four probability operands in class order.
    """
    s, k, w = _rules(ops, bands)
    return _combine(ops, s, k, w)


# ---------------------------------------------------------------------------- inputs
def _as_bands(
    reflectance: Mapping[str, np.ndarray] | np.ndarray, bands: Sequence[str] | None, scale: float
) -> dict[str, np.ndarray]:
    if isinstance(reflectance, Mapping):
        src = dict(reflectance)
    else:
        arr = np.asarray(reflectance)
        if arr.ndim != 3 or bands is None or len(bands) != arr.shape[0]:
            raise NimbusError(
                f"rules: give a dict of bands, or a (C, H, W) array with C band names (got shape {arr.shape}, bands {bands})"
            )
        src = {str(n): arr[i] for i, n in enumerate(bands)}
    missing = [n for n in REQUIRED_BANDS if n not in src]
    if missing:
        raise MissingBandError(f"rules: missing band(s) {', '.join(missing)}; the rules need {', '.join(REQUIRED_BANDS)}")
    out: dict[str, np.ndarray] = {}
    shape = np.shape(src["B02"])
    for n in RULE_BANDS:
        if n not in src:
            continue
        a = np.asarray(src[n], dtype=np.float32)
        if a.shape != shape:
            raise NimbusError(f"rules: band {n} has shape {a.shape}, B02 has {shape}; resample the bands to one grid first")
        out[n] = a * np.float32(scale) if scale != 1.0 else a
    return out


def _valid(b: Mapping[str, np.ndarray], valid: np.ndarray | None) -> np.ndarray:
    ok = np.ones(np.shape(b["B02"]), bool)
    for a in b.values():
        ok &= np.isfinite(a) & (a > 0)  # nodata is 0 (harmonised DN and reflectance alike)
    if valid is not None:
        ok &= np.asarray(valid, bool)
    return ok


def snowline(
    snow: np.ndarray, cloud: np.ndarray, altitude: np.ndarray, valid: np.ndarray, dz: float | None = None
) -> float | None:
    """The Let-It-Snow snow line: the altitude above which pass-2 snow thresholds apply.

    Gascoin et al. (2019), section 2.2.2: the clear pixels are binned into elevation bands of ``dz``;
    the snow line is the lower edge of the lowest band whose snow fraction exceeds ``fsnow_lim``,
    lowered by two bands. Not computed (``None``) when the clear pixels are fewer than
    ``fclear_lim`` of the valid ones or no band holds enough snow.

    Args:
        snow: bool, pass-1 snow.
        cloud: bool, cloud.
        altitude: metres, same shape (NaN = unknown).
        valid: bool, pixels with data.
        dz: elevation band height (default :data:`LIS_SNOWLINE` ``dz`` = 100 m).

    Returns:
        The snow-line altitude in metres, or None.
    """
    dz = float(dz or LIS_SNOWLINE["dz"])
    known = valid & np.isfinite(altitude)
    clear = known & ~cloud
    if known.sum() == 0 or clear.sum() < LIS_SNOWLINE["fclear_lim"] * known.sum():
        return None
    z = altitude[clear]
    bins = np.floor(z / dz).astype(np.int64)
    lo = int(bins.min())
    total = np.bincount(bins - lo)
    snowy = np.bincount(bins - lo, weights=snow[clear].astype(np.float64), minlength=len(total))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(total > 0, snowy / np.maximum(total, 1), 0.0)
    hits = np.flatnonzero(frac > LIS_SNOWLINE["fsnow_lim"])
    if hits.size == 0:
        return None
    return float((lo + int(hits[0]) - 2) * dz)


# ---------------------------------------------------------------------------- public API
def rule_scores(
    reflectance: Mapping[str, np.ndarray] | np.ndarray,
    bands: Sequence[str] | None = None,
    altitude: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    scale: float = 1.0,
) -> dict[str, np.ndarray]:
    """Per-pixel memberships of the snow, cloud and water tests (0..1, float32).

    Args:
        reflectance: ``{band: (H, W)}`` or a (C, H, W) array with ``bands``; reflectance 0..1
            (TOA for L1C, surface for L2A), or harmonised DN with ``scale=1e-4``.
        bands: band names of a (C, H, W) array.
        altitude: optional (H, W) altitude in metres: LIS pass-2 snow above the scene's snow line,
            and the cirrus test switched off above 1500 m (Sen2Cor).
        valid: optional (H, W) bool; pixels with a 0 (nodata) or non-finite band are invalid anyway.
        scale: factor applied to the input (1e-4 for DN).

    Returns:
        ``{"snow", "cloud", "water"}`` memberships, and ``"snowline"`` (0-d array, NaN when none).
    """
    b = _as_bands(reflectance, bands, scale)
    ops = _NumpyOps()
    extra: dict[str, np.ndarray] = {}
    line = np.float32(np.nan)
    if altitude is not None:
        alt = np.asarray(altitude, np.float32)
        if alt.shape != b["B02"].shape:
            raise NimbusError(f"rules: altitude has shape {alt.shape}, the bands {b['B02'].shape}")
        ok = _valid(b, valid)
        if "B10" in b:
            extra["cirrus_ok"] = (~(alt > _CIRRUS_MAX_ALTITUDE)).astype(np.float32)
        s1, k1, _ = _rules(ops, b, extra)
        zs = snowline(s1 > 0.5, (k1 * (1 - s1)) > 0.5, alt, ok)
        if zs is not None:
            line = np.float32(zs)
            ndsi = ops.div(ops.sub(b["B03"], b["B11"]), ops.max(ops.add(b["B03"], b["B11"]), np.float32(_EPS)))
            n2, r2 = LIS_SNOWLINE["n2"], LIS_SNOWLINE["r2"]
            # LIS pass 2: NDSI > n2 and red > r2 above the snow line (ramps +-0.05 NDSI, +-0.01 red, ours)
            snow2 = np.clip((ndsi - np.float32(n2 - 0.05)) * np.float32(10.0), 0, 1) * np.clip(
                (b["B04"] - np.float32(r2 - 0.01)) * np.float32(50.0), 0, 1
            )
            guard = np.clip((b["B04"] / np.maximum(b["B11"], np.float32(_EPS)) - 3.0) / 3.0, 0, 1)  # Sen2Cor 6bis
            if "B05" in b:
                guard = np.clip((b["B05"] / np.maximum(b["B11"], np.float32(_EPS)) - 3.9) / 0.9, 0, 1)  # Hollstein
            extra["snow2"] = (snow2 * guard * (alt > zs)).astype(np.float32)
    s, k, w = _rules(ops, b, extra)
    return {"snow": s, "cloud": k, "water": w, "snowline": np.asarray(line)}


def probabilities(
    reflectance: Mapping[str, np.ndarray] | np.ndarray,
    bands: Sequence[str] | None = None,
    altitude: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Class probabilities (4, H, W) float32 in class order cloud, ground, snow, water; sum 1.

    Args:
        reflectance: see :func:`rule_scores`.
        bands: see :func:`rule_scores`.
        altitude: see :func:`rule_scores`.
        valid: see :func:`rule_scores` (invalid pixels still get numbers; :func:`classify` masks them).
        scale: see :func:`rule_scores`.

    Returns:
        (4, H, W) float32 probabilities.
    """
    sc = rule_scores(reflectance, bands, altitude=altitude, valid=valid, scale=scale)
    return np.stack(_combine(_NumpyOps(), sc["snow"], sc["cloud"], sc["water"])).astype(np.float32, copy=False)


def classify(
    reflectance: Mapping[str, np.ndarray] | np.ndarray,
    bands: Sequence[str] | None = None,
    valid: np.ndarray | None = None,
    altitude: np.ndarray | None = None,
    scale: float = 1.0,
) -> np.ndarray:
    """Nimbus classes from spectral rules: 0 cloud, 1 ground, 2 snow, 3 water, 255 no data.

    The arg-max of :func:`probabilities` (first class on ties), which is what the ONNX rules model
    gives through the Segmenter.

    Args:
        reflectance: ``{band: (H, W)}`` or a (C, H, W) array with ``bands``: L1C (TOA) or L2A
            (surface) reflectance 0..1, at least B02 B03 B04 B08 B11 (B05 B8A B10 B12 used when present).
        bands: band names of a (C, H, W) array.
        valid: optional bool mask; pixels with a 0 or non-finite band are no data anyway.
        altitude: optional altitude (m) for the LIS snow line and the cirrus altitude limit.
        scale: factor applied to the input (``1e-4`` for harmonised DN).

    Returns:
        (H, W) uint8 class map.

    Raises:
        MissingBandError: when a required band is missing.
        NimbusError: when the input is not a band dict / (C, H, W) array with names, or shapes differ.
    """
    b = _as_bands(reflectance, bands, scale)
    p = probabilities(b, altitude=altitude, valid=valid)
    out = np.argmax(p, axis=0).astype(np.uint8)
    out[~_valid(b, valid)] = NODATA
    return out


def rules_labels(
    product: Any,
    res: int = 20,
    window: Any = None,
    altitude: np.ndarray | None = None,
    cirrus: bool = True,
) -> np.ndarray:
    """Rule-based training labels for a window of a product (the ``nimbus labels --rules`` source).

    Reads the rule bands present in the product (:data:`RULE_BANDS`, at least
    :data:`REQUIRED_BANDS`) as harmonised DN with ``product.read(..., kind="harmonized")`` on the
    ``res`` grid and classifies them as reflectance (DN x 1e-4, the arithmetic of the ONNX model). L1C products use B10 (cirrus), L2A products do not have it.

    Args:
        product: an opened product (:func:`nimbus.product.open_product`).
        res: grid resolution in metres (10, 20 or 60).
        window: rasterio ``Window`` on the ``res`` grid (None = the whole product).
        altitude: optional (h, w) altitude (m) of the same window: LIS snow line, cirrus altitude limit.
        cirrus: use B10 when the product has it (L1C). B10 is a 60 m band: the test also marks a
            halo of about one 60 m pixel around thick clouds as cloud. False gives the bands of the
            ONNX rules model (the same map as ``nimbus segment --model rules``).

    Returns:
        (h, w) uint8 classes, 255 where the product has no data.

    Raises:
        MissingBandError: when the product lacks a required band.
    """
    have = set(product.bands)
    missing = [n for n in REQUIRED_BANDS if n not in have]
    if missing:
        raise MissingBandError(
            f"{getattr(product, 'path', 'product')}: rules labels need bands {', '.join(REQUIRED_BANDS)}; missing {', '.join(missing)}"
        )
    names = [n for n in RULE_BANDS if n in have and (cirrus or n != "B10")]
    # harmonised DN x 1e-4, exactly what the ONNX rules model computes from the Segmenter's input
    data, valid = product.read(names, res=res, window=window, kind="harmonized")
    return classify(data, names, valid=valid, altitude=altitude, scale=1e-4)
