"""Band names, native resolutions and ESA band ids."""

from __future__ import annotations

import pytest

from nimbus.bands import BAND_ID, BANDS, L1C_BANDS, L2A_BANDS, L2A_EXTRAS, NATIVE_RESOLUTION, RESOLUTIONS, band_from_id, normalise_band


def test_model_order_is_esa_band_id_order() -> None:
    assert BANDS == ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")
    assert [BAND_ID[b] for b in BANDS] == list(range(13))
    assert band_from_id("8") == "B8A" and band_from_id(9) == "B09" and band_from_id(12) == "B12"


def test_native_resolutions() -> None:
    assert {b for b in BANDS if NATIVE_RESOLUTION[b] == 10} == {"B02", "B03", "B04", "B08"}
    assert {b for b in BANDS if NATIVE_RESOLUTION[b] == 60} == {"B01", "B09", "B10"}
    assert {b for b in BANDS if NATIVE_RESOLUTION[b] == 20} == {"B05", "B06", "B07", "B8A", "B11", "B12"}
    assert set(NATIVE_RESOLUTION.values()) == set(RESOLUTIONS)


def test_levels() -> None:
    assert L1C_BANDS == BANDS
    assert "B10" not in L2A_BANDS and set(L2A_EXTRAS) <= set(L2A_BANDS) and len(L2A_BANDS) == 15


@pytest.mark.parametrize(("name", "want"), [("b2", "B02"), ("B02", "B02"), ("B8", "B08"), ("b8a", "B8A"), ("B08A", "B8A"), ("scl", "SCL"), (" B12 ", "B12")])
def test_normalise_band(name: str, want: str) -> None:
    assert normalise_band(name) == want


@pytest.mark.parametrize("bad", ["B13", "B00", "red", "", "B8B"])
def test_unknown_band(bad: str) -> None:
    with pytest.raises(ValueError, match="unknown Sentinel-2 band"):
        normalise_band(bad)
