"""Tests of nimbus.dataarray: segment_xarray on real rioxarray and odc-stac loads, lazy equals eager equals `nimbus segment`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

xr = pytest.importorskip("xarray", reason="extra [xarray] not installed")
rioxarray = pytest.importorskip("rioxarray", reason="extra [xarray] not installed")
pytest.importorskip("dask.array", reason="extra [xarray] not installed")

import nimbus  # noqa: E402
from nimbus.errors import ModelError, NimbusWarning  # noqa: E402
from nimbus.legend import DEFAULT_LEGEND  # noqa: E402

RKH = "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
ITEM = "S2A_29RKH_20200219_0_L2A.json"
RULE_BANDS = ["B02", "B03", "B04", "B05", "B08", "B8A", "B11", "B12"]
COMMON = ["blue", "green", "red", "rededge1", "nir", "nir08", "swir16", "swir22"]


@pytest.fixture(scope="module")
def segmented(realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """`nimbus segment` (rules model) of the real 29RKH COG folder: its class map."""
    import rasterio

    from nimbus.cli import main

    out = tmp_path_factory.mktemp("seg")
    try:
        main(["segment", str(realdata / RKH), "--out", str(out)])
    except SystemExit as exc:  # fire's exit after printing
        assert not exc.code, f"nimbus segment failed: {exc.code}"
    (path,) = out.glob("*_classes.tif")
    with rasterio.open(path) as src:
        return src.read(1)


def _quiet(fn, *args, **kw):
    """The decimated real data is at 200 m, the rules model at 20 m: the resolution warning is expected."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NimbusWarning)
        return fn(*args, **kw)


def _rioxarray_stack(folder: Path, chunks: int | None) -> object:
    """The 8 rule bands on the 20 m-band grid (549² here): 10 m bands 2x2-averaged and rounded, as nimbus reads them."""
    ref = rioxarray.open_rasterio(folder / "B05.tif", chunks={"x": chunks, "y": chunks} if chunks else None).squeeze("band", drop=True)
    layers = []
    for b in RULE_BANDS:
        a = rioxarray.open_rasterio(folder / f"{b}.tif", chunks={"x": 2 * chunks, "y": 2 * chunks} if chunks else None)
        a = a.squeeze("band", drop=True).astype("float32")
        if a.sizes["x"] == 2 * ref.sizes["x"]:
            a = np.rint(a.coarsen(x=2, y=2).mean())
        layers.append(a.assign_coords(x=ref.x, y=ref.y))
    return xr.concat(layers, dim="band").assign_coords(band=RULE_BANDS).rio.write_crs(ref.rio.crs).rio.write_transform(ref.rio.transform())


def test_rioxarray_load_lazy_equals_eager_equals_segment(realdata: Path, segmented: np.ndarray) -> None:
    import rasterio

    lazy_in = _rioxarray_stack(realdata / RKH, chunks=200)
    lazy = _quiet(nimbus.segment_xarray, lazy_in)  # model=None: the rules model, as `nimbus segment`
    assert lazy.chunks is not None, "dask in, dask out"
    with pytest.warns(NimbusWarning, match="the data is at 200 m, the model nimbus-rules was made for 20 m"):
        eager = nimbus.segment_xarray(lazy_in.compute())
    got = lazy.compute()
    np.testing.assert_array_equal(got.values, eager.values)
    np.testing.assert_array_equal(got.values, segmented)  # per-pixel rules: the same map as `nimbus segment`
    with rasterio.open(realdata / RKH / "B05.tif") as src:
        assert got.rio.crs == src.crs and got.rio.transform() == src.transform
    assert got.dtype == np.uint8 and got.rio.nodata == 255 and got.name == "classes"
    assert json.loads(got.attrs["CLASS_NAMES"]) == {str(v): n for v, n in DEFAULT_LEGEND.name_map(False).items()}
    assert got.attrs["MODEL_NAME"] == "nimbus-rules"


def _local_item(folder: Path) -> object:
    """The real Earth Search item of 29RKH with its asset hrefs pointing at the local COGs.

    The files were decimated 10x upstream, so each asset's proj:shape/proj:transform is set to the
    local file's (odc-stac builds its grid from them); the self link (s3://) is dropped so pystac
    does not resolve local paths against it.
    """
    import pystac
    import rasterio

    d = json.loads((folder / ITEM).read_text())
    d["links"] = [ln for ln in d["links"] if ln["rel"] not in ("self", "canonical")]
    for key, asset in list(d["assets"].items()):
        name = asset["href"].rsplit("/", 1)[-1]
        if key.endswith("-jp2") or not (folder / name).is_file():
            del d["assets"][key]
            continue
        with rasterio.open(folder / name) as src:
            asset.update({"href": str(folder / name), "proj:shape": list(src.shape), "proj:transform": list(src.transform)[:6]})
    return pystac.Item.from_dict(d)


