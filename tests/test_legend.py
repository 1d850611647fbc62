"""Tests of nimbus.legend: the one class table, its colour schemes and its tags."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from nimbus.legend import DEFAULT_LEGEND, NODATA, NODATA_RGB, SCHEMES, Legend, as_legend
from nimbus.modelspec import DEFAULT_CLASSES, ModelSpec

# Machado, Oliveira & Fernandes 2009, severity 1.0, applied to linear RGB.
_CVD = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216], [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968], [0.280085, 0.672501, 0.047413], [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779], [-0.078411, 0.930809, 0.147602], [0.004733, 0.691367, 0.303900]]),
}


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of linear RGB in 0..1."""
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = (m @ np.clip(rgb, 0, 1)) / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _linear(rgb: tuple[int, int, int]) -> np.ndarray:
    c = np.asarray(rgb, float) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _min_distance(legend: Legend, cvd: str | None) -> float:
    labs = [_lab(_CVD[cvd] @ _linear(c) if cvd else _linear(c)) for c in legend.color_map().values()]
    return min(float(np.linalg.norm(a - b)) for a, b in itertools.combinations(labs, 2))


def test_default_legend_is_the_original_palette() -> None:
    assert DEFAULT_LEGEND.values == (0, 1, 2, 3) and DEFAULT_LEGEND.names == ("cloud", "ground", "snow", "water")
    assert DEFAULT_LEGEND.color_map() == {0: (255, 0, 0), 1: (112, 153, 89), 2: (115, 191, 250), 3: (242, 238, 162)}
    assert DEFAULT_LEGEND.classes == DEFAULT_CLASSES and Legend.scheme("default") == DEFAULT_LEGEND
    assert DEFAULT_LEGEND.name(NODATA) == "nodata" and DEFAULT_LEGEND.name(9) == "class9"
    assert DEFAULT_LEGEND.hex(1) == "#709959"


def test_colorblind_scheme_keeps_classes_apart_under_simulated_cvd() -> None:
    cb = Legend.scheme("colorblind")
    assert cb.values == DEFAULT_LEGEND.values and cb.names == DEFAULT_LEGEND.names and cb.scheme_name == "colorblind"
    assert cb.color_map() != DEFAULT_LEGEND.color_map()
    assert set(Legend.scheme_names()) == set(SCHEMES) == {"default", "colorblind"}
    for cvd in (None, *_CVD):
        assert _min_distance(cb, cvd) > 32, f"colour-blind scheme: two classes look alike under {cvd}"
    # the reason for the scheme: the original colours collapse for red-green colour blindness
    assert min(_min_distance(DEFAULT_LEGEND, c) for c in ("protanopia", "deuteranopia")) < _min_distance(cb, "deuteranopia")
    assert Legend.scheme("colour-blind") == cb and Legend.scheme("okabe_ito") == cb
    with pytest.raises(ValueError, match="unknown palette 'rainbow'; choose one of colorblind, default"):
        Legend.scheme("rainbow")


def test_model_legends_recolour_by_name_and_convert() -> None:
    spec = ModelSpec(channels=("B02",), mean=(0.0,), std=(1.0,))
    assert as_legend(spec) == Legend.of(DEFAULT_CLASSES) and as_legend(None) is DEFAULT_LEGEND
    other = Legend.of([(0, "cloud", (1, 2, 3)), (5, "shadow", (9, 9, 9))])
    cb = other.recolored("colorblind")
    assert cb.color(0) == SCHEMES["colorblind"]["cloud"] and cb.color(5) == (9, 9, 9)  # unnamed classes keep theirs
    with pytest.raises(ValueError, match="distinct and in 0..254"):
        Legend.of([(0, "a", (0, 0, 0)), (255, "b", (0, 0, 0))])
    with pytest.raises(TypeError):
        as_legend(3.5)


def test_tables_tags_and_luts() -> None:
    cmap = DEFAULT_LEGEND.gdal_colormap()
    assert len(cmap) == 256 and cmap[0] == (255, 0, 0, 255) and cmap[NODATA] == (0, 0, 0, 0) and cmap[7] == (0, 0, 0, 255)
    lut = Legend.scheme("colorblind").lut()
    assert tuple(lut[3]) == (0, 114, 178) and tuple(lut[NODATA]) == NODATA_RGB and tuple(lut[4]) == NODATA_RGB
    assert DEFAULT_LEGEND.entries()[-1] == ("no data", NODATA_RGB)
    for lg in (DEFAULT_LEGEND, Legend.scheme("colorblind")):
        tags = lg.tags()
        assert tags["CLASS_2"] == "snow" and tags["PALETTE"] == lg.scheme_name
        assert Legend.from_tags(tags) == lg
    assert Legend.from_tags({"AREA_OR_POINT": "Area"}) is None
