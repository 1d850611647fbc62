"""The spectral rule classifier of :mod:`nimbus.rules` as a Nimbus ONNX model (no torch).

The graph is written with ``onnx.helper`` from the *same* function as the numpy classifier
(:func:`nimbus.rules.rules_graph`), through an operator backend that emits ONNX nodes instead of
computing: the two perform the same float32 operations in the same order, so the arg-max of the
model equals :func:`nimbus.rules.classify` (with ``scale=1e-4``) on the same harmonised DN.

Contract (as every Nimbus model): input ``input`` (N, C, H, W) float32 harmonised DN (reflectance x
10 000, the -1000 offset of baselines >= 04.00 removed, 0 = no data), output ``probabilities``
(N, 4, H, W) summing to 1 per pixel, dynamic N/H/W, opset 18, IR version 9, ``nimbus.*`` metadata
from :class:`nimbus.modelspec.ModelSpec`. The channels (:data:`nimbus.rules.ONNX_BANDS`) exist in
L1C and L2A products alike, so one file serves both levels; ``cirrus=True`` builds an L1C-only
variant that also reads B10.

Run ``python export/rules_onnx.py`` to rewrite ``export/nimbus-rules.onnx`` and its card.

Example:
    >>> build_rules_model("nimbus-rules.onnx")   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nimbus.atomic import atomic_path
from nimbus.errors import ModelError
from nimbus.modelspec import ModelSpec
from nimbus.rules import ONNX_BANDS, REQUIRED_BANDS, rules_graph

__all__ = ["RULES_CARD", "RULES_MODEL", "build_rules_model", "rules_spec", "write_rules_card"]

#: File name of the shipped rules model (``nimbus segment --model rules``).
RULES_MODEL: str = "nimbus-rules.onnx"

#: Its model card.
RULES_CARD: str = "nimbus-rules.md"

_VERSION = "1"

_DESCRIPTION = (
    "Spectral rules from the literature, no training: Fmask 4.0 potential-cloud tests, Sen2Cor L2A "
    "scene-classification confidences, Let-It-Snow NDSI/red snow test, Hollstein et al. 2016 snow "
    "split, MNDWI/NDWI/AWEIsh water with the Fmask water test. Per pixel; works on L1C and L2A."
)


class _OnnxOps:
    """The operator set of :func:`nimbus.rules.rules_graph`, emitting ONNX nodes (operands are tensor names)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._consts: dict[float, str] = {}
        self._n = 0

    def _name(self, op: str) -> str:
        self._n += 1
        return f"{op.lower()}_{self._n}"

    def const(self, v: float) -> str:
        v32 = float(np.float32(v))
        if v32 not in self._consts:
            name = f"c{len(self._consts)}"
            self.inits.append(numpy_helper.from_array(np.array(v32, np.float32), name))
            self._consts[v32] = name
        return self._consts[v32]

    def _node(self, op: str, *inputs: str) -> str:
        out = self._name(op)
        self.nodes.append(helper.make_node(op, list(inputs), [out]))
        return out

    def add(self, a: str, b: str) -> str:
        return self._node("Add", a, b)

    def sub(self, a: str, b: str) -> str:
        return self._node("Sub", a, b)

    def mul(self, a: str, b: str) -> str:
        return self._node("Mul", a, b)

    def div(self, a: str, b: str) -> str:
        return self._node("Div", a, b)

    def max(self, a: str, b: str) -> str:
        return self._node("Max", a, b)

    def min(self, a: str, b: str) -> str:
        return self._node("Min", a, b)

    def abs(self, a: str) -> str:
        return self._node("Abs", a)

    def clip01(self, a: str) -> str:
        return self._node("Clip", a, self.const(0.0), self.const(1.0))


def rules_spec(channels: Sequence[str] = ONNX_BANDS, name: str = "nimbus-rules", window: int = 512, overlap: float = 0.0) -> ModelSpec:
    """The :class:`ModelSpec` written into the rules model.

    Args:
        channels: input bands in order.
        name: model name (output files are tagged ``<name>-v<version>``).
        window: window size in pixels (rules are per pixel: any size works).
        overlap: default overlap (0: per-pixel rules need no blending).

    Returns:
        The spec (20 m, dynamic H/W, normalisation and "softmax" in the graph).
    """
    n = len(channels)
    return ModelSpec(
        channels=tuple(channels),
        mean=(0.0,) * n,
        std=(1.0,) * n,
        resolution=20.0,
        window=int(window),
        overlap=float(overlap),
        dynamic_hw=True,
        normalization_in_graph=True,
        softmax_in_graph=True,
        name=name,
        version=_VERSION,
        description=_DESCRIPTION,
    )


