"""Output validation: truncated or broken files are refused, complete ones pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from nimbus.errors import OutputError
from nimbus.validate import is_valid, validate_json, validate_npy, validate_path, validate_png, validate_raster


def _cog(path: Path, size: int = 1024, dtype: str = "uint8") -> Path:
    rng = np.random.default_rng(0)
    raw = path.with_name("raw_" + path.name)
    prof = dict(driver="GTiff", height=size, width=size, count=1, dtype=dtype, crs="EPSG:32632",
                transform=from_origin(0, 0, 10, 10), tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(raw, "w", **prof) as ds:
        ds.write(rng.integers(0, 200, (size, size)).astype(dtype), 1)
    rasterio.shutil.copy(raw, path, driver="COG", BLOCKSIZE=256, COMPRESS="DEFLATE")
    raw.unlink()
    return path


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_complete_cog_passes_with_its_expected_form(tmp_path: Path) -> None:
    p = _cog(tmp_path / "a.tif")
    validate_raster(p, shape=(1024, 1024), count=1, dtype="uint8")
    with rasterio.open(p) as ds:
        assert ds.overviews(1), "the COG has overviews, so their blocks were read too"
    assert is_valid(p)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.7, 0.95, 0.999])
def test_truncated_cog_is_refused(tmp_path: Path, keep: float) -> None:
    p = _cog(tmp_path / "a.tif")
    _truncate(p, keep)
    with pytest.raises(OutputError, match="a.tif"):
        validate_raster(p)
    assert not is_valid(p)


def test_wrong_size_count_or_dtype_is_refused(tmp_path: Path) -> None:
    p = _cog(tmp_path / "a.tif", size=512)
    with pytest.raises(OutputError, match="expected 600x512"):
        validate_raster(p, shape=(600, 512))
    with pytest.raises(OutputError, match="band"):
        validate_raster(p, count=4)
    with pytest.raises(OutputError, match="data type"):
        validate_raster(p, dtype="uint16")


def test_npy_size_must_match_its_header(tmp_path: Path) -> None:
    p = tmp_path / "bands.npy"
    np.save(p, np.arange(1000, dtype=np.uint16).reshape(10, 100))
    validate_npy(p, shape=(10, 100), dtype="uint16")
    _truncate(p, 0.9)
    with pytest.raises(OutputError, match="bytes, the header"):
        validate_npy(p)


def test_json_png_and_folders(tmp_path: Path) -> None:
    from PIL import Image

    j = tmp_path / "d" / "meta.json"
    j.parent.mkdir()
    j.write_text(json.dumps({"a": list(range(100))}))
    png = tmp_path / "d" / "q.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (200, 200, 3), dtype=np.uint8)).save(png)
    validate_json(j)
    validate_png(png)
    validate_path(tmp_path / "d")
    _truncate(png, 0.5)
    with pytest.raises(OutputError, match="q.png"):
        validate_path(tmp_path / "d")  # a folder is as good as its worst file
    j.write_text('{"a": [1, 2')
    with pytest.raises(OutputError, match="JSON"):
        validate_json(j)
    with pytest.raises(OutputError, match="missing"):
        validate_path(tmp_path / "nothing.tif")


def test_truncated_onnx_is_refused(tmp_path: Path) -> None:
    from nimbus.validate import validate_onnx
    from onnx_builders import make_model

    m = make_model(tmp_path / "m.onnx", kind="softmax")
    validate_onnx(m)
    _truncate(m, 0.6)
    with pytest.raises(OutputError, match="m.onnx"):
        validate_onnx(m)
