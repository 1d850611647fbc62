"""Model inputs: any list of channel names (bands and auxiliary layers) for a window of a product.

The one place where channels are assembled, shared by the segmenter and the array builder, so that
training and deployment can never feed a model differently. Bands come as harmonised DN
(``Product.read(kind="harmonized")``: baselines >= 04.00 shifted by their offset so every baseline
matches, nodata 0); auxiliary layers (``altitude``, ``treecover``, ``water``) in their own units,
read for the window from the files of ``nimbus auxiliary`` (``AUX_DIR/<TILE>_<layer>_<res>m.tif``),
warped on the fly when the file's grid differs from the product's.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window

from nimbus.auxiliary import canonical_layer, find_aux, read_layer
from nimbus.bands import BANDS, normalise_band
from nimbus.errors import AuxiliaryDataError, MissingBandError

__all__ = ["assemble", "is_band", "missing_channels", "split_channels"]


def is_band(channel: str) -> bool:
    """Whether a channel name is a spectral band (``B02``, ``b2``, ``B8A``...) rather than an auxiliary layer."""
    try:
        return normalise_band(channel) in BANDS
    except Exception:
        return False


def split_channels(channels: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split channel names into (bands, auxiliary layers), both canonical, each in the given order."""
    bands, aux = [], []
    for c in channels:
        if is_band(c):
            bands.append(normalise_band(c))
        else:
            aux.append(canonical_layer(c))
    return bands, aux


def missing_channels(product: Any, channels: Sequence[str], aux_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """The channels :func:`assemble` cannot provide for a product, as the caller named them.

    A band is missing when the product lacks it (e.g. B10 in L2A); an auxiliary layer is missing
    when ``aux_dir`` holds no file of the product's tile for it at any resolution.

    Args:
        product: an opened product (``nimbus.product.open_product``).
        channels: the channel names (a model's inputs).
        aux_dir: the auxiliary folder, or None.

    Returns:
        The names that cannot be provided, empty when everything is there.
    """
    have = set(product.bands)
    out = []
    for c in channels:
        if is_band(c):
            if normalise_band(c) not in have:
                out.append(c)
        elif find_aux(aux_dir, product.tile, c) is None:
            out.append(c)
    return out


def _full_window(product: Any, res: int) -> Window:
    h, w = product.shape(res)
    return Window(0, 0, w, h)


def assemble(
    product: Any,
    channels: Sequence[str],
    res: int = 10,
    window: Window | None = None,
    aux_dir: str | os.PathLike[str] | None = None,
    resampling: str = "bilinear",
) -> tuple[np.ndarray, np.ndarray]:
    """Assemble the named channels of a product for one window of its ``res`` grid.

    Args:
        product: an opened product (``nimbus.product.open_product``).
        channels: channel names in model order: bands (``B01`` ... ``B12``, ``B8A``) and auxiliary
            layers (``altitude``, ``treecover``, ``water``; aliases such as ``dem`` accepted).
        res: the pixel size of the grid in metres (10, 20 or 60).
        window: a window of the product's ``res`` grid; None for the whole grid.
        aux_dir: the folder of auxiliary files (needed when ``channels`` names a layer).
        resampling: how bands are resampled from their native resolution.

    Returns:
        ``(data float32 (C, h, w), valid bool (h, w))``: the channels in the order asked; ``valid``
        is True where every band has data and every auxiliary layer has a value. Invalid pixels
        hold 0 in every channel.

    Raises:
        MissingBandError: when the product lacks a requested band.
        AuxiliaryDataError: when an auxiliary layer has no file in ``aux_dir``.
    """
    window = _full_window(product, res) if window is None else window
    h, w = int(window.height), int(window.width)
    missing = missing_channels(product, channels, aux_dir)
    if missing:
        bands_missing = [c for c in missing if is_band(c)]
        if bands_missing:
            raise MissingBandError(
                f"{getattr(product, 'path', product)}: lacks band(s) {', '.join(bands_missing)} "
                f"needed by the channels {', '.join(channels)}"
            )
        where = f"in {aux_dir}" if aux_dir is not None else "(no auxiliary folder given: pass --aux DIR)"
        raise AuxiliaryDataError(
            f"no auxiliary file for layer(s) {', '.join(missing)} of tile {product.tile} {where}; "
            f"build them with `nimbus auxiliary` (files named <TILE>_<layer>_<res>m.tif)"
        )
    out = np.zeros((len(channels), h, w), np.float32)
    valid = np.ones((h, w), bool)
    band_idx = [i for i, c in enumerate(channels) if is_band(c)]
    if band_idx:
        names = [normalise_band(channels[i]) for i in band_idx]
        data, ok = product.read(names, res=res, window=window, kind="harmonized", resampling=resampling)
        out[band_idx] = data
        valid &= np.asarray(ok, bool)
    aux_idx = [i for i, c in enumerate(channels) if not is_band(c)]
    if aux_idx:
        transform = product.transform(res) @ Affine.translation(window.col_off, window.row_off)
        for i in aux_idx:
            path = find_aux(aux_dir, product.tile, channels[i], res)
            data, ok = read_layer(path, product.crs, transform, (h, w), layer=channels[i])
            out[i] = data
            valid &= ok
    out[:, ~valid] = 0.0
    return out, valid