def build_rules_model(
    path: str | os.PathLike[str],
    cirrus: bool = False,
    window: int = 512,
    overlap: float = 0.0,
    name: str | None = None,
) -> Path:
    """Write the rule classifier as a Nimbus ONNX model.

    Args:
        path: output ``.onnx`` file (written atomically).
        cirrus: also read B10 and apply the Sen2Cor cirrus test: an L1C-only model (L2A has no B10).
        window: default window of the spec.
        overlap: default overlap of the spec.
        name: model name (default ``nimbus-rules``, ``nimbus-rules-l1c`` with ``cirrus``).

    Returns:
        The written path.

    Raises:
        ModelError: when the graph fails the ONNX checker.
    """
    channels = tuple(sorted(set(ONNX_BANDS) | ({"B10"} if cirrus else set()), key=_band_order))
    name = name or ("nimbus-rules-l1c" if cirrus else "nimbus-rules")
    ops = _OnnxOps()
    n = len(channels)
    axis = numpy_helper.from_array(np.array([1], np.int64), "axis1")
    ops.inits.append(axis)
    scaled = ops.mul("input", ops.const(1e-4))  # harmonised DN -> reflectance, as classify(scale=1e-4)
    bands: dict[str, Any] = {}
    for i, band in enumerate(channels):
        lo = numpy_helper.from_array(np.array([i], np.int64), f"start_{band}")
        hi = numpy_helper.from_array(np.array([i + 1], np.int64), f"end_{band}")
        ops.inits += [lo, hi]
        out = f"refl_{band}"
        ops.nodes.append(helper.make_node("Slice", [scaled, lo.name, hi.name, "axis1"], [out]))
        bands[band] = out
    probs = rules_graph(ops, bands)
    ops.nodes.append(helper.make_node("Concat", list(probs), ["probabilities"], axis=1))
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n, "H", "W"])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 4, "H", "W"])
    graph = helper.make_graph(ops.nodes, name.replace("-", "_"), [x], [y], initializer=ops.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="nimbus.export.rules_onnx")
    model.ir_version = 9
    model.doc_string = _DESCRIPTION
    helper.set_model_props(model, rules_spec(channels, name, window, overlap).to_metadata())
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:  # pragma: no cover - a bug in the builder
        raise ModelError(f"rules model for {path} fails the ONNX checker: {exc}") from exc
    path = Path(path)
    with atomic_path(path, validate=None) as tmp:
        onnx.save(model, tmp)
    return path


def _band_order(band: str) -> int:
    from nimbus.bands import BANDS

    return list(BANDS).index(band)


