"""Tile names and URLs of the public sources, exactly as the buckets lay them out; mirrors."""

from __future__ import annotations

import pytest

from nimbus.fetch.copdem import COPDEM, dem_columns
from nimbus.fetch.hansen import HANSEN
from nimbus.fetch.jrcwater import JRC_GSW
from nimbus.fetch.source import base_url, join_url, source_for
from nimbus.fetch.worldcover import WORLDCOVER


def test_urls_are_those_of_the_public_buckets() -> None:
    assert join_url(COPDEM.default_url, COPDEM.path(46, 7)) == (
        "https://copernicus-dem-30m.s3.amazonaws.com/Copernicus_DSM_COG_10_N46_00_E007_00_DEM/"
        "Copernicus_DSM_COG_10_N46_00_E007_00_DEM.tif"
    )
    assert COPDEM.path(-18, -180) == "Copernicus_DSM_COG_10_S18_00_W180_00_DEM/Copernicus_DSM_COG_10_S18_00_W180_00_DEM.tif"
    # Hansen and JRC tiles are named by their north-west corner
    assert join_url(HANSEN.default_url, HANSEN.path(40, 0)) == (
        "https://storage.googleapis.com/earthenginepartners-hansen/GFC-2023-v1.11/Hansen_GFC-2023-v1.11_treecover2000_50N_000E.tif"
    )
    assert HANSEN.path(-20, -180) == "Hansen_GFC-2023-v1.11_treecover2000_10S_180W.tif"
    assert join_url(JRC_GSW.default_url, JRC_GSW.path(40, 0)) == (
        "https://storage.googleapis.com/global-surface-water/downloads2021/occurrence/occurrence_0E_50Nv1_4_2021.tif"
    )
    assert JRC_GSW.path(-10, -70) == "occurrence_70W_0Nv1_4_2021.tif"
    assert join_url(WORLDCOVER.default_url, WORLDCOVER.path(45, 6)) == (
        "https://esa-worldcover.s3.eu-central-1.amazonaws.com/v200/2021/map/ESA_WorldCover_10m_2021_v200_N45E006_Map.tif"
    )


def test_dem_longitude_spacing_rule() -> None:
    assert [dem_columns(s) for s in (0, 49, 50, 59, 60, 69, 70, 80, 85)] == [3600, 3600, 2400, 2400, 1800, 1800, 1200, 720, 360]
    assert [dem_columns(s) for s in (-1, -50, -51, -60, -61)] == [3600, 3600, 2400, 2400, 1800]


def test_mirrors_option_then_environment_then_public(monkeypatch: pytest.MonkeyPatch) -> None:
    assert base_url(COPDEM) == "https://copernicus-dem-30m.s3.amazonaws.com"
    monkeypatch.setenv("NIMBUS_COPDEM_URL", "http://env.mirror/dem/")
    assert base_url(COPDEM) == "http://env.mirror/dem"
    assert base_url(COPDEM, {"dem": "http://option.mirror"}) == "http://option.mirror"
    assert base_url(COPDEM, {"copdem-glo30": "/data/copdem"}) == "/data/copdem"
    assert join_url("/data/copdem", "a/b.tif") == "/data/copdem/a/b.tif"
    assert source_for("elevation") is COPDEM and source_for("tree-cover") is HANSEN and source_for("worldcover") is WORLDCOVER


def test_every_source_carries_licence_and_credit() -> None:
    for src in (COPDEM, HANSEN, JRC_GSW, WORLDCOVER):
        tags = src.tags("http://x")
        assert tags["licence"] and tags["credit"] and tags["source_version"] and tags["source_id"] == src.name
    assert "CC BY 4.0" in HANSEN.licence and "Pekel" in JRC_GSW.credit and "Airbus" in COPDEM.credit
