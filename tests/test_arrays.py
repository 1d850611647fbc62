"""Training arrays: strip-wise writing equals a whole read, the sidecar round-trips, ArrayStack reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.windows import Window

from nimbus.arrays import ArrayStack, build_arrays, default_layers
from nimbus.bands import BANDS
from nimbus.errors import AuxiliaryDataError, NimbusError
from nimbus.inputs import assemble
from nimbus.product import open_product


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory):
    from nimbus.synthetic import make_product

    return make_product(tmp_path_factory.mktemp("arr_src"), size=120, seed=7, nodata_swath=True, baseline="05.10")


def test_strip_wise_equals_whole(product, tmp_path: Path) -> None:
    strips, written = build_arrays(product.path, tmp_path / "strips", res=10, aux_dir=product.aux_dir, strip_rows=7)
    whole, _ = build_arrays(product.path, tmp_path / "whole", res=10, aux_dir=product.aux_dir, strip_rows=10_000)
    assert written
    for name in ("bands.npy", "aux.npy"):
        a, b = np.load(strips / name), np.load(whole / name)
        assert np.array_equal(a, b, equal_nan=True)
    # and both equal the one shared assembly function on the whole grid
    p = open_product(product.path)
    data, valid = assemble(p, list(BANDS) + ["altitude", "treecover"], 10, None, product.aux_dir)
    bands = np.load(strips / "bands.npy")
    assert bands.dtype == np.uint16 and bands.shape == (13, 120, 120)
    assert np.array_equal(bands[:, valid], data[:13, valid].astype(np.uint16))
    assert (bands[:, ~valid] == 0).any(axis=0).all()  # the nodata swath stays nodata
    aux = np.load(strips / "aux.npy")
    assert aux.dtype == np.float32 and np.array_equal(aux[:, valid], data[13:, valid])


def test_sidecar_round_trip_and_reads(product, tmp_path: Path) -> None:
    folder, _ = build_arrays(product.path, tmp_path, res=20, aux_dir=product.aux_dir)
    p = open_product(product.path)
    assert folder == tmp_path / p.product_id
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["product_id"] == p.product_id and meta["tile"] == "32TMS"
    assert meta["date"] == p.sensing_time.date().isoformat()
    assert CRS.from_wkt(meta["crs"]) == CRS.from_user_input(p.crs) and meta["epsg"] == 32632
    assert meta["transform"] == list(p.transform(20))[:6]
    assert meta["resolution"] == 20 and meta["shape"] == [60, 60] and meta["nodata"] == 0
    assert meta["bands"] == list(BANDS) and meta["aux"] == ["altitude", "treecover"]
    stack = ArrayStack(folder)
    assert stack.shape == (60, 60) and stack.channels == list(BANDS) + ["altitude", "treecover"]
    assert stack.transform == p.transform(20) and stack.crs == CRS.from_user_input(p.crs)
    assert stack.labels_path == folder / "labels.tif"
    win = Window(5, 10, 30, 20)
    got, ok = stack.read(["treecover", "B11", "B02"], win)
    expect, eok = assemble(p, ["treecover", "B11", "B02"], 20, win, product.aux_dir)
    assert np.array_equal(ok, eok) and np.array_equal(got, expect)
    # a window reaching past the grid: the outside is invalid and 0
    got, ok = stack.read(["B02", "dem"], (50, 50, 20, 20))
    assert got.shape == (2, 20, 20) and not ok[10:, :].any() and not ok[:, 10:].any() and (got[:, 10:, :] == 0).all()
    with pytest.raises(NimbusError, match="water"):
        stack.read(["water"])


def test_skip_overwrite_l2a_and_atomicity(tmp_path: Path, synthetic_l2a_zip) -> None:
    folder, written = build_arrays(synthetic_l2a_zip.path, tmp_path, res=60)
    assert written and not (folder / "aux.npy").exists()
    stack = ArrayStack(folder)
    assert "B10" not in stack.meta["bands"] and len(stack.meta["bands"]) == 12 and stack.meta["aux"] == []
    assert stack.meta["level"] == "L2A"
    mtime = (folder / "bands.npy").stat().st_mtime_ns
    assert build_arrays(synthetic_l2a_zip.path, tmp_path, res=60) == (folder, False)
    assert (folder / "bands.npy").stat().st_mtime_ns == mtime
    assert build_arrays(synthetic_l2a_zip.path, tmp_path, res=60, overwrite=True) == (folder, True)
    # a layer that is not there: refused before anything is written
    with pytest.raises(AuxiliaryDataError, match="water"):
        build_arrays(synthetic_l2a_zip.path, tmp_path / "other", res=60, aux_dir=tmp_path, layers=["water"])
    assert not (tmp_path / "other").exists() or list((tmp_path / "other").iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]
    assert default_layers(None, "32TMS") == []
    with pytest.raises(NimbusError, match="meta.json"):
        ArrayStack(tmp_path / "nothing")
