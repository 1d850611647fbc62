"""The xarray API: segment a georeferenced ``xarray.DataArray`` (odc-stac, stackstac, rioxarray loads).

:func:`segment_xarray` takes the bands of a scene as a DataArray with a band dimension (or an
``xarray.Dataset`` with one variable per band, as ``odc.stac.load`` returns) and gives the class
map (and optionally the probabilities) on the same grid, with the CRS and transform kept
(rioxarray's ``spatial_ref``), nodata 255 and the legend in the attributes.

- **Bands** are found by the band coordinate: band ids (``B04``, ``b4``, ``B8A``), STAC / Earth
  Search common names (``red``, ``nir08``, ``swir16``: :data:`nimbus.sources.stac.COMMON_NAMES`),
  or a rioxarray load's ``long_name`` band descriptions. The model's channels are picked by name in
  its order (extra bands are ignored; a missing one is refused, naming it).
- **Values**: the model graph takes *harmonised DN* (reflectance x 10000, see
  :mod:`nimbus.modelspec`): ``harmonised = data * scale + offset``, ``scale=1, offset=0`` for
  digital numbers of baselines < 04.00 or already-harmonised archives; ``offset=-1000`` for DN
  that still carry the +1000 of baseline >= 04.00 (``nimbus info ITEM.json`` says which rule
  applies to a STAC item); ``scale=10000`` for reflectance floats. A pixel is no data where any
  band is the data's nodata (``rio.nodata``, else 0) or any channel is not finite; valid harmonised
  values are clipped to >= 1 as :meth:`nimbus.product.Product.read` does. Auxiliary channels a
  model may take (``altitude``, ``treecover``: bands of the DataArray by that name) pass unchanged.
- **Lazy**: on a dask-backed array the result is a dask-backed array built with
  ``dask.array.overlap`` (what ``map_overlap`` does, with a different output band count): each block is extended by a halo of
  at least one window (a multiple of the window step), segmented with
  :meth:`nimbus.segmenter.Segmenter.predict`, and trimmed. Chunks are rounded to multiples of the
  window step so the windows fall where the in-memory run puts them: the lazy result equals the
  eager one, and a mosaic larger than memory streams block by block (``.compute()``,
  ``.rio.to_raster(..., tiled=True, lock=...)``).
- Extra dimensions (``time``) are segmented slice by slice.

Needs the extra ``[xarray]`` (xarray, rioxarray, dask).

Example:
    >>> import odc.stac, pystac                                            # doctest: +SKIP
    >>> ds = odc.stac.load([pystac.Item.from_file("item.json")], bands=["blue", "green", "red",
    ...     "rededge1", "nir", "nir08", "swir16", "swir22"], resolution=20, chunks={"x": 2048, "y": 2048})
    >>> classes = nimbus.segment_xarray(ds.isel(time=0))                     # lazy; rules model
    >>> classes.rio.to_raster("classes.tif")
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from nimbus.errors import ModelError, NimbusError, NimbusWarning
from nimbus.legend import NODATA, Legend

__all__ = ["band_names", "harmonise", "segment_xarray"]

_SPATIAL = {("y", "x"), ("latitude", "longitude"), ("lat", "lon")}
_BAND_DIMS = ("band", "bands", "variable", "channel", "spectral")
_local = threading.local()


def _xr() -> Any:
    from nimbus.extras import require

    xr = require("xarray", "xarray")
    require("xarray", "rioxarray")  # registers the .rio accessor
    return xr


def _canonical(name: Any) -> str:
    """A band coordinate value as a channel name: ``B04``, ``B8A``, an L2A layer, or the name unchanged."""
    from nimbus.bands import normalise_band
    from nimbus.sources.stac import COMMON_NAMES

    text = str(name).strip()
    key = text.lower()
    if key in COMMON_NAMES:
        return COMMON_NAMES[key]
    for suffix in ("_10m", "_20m", "_60m", "-10m", "-20m", "-60m"):  # CDSE-style B04_10m
        if key.endswith(suffix):
            text, key = text[: -len(suffix)], key[: -len(suffix)]
    try:
        return normalise_band(text)
    except ValueError:
        return key  # an auxiliary layer ("altitude") or anything else, matched by name


def _band_dim(data: Any, band_dim: str | None) -> str:
    if band_dim is not None:
        if band_dim not in data.dims:
            raise NimbusError(f"segment_xarray: band_dim {band_dim!r} is not a dimension of the array {tuple(data.dims)}")
        return band_dim
    x, y = data.rio.x_dim, data.rio.y_dim
    for d in _BAND_DIMS:
        if d in data.dims:
            return d
    others = [d for d in data.dims if d not in (x, y) and data.sizes[d] > 1]
    if len(others) == 1:
        return str(others[0])
    raise NimbusError(
        f"segment_xarray: cannot tell the band dimension of an array with dims {tuple(data.dims)}; pass band_dim='...'"
    )


def band_names(data: Any, band_dim: str | None = None) -> list[str]:
    """The channel names of a DataArray's bands (``B04``..., or lower-case names of other layers).

    Uses the band coordinate's values (band ids or STAC common names); integer coordinates (a
    rioxarray load of a multi-band file) take the file's band descriptions (``long_name``).

    Raises:
        NimbusError: when the bands cannot be named.
    """
    dim = _band_dim(data, band_dim)
    values = list(data[dim].values) if dim in data.coords else list(range(1, data.sizes[dim] + 1))
    if all(isinstance(v, (int, np.integer)) for v in values):
        long_name = data.attrs.get("long_name")
        if isinstance(long_name, (list, tuple)) and len(long_name) == len(values):
            values = list(long_name)
        else:
            raise NimbusError(
                f"segment_xarray: the {dim!r} coordinate holds numbers {values[:4]}..., not band names; "
                f"label it, e.g. data.assign_coords({dim}=['B02', 'B03', ...])"
            )
    return [_canonical(v) for v in values]


def harmonise(data: np.ndarray, nodata: float | None, scale: float, offset: np.ndarray, spectral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Harmonised DN float32 ``(C, H, W)`` and the valid mask of a block (no data: 0 in every channel).

    Only spectral channels are scaled, offset, clipped to >= 1 and tested for ``nodata``; auxiliary
    channels (altitude, tree cover: 0 is a value there) pass unchanged, and count only when not finite.

    Args:
        data: ``(C, H, W)`` values as stored.
        nodata: the stored no-data value of the bands (None: only non-finite values are no data).
        scale: multiplies the stored band values.
        offset: per channel ``(C,)``, added after scaling (0 for auxiliary channels).
        spectral: bool ``(C,)``, which channels are Sentinel-2 bands.
    """
    x = np.array(data, np.float32)
    valid = np.isfinite(x).all(axis=0)
    bands = x[spectral]
    if nodata is not None and np.isfinite(nodata):
        valid &= (bands != np.float32(nodata)).all(axis=0)
    bands = bands * np.float32(scale) + offset[spectral].astype(np.float32)[:, None, None]
    x[spectral] = np.maximum(bands, 1.0)
    x[:, ~valid] = 0.0
    return x, valid


