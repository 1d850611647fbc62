"""``auto_aux`` and ``nimbus auxiliary --fetch``: a product's layers fetched from served buckets, cached, found again."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from nimbus.auxiliary import find_aux
from nimbus.errors import AuxiliaryDataError, UsageError
from nimbus.fetch import auto_aux, fetch_auxiliary, parse_mirrors
from nimbus.fetch.copdem import COPDEM
from nimbus.fetch.grid import footprint, grid_of
from nimbus.fetch.hansen import HANSEN
from nimbus.fetch.mosaic import cells
from nimbus.inputs import assemble

sys.path.insert(0, str(Path(__file__).resolve().parent))
from auxtiles import make_copdem, make_tens  # noqa: E402
from httpserver import LoopbackServer  # noqa: E402


@pytest.fixture(scope="module")
def served(synthetic_l1c, tmp_path_factory: pytest.TempPathFactory):
    """(server, mirrors) with the DEM and tree-cover tiles that the synthetic 32TMS product needs."""
    from nimbus.product import open_product

    root = tmp_path_factory.mktemp("buckets")
    product = open_product(synthetic_l1c.path)
    fp = footprint(grid_of(product, 60))
    make_copdem(root / "copdem", [(c.south, c.west) for c in cells(fp, COPDEM)])
    make_tens(root / "hansen", "treecover", [(c.south, c.west) for c in cells(fp, HANSEN)], [(fp.west, fp.south, fp.east, fp.north)])
    with LoopbackServer() as srv:
        mirrors = {"altitude": srv.add_dir("/copdem", root / "copdem"), "treecover": srv.add_dir("/hansen", root / "hansen")}
        yield srv, mirrors


def test_auto_aux_gives_a_folder_find_aux_reads_and_a_warm_cache_reads_nothing(served, synthetic_l1c, tmp_path: Path) -> None:
    from nimbus.product import open_product

    srv, mirrors = served
    product = open_product(synthetic_l1c.path)
    cache = tmp_path / "cache"
    srv.reset_log()
    folder = auto_aux(product, ["dem", "treecover"], res=60, cache=cache, mirrors=mirrors)
    assert folder.is_relative_to(cache / "aux" / "32TMS")
    cold = srv.bytes_sent()
    assert cold > 0
    for layer in ("altitude", "treecover"):
        path = find_aux(folder, product.tile, layer, 60, exact=True)
        assert path is not None and path.name == f"32TMS_{layer}_60m.tif"
        with rasterio.open(path) as ds:
            assert ds.crs == product.crs and ds.transform == product.transform(60) and ds.shape == product.shape(60)
            assert ds.tags()["source_version"] in (COPDEM.version, HANSEN.version)
    x, valid = assemble(product, ["B04", "altitude", "treecover"], res=60, aux_dir=folder)
    assert valid.all() and np.ptp(x[1]) > 0 and 0 <= x[2].min() and x[2].max() <= 100
    # a warm cache: a second product on the same tile grid (here: the same one, by path) reads nothing
    srv.reset_log()
    again = auto_aux(synthetic_l1c.path, ["altitude", "treecover"], res=60, cache=cache, mirrors=mirrors)
    assert again == folder and srv.log == [], "a warm cache makes no request at all"
    # NIMBUS_CACHE is the default cache
    import os

    os.environ["NIMBUS_CACHE"] = str(cache)
    try:
        assert auto_aux(product, ["altitude"], res=60, mirrors=mirrors) == folder and srv.log == []
    finally:
        del os.environ["NIMBUS_CACHE"]


def test_a_cached_layer_of_another_version_is_fetched_again(served, synthetic_l1c, tmp_path: Path) -> None:
    srv, mirrors = served
    folder = auto_aux(synthetic_l1c.path, ["altitude"], res=60, cache=tmp_path, mirrors=mirrors)
    path = folder / "32TMS_altitude_60m.tif"
    with rasterio.open(path, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.update_tags(source_version="2019_1")
    srv.reset_log()
    auto_aux(synthetic_l1c.path, ["altitude"], res=60, cache=tmp_path, mirrors=mirrors)
    with rasterio.open(path) as ds:
        assert ds.tags()["source_version"] == COPDEM.version


def test_unknown_layers_and_bad_mirrors_are_named_errors(synthetic_l1c, tmp_path: Path) -> None:
    with pytest.raises(AuxiliaryDataError, match=r"no public source for auxiliary layer 'snowdepth'.*altitude"):
        auto_aux(synthetic_l1c.path, ["altitude", "snowdepth"], res=60, cache=tmp_path)
    assert not (tmp_path / "aux").exists(), "nothing is fetched before every layer is known"
    with pytest.raises(UsageError, match="LAYER=URL"):
        parse_mirrors("https://example.invalid/copdem")
    with pytest.raises(UsageError, match="names no source"):
        parse_mirrors("snow=https://example.invalid")
    assert parse_mirrors("dem=http://a,treecover=http://b") == {"dem": "http://a", "treecover": "http://b"}


def test_cli_auxiliary_fetch(served, synthetic_l1c, tmp_path: Path) -> None:
    from nimbus.cli import NimbusCLI

    srv, mirrors = served
    out = tmp_path / "aux"
    mirror = ",".join(f"{k}={v}" for k, v in mirrors.items())
    text = NimbusCLI().auxiliary(str(out), product=str(synthetic_l1c.path), res=60, fetch=True, layers="altitude,treecover",
                                 mirror=mirror, cache=str(tmp_path / "cache"))  # fmt: skip
    assert "32TMS_altitude_60m.tif: altitude from copdem-glo30 (fetched from http://127.0.0.1" in text
    assert find_aux(out, "32TMS", "treecover", 60, exact=True) is not None
    srv.reset_log()
    text = NimbusCLI().auxiliary(str(out), product=str(synthetic_l1c.path), res=60, fetch=True, layers="altitude",
                                 mirror=mirror, cache=str(tmp_path / "cache"))  # fmt: skip
    assert "(cache)" in text and srv.log == []
    with pytest.raises(UsageError, match="--fetch needs a grid"):
        NimbusCLI().auxiliary(str(out), fetch=True)
    with pytest.raises(UsageError, match="go with --fetch"):
        NimbusCLI().auxiliary(str(out), tile="32TMS", dem="x.tif", mirror=mirror)
    # fetch_auxiliary copies into any folder, leaving the cache as it is
    done = fetch_auxiliary(tmp_path / "other", synthetic_l1c.path, ["altitude"], res=60, cache=tmp_path / "cache", mirrors=mirrors)
    assert done[0].cached and done[0].path.parent == tmp_path / "other"
