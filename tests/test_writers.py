"""Tests of nimbus.writers: COG class maps (palette, names, nodata, mode overviews), extras, atomicity."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import Resampling

from nimbus.modelspec import ModelSpec
from nimbus.writers import SegmentationWriter, write_class_map

CRS = "EPSG:32632"
TRANSFORM = Affine(10, 0, 399960, 0, -10, 5000040)
SPEC = ModelSpec(channels=("B02",), mean=(0.0,), std=(1.0,), name="unit", version="3")


def _mode_pattern(h: int = 1024, w: int = 1536) -> np.ndarray:
    """Every 2x2 block: three pixels of 3 and one 0 (at a varying corner): mode 3, mean 2.25."""
    a = np.full((h, w), 3, np.uint8)
    yy, xx = np.mgrid[: h // 2, : w // 2]
    corner = (yy + xx) % 4
    a[2 * yy + corner // 2, 2 * xx + corner % 2] = 0
    return a


def test_class_map_cog(tmp_path) -> None:
    classes = _mode_pattern()
    classes[:100, :] = 255
    path = write_class_map(tmp_path / "c.tif", classes, CRS, TRANSFORM, SPEC, product_id="PID")
    with rasterio.open(path) as d:
        assert d.dtypes == ("uint8",) and d.nodata == 255 and d.crs.to_epsg() == 32632 and d.transform == TRANSFORM
        assert d.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        np.testing.assert_array_equal(d.read(1), classes)
        cmap = d.colormap(1)
        assert cmap[0][:3] == (255, 0, 0) and cmap[1][:3] == (112, 153, 89)
        assert cmap[2][:3] == (115, 191, 250) and cmap[3][:3] == (242, 238, 162)
        tags = d.tags()
        assert json.loads(tags["CLASS_NAMES"]) == {"0": "cloud", "1": "ground", "2": "snow", "3": "water"}
        assert tags["CLASS_2"] == "snow" and tags["MODEL_NAME"] == "unit" and tags["PRODUCT_ID"] == "PID"
        assert d.overviews(1), "a COG of this size must have overviews"
        ov = d.read(1, out_shape=(d.height // 2, d.width // 2), resampling=Resampling.nearest)
    body = ov[60:]
    assert (body == 3).all(), "overviews must use mode resampling (nearest/average would give 0 or 2)"
    assert (ov[:50] == 255).all()


def test_probabilities_and_uncertainty(tmp_path) -> None:
    h, w = 40, 56
    rng = np.random.default_rng(0)
    p = rng.random((4, h, w)).astype(np.float32)
    p /= p.sum(axis=0)
    classes = np.argmax(p, axis=0).astype(np.uint8)
    classes[:, :5] = 255
    p[:, :, :5] = 0
    ent = -(p * np.log(np.where(p > 0, p, 1))).sum(axis=0).astype(np.float32)
    for kind in ("uint8", "float16"):
        out = tmp_path / kind
        with SegmentationWriter(out / "c.tif", CRS, TRANSFORM, (h, w), SPEC, "PID", kind, out / "p.tif", out / "u.tif") as wr:
            wr.write_rows(0, classes[:25], p[:, :25], ent[:25])
            wr.write_rows(25, classes[25:], p[:, 25:], ent[25:])
        with rasterio.open(out / "p.tif") as d:
            assert d.count == 4 and d.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            got = d.read()
            if kind == "uint8":
                assert d.dtypes[0] == "uint8"
                np.testing.assert_allclose(got / 255.0, p, atol=0.5 / 255 + 1e-6)
            else:
                assert d.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") == "16"
                np.testing.assert_allclose(got, p.astype(np.float16).astype(np.float32))
            assert (d.read_masks(1)[:, :5] == 0).all() and (d.read_masks(1)[:, 5:] == 255).all()
            assert d.descriptions[0] == "p_cloud"
        with rasterio.open(out / "u.tif") as d:
            u = d.read(1)
            assert d.nodata == 255 and (u[:, :5] == 255).all()
            np.testing.assert_allclose(u[:, 5:], np.rint(ent[:, 5:] / math.log(4) * 254), atol=1)


def test_error_leaves_nothing(tmp_path) -> None:
    classes = np.zeros((30, 30), np.uint8)
    with pytest.raises(RuntimeError, match="boom"):
        with SegmentationWriter(tmp_path / "c.tif", CRS, TRANSFORM, (30, 30), SPEC, probabilities="uint8",
                                probabilities_path=tmp_path / "p.tif", uncertainty_path=tmp_path / "u.tif") as wr:
            wr.write_rows(0, classes[:10], np.zeros((4, 10, 30), np.float32), np.zeros((10, 30), np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="only 10 of 30 rows"):
        with SegmentationWriter(tmp_path / "c.tif", CRS, TRANSFORM, (30, 30), SPEC) as wr:
            wr.write_rows(0, classes[:10])
    assert list(tmp_path.iterdir()) == []


def test_writers_take_a_legend_or_a_modelspec(tmp_path) -> None:
    from nimbus.legend import DEFAULT_LEGEND, Legend
    from nimbus.qgis import pam_path, qml_path

    classes = np.tile(np.array([0, 1, 2, 3, 255], np.uint8), (20, 6))
    cb = Legend.scheme("colorblind")
    a = write_class_map(tmp_path / "a.tif", classes, CRS, TRANSFORM, cb, product_id="P", model_name="mod", model_version="7")
    with SegmentationWriter(tmp_path / "b.tif", CRS, TRANSFORM, classes.shape, spec=SPEC) as wr:  # the segmenter's keyword
        wr.write_rows(0, classes)
    c = write_class_map(tmp_path / "c.tif", classes, CRS, TRANSFORM)  # no legend: the default one
    with rasterio.open(a) as d:
        assert {v: d.colormap(1)[v][:3] for v in cb.values} == cb.color_map()
        assert d.tags()["MODEL_NAME"] == "mod" and d.tags()["MODEL_VERSION"] == "7" and d.tags()["PALETTE"] == "colorblind"
    with rasterio.open(tmp_path / "b.tif") as d:
        assert d.tags()["MODEL_NAME"] == "unit" and d.tags()["MODEL_VERSION"] == "3" and Legend.from_tags(d.tags()) == DEFAULT_LEGEND
    with rasterio.open(c) as d:
        assert d.colormap(1)[0][:3] == (255, 0, 0) and d.tags().get("MODEL_NAME", "") == ""
    for p in (a, tmp_path / "b.tif", c):
        assert qml_path(p).is_file() and pam_path(p).is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="not both"):
        SegmentationWriter(tmp_path / "d.tif", CRS, TRANSFORM, (2, 2), cb, spec=SPEC)