def _segmenter(model: str, options: tuple[tuple[str, Any], ...]) -> Any:
    """One :class:`~nimbus.segmenter.Segmenter` per thread and options (sessions are reused across blocks)."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (model, options)
    if key not in cache:
        from nimbus.segmenter import Segmenter

        cache[key] = Segmenter(model, progress=False, **dict(options))
    return cache[key]


def _predict_block(block: np.ndarray, model: str, options: tuple[tuple[str, Any], ...], nodata: float | None, scale: float,
                   offset: np.ndarray, spectral: np.ndarray, probabilities: bool) -> np.ndarray:
    """``(1 [+ K], h, w)`` float32: classes, then the probabilities when asked for."""
    x, valid = harmonise(block, nodata, scale, offset, spectral)
    seg = _segmenter(model, options)
    if not valid.any():
        k = len(seg.spec.classes)
        out = np.zeros((1 + (k if probabilities else 0), *valid.shape), np.float32)
        out[0] = NODATA
        return out
    res = seg.predict(x, valid=valid, probabilities=probabilities)
    if probabilities:
        classes, probs = res
        return np.concatenate([classes[None].astype(np.float32), probs], axis=0)
    return np.asarray(res, np.float32)[None]


def _aligned_chunks(n: int, current: tuple[int, ...], step: int, halo: int) -> tuple[int, ...]:
    """Chunk sizes along one axis: multiples of ``step`` (so windows fall on the global grid), none below ``halo``."""
    size = int(-(-max(max(current), halo, step) // step) * step)
    if size >= n:
        return (n,)
    sizes = [size] * (n // size)
    rest = n - sum(sizes)
    if rest:
        if rest < halo:
            sizes[-1] += rest  # a small tail joins its neighbour (every chunk start stays on the step grid)
        else:
            sizes.append(rest)
    return tuple(sizes)


def _check_resolution(data: Any, spec: Any) -> None:
    try:
        rx, ry = data.rio.resolution(recalc=True)
    except Exception:  # noqa: BLE001  (no transform: nothing to compare)
        return
    res = max(abs(float(rx)), abs(float(ry)))
    crs = data.rio.crs
    if crs is not None and crs.is_projected and spec.resolution and not 0.5 <= res / float(spec.resolution) <= 2.0:
        warnings.warn(
            f"segment_xarray: the data is at {res:g} m, the model {spec.name} was made for {spec.resolution:g} m; "
            f"load the bands at {spec.resolution:g} m (odc.stac.load(..., resolution={spec.resolution:g})) for its intended result",
            NimbusWarning,
            stacklevel=3,
        )


def segment_xarray(
    data: Any,
    model: str | os.PathLike[str] | None = None,
    *,
    band_dim: str | None = None,
    scale: float = 1.0,
    offset: float | Mapping[str, float] = 0.0,
    nodata: float | None = None,
    probabilities: bool = False,
    **options: Any,
) -> Any:
    """Segment a georeferenced DataArray (or Dataset of bands) into a class map on the same grid.

    Args:
        data: an ``xarray.DataArray`` with a band dimension and ``y``/``x`` (rioxarray CRS and
            transform), optionally other dimensions such as ``time``; or an ``xarray.Dataset`` with
            one variable per band (``odc.stac.load``). Dask-backed input gives a lazy result.
        model: a Nimbus ONNX model path or a shipped name (``"rules"``, ``"default"``); default:
            the shipped rules model (:func:`nimbus.models.resolve_model`), as ``nimbus segment``.
        band_dim: the band dimension (default: ``band``, ``variable``... or the only other dimension).
        scale: multiplies the stored values (``10000`` for reflectance floats).
        offset: added after scaling, one number or ``{band: offset}`` (``-1000`` for DN that still
            carry the +1000 of processing baseline >= 04.00).
        nodata: the stored no-data value (default: ``data.rio.nodata``, else 0).
        probabilities: also return the probabilities.
        **options: :class:`nimbus.segmenter.Segmenter` options (``provider``, ``threads``, ``batch``,
            ``window``, ``overlap``, ``weights``, ``tta``).

    Returns:
        The class map: a uint8 DataArray named ``classes`` on the input's grid (same ``x``/``y``
        coordinates, CRS and transform; 255 = no data; ``attrs``: the legend's ``CLASS_NAMES``...,
        the model's name and version). With ``probabilities``, an ``xarray.Dataset`` with
        ``classes`` and ``probabilities`` (float32, dimension ``class`` named by the legend).

    Raises:
        MissingExtraError: xarray, rioxarray (or dask for lazy input) are not installed.
        ModelError: the data lacks a channel the model takes (the message names it).
        NimbusError: the band dimension or the band names cannot be told.
    """
    xr = _xr()
    from nimbus.models import resolve_model

    if isinstance(data, xr.Dataset):
        data = data.to_array(band_dim or "band")
    if not isinstance(data, xr.DataArray):
        raise NimbusError(f"segment_xarray: expected an xarray.DataArray or Dataset, got {type(data).__name__}")
    model_path = str(resolve_model("rules" if model is None else model))
    seg = _segmenter(model_path, tuple(sorted(options.items())))
    spec = seg.spec
    legend = Legend.of(spec.classes)
    dim = _band_dim(data, band_dim)
    names = band_names(data, dim)
    missing = [c for c in spec.channels if c not in names and c.lower() not in names]
    if missing:
        raise ModelError(
            f"segment_xarray: the model {model_path} takes {', '.join(spec.channels)}; the data has "
            f"{', '.join(names)} and lacks {', '.join(missing)}"
        )
    index = [names.index(c) if c in names else names.index(c.lower()) for c in spec.channels]
    from nimbus.bands import BANDS

    spectral = np.array([c in BANDS for c in spec.channels], bool)
    if isinstance(offset, Mapping):
        offs = {_canonical(k): float(v) for k, v in offset.items()}
        off = np.array([offs.get(c, 0.0) for c in spec.channels], np.float32)
    else:
        off = np.full(len(spec.channels), float(offset), np.float32)
    off[~spectral] = 0.0
    if nodata is None:
        nodata = data.rio.nodata if data.rio.nodata is not None else data.attrs.get("nodata", 0)
    nodata = None if nodata is None else float(nodata)
    _check_resolution(data, spec)
    ydim, xdim = data.rio.y_dim, data.rio.x_dim
    extra = [d for d in data.dims if d not in (dim, ydim, xdim)]
    if extra:  # time and the like: one slice at a time
        outer = extra[0]
        parts = [segment_xarray(data.isel({outer: i}), model_path, band_dim=dim, scale=scale, offset=offset, nodata=nodata,
                                probabilities=probabilities, **options) for i in range(data.sizes[outer])]
        return xr.concat(parts, dim=data[outer] if outer in data.coords else outer)
    arr = data.isel({dim: index}).transpose(dim, ydim, xdim)
    window = int(getattr(seg, "window", spec.window))
    overlap = float(getattr(seg, "overlap", spec.overlap))
    step = max(1, int(round(window * (1.0 - overlap))))
    halo = int(-(-window // step) * step)  # >= one window, a multiple of the step
    k = len(spec.classes)
    n_out = 1 + (k if probabilities else 0)
    opts = tuple(sorted(options.items()))
    raw = arr.data
    if _is_dask(raw):
        out = _lazy(raw, model_path, opts, nodata, float(scale), off, spectral, probabilities, step, halo, n_out)
    else:
        out = _predict_block(np.asarray(raw), model_path, opts, nodata, float(scale), off, spectral, probabilities)
    return _wrap(xr, data, arr, ydim, xdim, out, legend, spec, probabilities)


def _is_dask(a: Any) -> bool:
    return type(a).__module__.split(".")[0] == "dask"


def _lazy(raw: Any, model: str, opts: tuple[tuple[str, Any], ...], nodata: float | None, scale: float, off: np.ndarray,
          spectral: np.ndarray, probabilities: bool, step: int, halo: int, n_out: int) -> Any:
    from nimbus.extras import require

    da = require("xarray", "dask.array")
    cy = _aligned_chunks(raw.shape[1], raw.chunks[1], step, halo)
    cx = _aligned_chunks(raw.shape[2], raw.chunks[2], step, halo)
    raw = raw.rechunk((raw.shape[0], cy, cx))  # all bands in one block; chunk starts on the window step grid
    depth = {0: 0, 1: halo if len(cy) > 1 else 0, 2: halo if len(cx) > 1 else 0}

    def block(b: np.ndarray) -> np.ndarray:
        return _predict_block(b, model, opts, nodata, scale, off, spectral, probabilities)

    grown = da.overlap.overlap(raw, depth=depth, boundary="none")  # the halo: neighbours' pixels, none past the edges
    res = grown.map_blocks(block, dtype=np.float32, chunks=((n_out,), grown.chunks[1], grown.chunks[2]),
                           meta=np.empty((0, 0, 0), np.float32))
    return da.overlap.trim_internal(res, depth, boundary="none")


def _wrap(xr: Any, data: Any, arr: Any, ydim: str, xdim: str, out: Any, legend: Legend, spec: Any, probabilities: bool) -> Any:
    coords = {ydim: arr[ydim], xdim: arr[xdim]}
    classes = xr.DataArray(out[0].astype(np.uint8), dims=(ydim, xdim), coords=coords, name="classes")
    attrs = {**legend.tags(), "MODEL_NAME": str(spec.name), "MODEL_VERSION": str(spec.version), "long_name": "class"}
    classes.attrs.update(attrs)
    classes = _georef(classes, data)
    classes = classes.rio.write_nodata(NODATA, encoded=False)
    if not probabilities:
        return classes
    probs = xr.DataArray(out[1:], dims=("class", ydim, xdim), coords={"class": list(legend.names), **coords}, name="probabilities")
    probs = _georef(probs, data)
    probs.attrs.update({"MODEL_NAME": str(spec.name), "MODEL_VERSION": str(spec.version)})
    return xr.Dataset({"classes": classes, "probabilities": probs})


def _georef(out: Any, data: Any) -> Any:
    crs = data.rio.crs
    if crs is not None:
        out = out.rio.write_crs(crs)
    try:
        out = out.rio.write_transform(data.rio.transform(recalc=True))
    except Exception:  # noqa: BLE001  (no transform known: the x/y coordinates still georeference it)
        pass
    return out