def test_odc_stac_load_of_the_real_item(realdata: Path, segmented: np.ndarray) -> None:
    odc_stac = pytest.importorskip("odc.stac", reason="odc-stac not installed")
    import rasterio
    from odc.geo.geobox import GeoBox

    with rasterio.open(realdata / RKH / "B05.tif") as src:
        gbox = GeoBox(src.shape, src.transform, src.crs.to_wkt())
    ds = odc_stac.load([_local_item(realdata / RKH)], bands=COMMON + ["coastal"], geobox=gbox, resampling={"*": "average"},
                       chunks={"x": 256, "y": 256})
    lazy = _quiet(nimbus.segment_xarray, ds)  # a Dataset of common-name bands with a time dimension
    assert lazy.dims == ("time", "y", "x") and lazy.chunks is not None
    got = lazy.compute().isel(time=0)
    eager = _quiet(nimbus.segment_xarray, ds.isel(time=0).compute())
    np.testing.assert_array_equal(got.values, eager.values)
    assert got.rio.transform() == gbox.transform and got.rio.crs.to_epsg() == 32629
    agree = float((got.values == segmented).mean())
    # odc-stac's GDAL "average" of the 10 m bands rounds differently from nimbus's 2x2 mean: a few pixels on rule edges
    assert agree > 0.995, f"odc-stac load vs nimbus segment: {agree:.4%} of pixels agree"
    with pytest.raises(ModelError, match="lacks B8A"):
        _quiet(nimbus.segment_xarray, ds.drop_vars("nir08"))


@pytest.fixture(scope="module")
def synthetic_channels(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, object]:
    """The default model's 15 channels of a synthetic product at 20 m as a georeferenced DataArray (and the spec)."""
    from nimbus.inputs import assemble
    from nimbus.modelspec import ModelSpec
    from nimbus.models import default_model_path
    from nimbus.product import open_product
    from nimbus.synthetic import make_product

    syn = make_product(tmp_path_factory.mktemp("syn"), size=420, seed=11, nodata_swath=True)
    spec = ModelSpec.from_onnx(default_model_path())
    p = open_product(syn.path)
    x, _ = assemble(p, spec.channels, 20, None, syn.aux_dir)
    t = p.transform(20)
    h, w = x.shape[1:]
    da = xr.DataArray(x, dims=("band", "y", "x"), coords={"band": [c.lower() if c[0] != "B" else c for c in spec.channels],
                      "y": t.f + t.e * (np.arange(h) + 0.5), "x": t.c + t.a * (np.arange(w) + 0.5)})
    return da.rio.write_crs(p.crs), spec


def test_window_seams_lazy_equals_eager_with_overlapping_windows(synthetic_channels) -> None:
    """A CNN with overlapping, blended windows: small chunks give the same map and probabilities as one block."""
    from nimbus.models import default_model_path
    from nimbus.segmenter import Segmenter

    da, spec = synthetic_channels
    opts = dict(window=64, overlap=0.5, threads=1)
    lazy = nimbus.segment_xarray(da.chunk({"x": 50, "y": 70}), "default", probabilities=True, **opts)
    assert isinstance(lazy, xr.Dataset) and lazy.classes.chunks is not None
    assert lazy.classes.chunks[0][0] % 32 == 0, "chunks rounded to multiples of the window step"
    eager = nimbus.segment_xarray(da, "default", probabilities=True, **opts)
    ref_classes, ref_probs = Segmenter(default_model_path(), progress=False, **opts).predict(da.values, probabilities=True)
    got = lazy.compute()
    np.testing.assert_array_equal(eager.classes.values, ref_classes)
    np.testing.assert_array_equal(got.classes.values, ref_classes)
    np.testing.assert_allclose(got.probabilities.values, ref_probs, atol=1e-5)
    assert list(got.probabilities["class"].values) == list(DEFAULT_LEGEND.names)
    assert (got.classes.values == 255).any(), "the nodata swath stays no data"