def write_rules_card(path: str | os.PathLike[str], model_path: str | os.PathLike[str]) -> Path:
    """Write the model card of the rules model (Markdown, atomically).

    Args:
        path: output ``.md``.
        model_path: the model it describes (its spec is read back from the file).

    Returns:
        The written path.
    """
    spec = ModelSpec.from_onnx(model_path)
    size_kb = Path(model_path).stat().st_size / 1024
    rows = "\n".join(f"| {i} | {c} |" for i, c in enumerate(spec.channels))
    text = f"""# {spec.name}: spectral rules from the literature, as a Nimbus model

A physically based classifier of Sentinel-2 pixels into cloud, ground (no snow), snow and water,
written as an ONNX graph: no training data, no learned weights. It is the numpy classifier
`nimbus.rules` (same float32 arithmetic, same arg-max), for `nimbus segment --model rules`, QGIS
Deepness or any onnxruntime user, and a source of weak training labels (`nimbus.rules.rules_labels`).

## The file

- File: `{Path(model_path).name}` ({size_kb:.0f} kB), built by `python export/rules_onnx.py` (onnx.helper, no torch)
- Name and version: `{spec.name}` v{spec.version} (output files are tagged `{spec.file_tag}`)
- Pixel size: {spec.resolution:g} m; window {spec.window} px, default overlap {spec.overlap:g} (per-pixel rules: any window, no blending needed); dynamic height/width
- Graph input `input`: float32 (N, C, H, W) harmonised DN (reflectance x 10 000 with the -1000 offset of
  baselines >= 04.00 removed; 0 = no data). The graph multiplies by 1e-4 itself.
- Graph output `probabilities`: float32 (N, 4, H, W), per-pixel probabilities summing to 1:
  P(snow) = s, P(cloud) = (1 - s) c, P(water) = (1 - s)(1 - c) w, P(ground) = the rest, where s, c, w are
  products of linear ramps (0 to 1) across each published threshold.
- Levels: the channels exist in L1C and L2A, so the same file runs on top-of-atmosphere and surface
  reflectance. `nimbus-rules-l1c` (build with `build_rules_model(path, cirrus=True)`) adds B10 and the cirrus test.

| # | channel |
|---|---------|
{rows}

## Sources (each threshold is cited next to it in `nimbus/rules.py`)

- Fmask: Zhu & Woodcock (2012) Remote Sens. Environ. 118:83; Zhu, Wang & Woodcock (2015) RSE 159:269;
  Qiu, Zhu & He (2019) Fmask 4.0, RSE 231:111205: basic test (B12 > 0.03, NDSI < 0.8, NDVI < 0.8),
  whiteness < 0.7, HOT > 0, B08/B11 > 0.75; water test (NDVI and NIR); snow NIR > 0.11.
- Sen2Cor L2A scene classification (ATBD; Main-Knorn et al. 2017, Proc. SPIE 10427; thresholds of
  `L2A_CAL_SC_GIPP`): red 0.06-0.25, NDSI -0.24..-0.16, NDVI 0.36-0.42, B8A/B03 1.5-2.5, B02/B11 soil,
  B8A/B11 0.90-1.10 desert rock and sand, B04/B11 3-6, snow NDSI 0.35-0.50, water B02 < 0.2, cirrus
  B10 > 0.012; cloud from confidence 0.20 (medium probability) on.
- Let-It-Snow: Gascoin et al. (2019) Hydrol. Earth Syst. Sci. 23:2887: NDSI > 0.4 and red > 0.2
  (pass 1); with a DEM (numpy only) the snow line and pass 2 (NDSI > 0.15, red > 0.04).
- Hollstein et al. (2016) Remote Sens. 8:666: B05/B11 > 4.33 separates snow from ice clouds.
- Water indices: MNDWI (Xu 2006), NDWI (McFeeters 1996), AWEIsh (Feyisa et al. 2014) for water so dark
  that green and SWIR1 are in the noise.

## How it behaves on real scenes (tests/test_rules.py)

Open-sea patches come out water, Arctic sea ice snow, thick cumulus and a tropical cloud deck
cloud, bright desert ground; on the L2A tile 29RKH it agrees with Sen2Cor's SCL on the medium/high
probability clouds and the desert, and misses the thin cirrus that SCL found with B10 (not in L2A).

## Limits (plainly)

- Per pixel only: no cloud shadows (they stay ground or, over water, water), no buffers, no
  parallax or temporal tests; cloud edges and thin haze are often ground.
- No B10 in this file: thin cirrus over bright ground is missed (the L1C variant reads B10).
- Bright white surfaces with blue >= red (salt pans, white roofs) can pass the cloud tests;
  ice clouds over snow may be called snow (snow has priority, as in Sen2Cor).
- Glint, turbid or frozen water, and snow in deep shadow are hard for any spectral rule.
- The DEM snow line (LIS pass 2) and the cirrus altitude limit need an altitude array: numpy
  only (`nimbus.rules.classify(..., altitude=...)`), not in this graph.
- The soft ramps' half-widths around single published thresholds are ours; the probabilities are
  memberships, not calibrated frequencies.
"""
    path = Path(path)
    with atomic_path(path, validate=None) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    out = build_rules_model(here / RULES_MODEL)
    write_rules_card(here / RULES_CARD, out)
    missing = [b for b in REQUIRED_BANDS if b not in ModelSpec.from_onnx(out).channels]
    assert not missing, missing
    print(out, here / RULES_CARD)
