"""Tiny training arrays in the exact nimbus.arrays format, for the training tests and benchmark.

``make_arrays(root, n_products=4, size=96)`` writes ``root/<product_id>/{bands.npy, aux.npy,
meta.json, labels.tif}``: blobs of four classes with class-specific spectra plus noise, so a
model can learn the classes from the pixel values, some nodata border and unlabelled pixels.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np

BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")

# Harmonised DN per class (cloud, ground, snow, water) for the 13 bands.
SPECTRA = np.array(
    [
        [5000, 5200, 5100, 5000, 5100, 5200, 5200, 5300, 5300, 3000, 1500, 4000, 3500],  # cloud
        [1200, 900, 1000, 1100, 1500, 2200, 2500, 2800, 2900, 900, 1020, 2400, 1600],  # ground
        [6000, 7000, 7200, 7100, 7000, 6800, 6600, 6400, 6300, 3500, 1010, 900, 700],  # snow
        [1100, 1200, 1000, 700, 500, 400, 350, 300, 280, 150, 1005, 150, 120],  # water
    ],
    dtype=np.float32,
)


def label_map(size: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) uint8 class map of smooth blobs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    field = np.zeros((4, size, size), dtype=np.float32)
    for k in range(4):
        for _ in range(3):
            cy, cx, s = rng.random(), rng.random(), 0.08 + 0.15 * rng.random()
            field[k] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    field[1] += 0.3  # ground is the background
    return field.argmax(0).astype(np.uint8)


def write_labels(path: Path, labels: np.ndarray) -> None:
    """labels.tif: uint8 GeoTIFF on a UTM 10 m grid, nodata 255."""
    import rasterio
    from affine import Affine

    h, w = labels.shape
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs="EPSG:32632", transform=Affine(10, 0, 300000, 0, -10, 5000040), nodata=255, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(labels, 1)


def make_product(folder: Path, size: int, seed: int, day: date, aux: bool = True, border: int = 4, unlabelled: float = 0.02) -> Path:
    """One product folder; returns it."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = label_map(size, rng)
    bands = SPECTRA[labels].transpose(2, 0, 1) * rng.normal(1.0, 0.08, (1, size, size)).astype(np.float32)
    bands += rng.normal(0, 150, bands.shape).astype(np.float32)
    bands = np.clip(bands, 1, 20000).astype(np.uint16)
    if border:
        bands[:, :border, :] = 0  # nodata strip
        labels[:border, :] = 255
    labels = labels.copy()
    labels[rng.random(labels.shape) < unlabelled] = 255
    np.save(folder / "bands.npy", bands)
    aux_names: list[str] = []
    if aux:
        altitude = 500 + 2000 * (labels == 2) + rng.normal(0, 200, labels.shape)
        treecover = np.where(labels == 1, 40.0, 0.0) + rng.normal(0, 5, labels.shape)
        np.save(folder / "aux.npy", np.stack([altitude, treecover]).astype(np.float32))
        aux_names = ["altitude", "treecover"]
    meta = {
        "product_id": folder.name,
        "tile": "32TMS",
        "date": day.isoformat(),
        "crs": "EPSG:32632",
        "transform": [10, 0, 300000, 0, -10, 5000040],
        "resolution": 10,
        "bands": list(BANDS),
        "aux": aux_names,
        "nodata": 0,
    }
    (folder / "meta.json").write_text(json.dumps(meta))
    write_labels(folder / "labels.tif", labels)
    return folder


def make_arrays(root: Path, n_products: int = 4, size: int = 96, seed: int = 0, aux: bool = True) -> Path:
    """An arrays directory of ``n_products`` products on distinct dates; returns ``root``."""
    root = Path(root)
    for i in range(n_products):
        day = date(2024, 1, 1) + timedelta(days=10 * i)
        pid = f"S2A_MSIL1C_{day:%Y%m%d}T103021_N0510_R108_T32TMS_{day:%Y%m%d}T120000"
        make_product(root / pid, size, seed * 1000 + i, day, aux=aux)
    return root
