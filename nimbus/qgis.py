"""Class names that GIS tools show: a QGIS style (``.qml``) and a GDAL raster attribute table beside a class map.

A class map's palette (inside the GeoTIFF) gives QGIS and GDAL the colours but not the names.
Two sidecar files, written from the same :class:`nimbus.legend.Legend` as the palette, add them:

- ``<stem>.qml``: a QGIS layer style with a *paletted* renderer (one entry per class: value,
  colour, name). QGIS loads a ``.qml`` with the raster's base name as the layer's default style
  when the file is opened (drag and drop, the browser, ``QgsRasterLayer(path)``), so the layer
  panel lists "cloud, ground, snow, water" in the palette's colours. This is what QGIS 3.22
  (Debian 12) shows; ``tests/test_qgis.py`` opens a class map in real QGIS and checks it.
- ``<file>.aux.xml``: GDAL's PAM sidecar with the band's category names and a thematic raster
  attribute table (``VALUE``, ``CLASS``, ``RED``, ``GREEN``, ``BLUE``, ``ALPHA``): what
  ``gdalinfo``, ArcGIS and QGIS >= 3.30 (attribute table support) read. GDAL cannot keep either
  inside a GeoTIFF, so the sidecar is the standard place for them.

Both are small XML files written by hand (rasterio has no RAT API and ``osgeo.gdal`` is not a
dependency), atomically, and checked to parse back to the legend before they get their names.

Example:
    >>> from nimbus.legend import DEFAULT_LEGEND
    >>> write_qml("maps/x_classes.tif", DEFAULT_LEGEND)      # doctest: +SKIP
    PosixPath('maps/x_classes.qml')
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from nimbus.atomic import atomic_path
from nimbus.errors import OutputError
from nimbus.legend import NODATA, Legend, as_legend

__all__ = [
    "pam_path",
    "pam_xml",
    "qml_path",
    "qml_xml",
    "read_pam_legend",
    "read_qml_legend",
    "validate_pam",
    "validate_qml",
    "write_pam",
    "write_qml",
]

#: QGIS version written into the style (the oldest we test; newer QGIS reads it unchanged).
_QGIS_VERSION = "3.22.0"

# GDAL RAT field types and usages (gdal.h: GDALRATFieldType, GDALRATFieldUsage).
_GFT_INTEGER, _GFT_STRING = 0, 2
_GFU_GENERIC, _GFU_NAME, _GFU_MINMAX, _GFU_RED, _GFU_GREEN, _GFU_BLUE, _GFU_ALPHA = 0, 2, 5, 6, 7, 8, 9
_RAT_FIELDS = (
    ("VALUE", _GFT_INTEGER, _GFU_MINMAX),
    ("CLASS", _GFT_STRING, _GFU_NAME),
    ("RED", _GFT_INTEGER, _GFU_RED),
    ("GREEN", _GFT_INTEGER, _GFU_GREEN),
    ("BLUE", _GFT_INTEGER, _GFU_BLUE),
    ("ALPHA", _GFT_INTEGER, _GFU_ALPHA),
)


def qml_path(classes_path: str | os.PathLike[str]) -> Path:
    """Where QGIS looks for a raster's default style: the same name with ``.qml``."""
    return Path(classes_path).with_suffix(".qml")


def pam_path(classes_path: str | os.PathLike[str]) -> Path:
    """GDAL's PAM sidecar of a raster: ``<file>.aux.xml``."""
    p = Path(classes_path)
    return p.with_name(p.name + ".aux.xml")


def _indent(elem: ET.Element) -> None:
    if hasattr(ET, "indent"):
        ET.indent(elem, space="  ")


def qml_xml(legend: Any = None) -> str:
    """The QGIS style (paletted renderer on band 1, one entry per class) as text.

    Args:
        legend: a :class:`~nimbus.legend.Legend` (or a ``ModelSpec``; None = the default legend).
    """
    lg = as_legend(legend)
    root = ET.Element("qgis", {"version": _QGIS_VERSION, "styleCategories": "AllStyleCategories"})
    pipe = ET.SubElement(root, "pipe")
    rr = ET.SubElement(pipe, "rasterrenderer", {"type": "paletted", "band": "1", "opacity": "1", "alphaBand": "-1", "nodataColor": ""})
    ET.SubElement(rr, "rasterTransparency")
    pal = ET.SubElement(rr, "colorPalette")
    for v in lg.values:
        ET.SubElement(pal, "paletteEntry", {"value": str(v), "color": lg.hex(v), "alpha": "255", "label": lg.name(v)})
    ET.SubElement(pipe, "brightnesscontrast", {"brightness": "0", "contrast": "0", "gamma": "1"})
    ET.SubElement(pipe, "huesaturation", {"saturation": "0", "grayscaleMode": "0", "colorizeOn": "0"})
    ET.SubElement(pipe, "rasterresampler", {"maxOversampling": "2"})
    ET.SubElement(root, "blendMode").text = "0"
    _indent(root)
    return "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n" + ET.tostring(root, encoding="unicode") + "\n"


def pam_xml(legend: Any = None) -> str:
    """GDAL's PAM XML for band 1: category names (index = value) and a thematic raster attribute table.

    Args:
        legend: a :class:`~nimbus.legend.Legend` (or a ``ModelSpec``; None = the default legend).
    """
    lg = as_legend(legend)
    root = ET.Element("PAMDataset")
    band = ET.SubElement(root, "PAMRasterBand", {"band": "1"})
    cats = ET.SubElement(band, "CategoryNames")
    for v in range(max(lg.values) + 1):  # GDAL category names are indexed by value; gaps are empty
        ET.SubElement(cats, "Category").text = lg.name(v) if v in lg.values else ""
    rat = ET.SubElement(band, "GDALRasterAttributeTable", {"tableType": "thematic"})
    for i, (name, ftype, usage) in enumerate(_RAT_FIELDS):
        fd = ET.SubElement(rat, "FieldDefn", {"index": str(i)})
        ET.SubElement(fd, "Name").text = name
        ET.SubElement(fd, "Type").text = str(ftype)
        ET.SubElement(fd, "Usage").text = str(usage)
    for row, v in enumerate(lg.values):
        r = ET.SubElement(rat, "Row", {"index": str(row)})
        for x in (v, lg.name(v), *lg.color(v), 255):
            ET.SubElement(r, "F").text = str(x)
    _indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _parse(path: str | os.PathLike[str], what: str) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise OutputError(f"{path}: not a readable {what} ({exc})") from exc


def read_qml_legend(path: str | os.PathLike[str]) -> Legend:
    """The classes of a paletted QGIS style (value, label, colour), as a legend.

    Raises:
        OutputError: when the file is not a QGIS style with a paletted renderer.
    """
    root = _parse(path, "QGIS style")
    rr = root.find("pipe/rasterrenderer")
    if root.tag != "qgis" or rr is None or rr.get("type") != "paletted":
        raise OutputError(f"{path}: not a QGIS style with a paletted raster renderer")
    entries = []
    for e in rr.iter("paletteEntry"):
        c = e.get("color", "")
        if len(c) != 7 or not c.startswith("#"):
            raise OutputError(f"{path}: palette entry {e.get('value')} has colour {c!r}, expected #rrggbb")
        entries.append((int(e.get("value", "-1")), e.get("label", ""), (int(c[1:3], 16), int(c[3:5], 16), int(c[5:7], 16))))
    if not entries:
        raise OutputError(f"{path}: the paletted renderer has no entries")
    return Legend.of(entries)


def read_pam_legend(path: str | os.PathLike[str]) -> Legend:
    """The classes of the raster attribute table in a PAM ``.aux.xml`` written by :func:`pam_xml`.

    Raises:
        OutputError: when the file holds no such table.
    """
    root = _parse(path, "GDAL PAM file")
    rat = root.find("PAMRasterBand/GDALRasterAttributeTable")
    if root.tag != "PAMDataset" or rat is None:
        raise OutputError(f"{path}: no raster attribute table in band 1")
    names = [fd.findtext("Name") for fd in rat.findall("FieldDefn")]
    if names[: len(_RAT_FIELDS)] != [f[0] for f in _RAT_FIELDS]:
        raise OutputError(f"{path}: raster attribute table fields {names}, expected {[f[0] for f in _RAT_FIELDS]}")
    rows = []
    for r in rat.findall("Row"):
        f = [x.text or "" for x in r.findall("F")]
        rows.append((int(f[0]), f[1], (int(f[2]), int(f[3]), int(f[4]))))
    return Legend.of(rows)


def _checker(read: Any, legend: Legend) -> Any:
    def check(path: Path) -> None:
        got = read(path)
        if got.values != legend.values or got.names != legend.names or got.color_map() != legend.color_map():
            raise OutputError(f"{path}: reads back as {got.name_map(False)}, not the legend {legend.name_map(False)}")

    return check


def validate_qml(path: str | os.PathLike[str], legend: Any = None) -> None:
    """Check that a style file parses back to ``legend`` (any paletted style when None).

    Raises:
        OutputError: when it does not.
    """
    if legend is None:
        read_qml_legend(path)
    else:
        _checker(read_qml_legend, as_legend(legend))(Path(path))


def validate_pam(path: str | os.PathLike[str], legend: Any = None) -> None:
    """Check that a PAM file's attribute table parses back to ``legend`` (any table when None).

    Raises:
        OutputError: when it does not.
    """
    if legend is None:
        read_pam_legend(path)
    else:
        _checker(read_pam_legend, as_legend(legend))(Path(path))


def _write(final: Path, text: str, check: Any, group: Any = None) -> Path:
    if group is not None:
        tmp = group.path(final, validate=check)
        tmp.write_text(text, encoding="utf-8")
        return final
    with atomic_path(final, validate=check) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return final


def write_qml(classes_path: str | os.PathLike[str], legend: Any = None, group: Any = None) -> Path:
    """Write the QGIS style beside a class map (``x_classes.tif`` -> ``x_classes.qml``), atomically.

    Args:
        classes_path: the class map's (final) path.
        legend: its :class:`~nimbus.legend.Legend` (or a ``ModelSpec``; None = the default legend).
        group: an :class:`nimbus.atomic.AtomicGroup` to commit the style with (None: at once).

    Returns:
        The style's final path.
    """
    lg = as_legend(legend)
    return _write(qml_path(classes_path), qml_xml(lg), _checker(read_qml_legend, lg), group)


def write_pam(classes_path: str | os.PathLike[str], legend: Any = None, group: Any = None) -> Path:
    """Write GDAL's ``.aux.xml`` (category names + raster attribute table) beside a class map, atomically.

    Args:
        classes_path: the class map's (final) path.
        legend: its :class:`~nimbus.legend.Legend` (or a ``ModelSpec``; None = the default legend).
        group: an :class:`nimbus.atomic.AtomicGroup` to commit the file with (None: at once).

    Returns:
        The sidecar's final path.
    """
    lg = as_legend(legend)
    if NODATA in lg.values:  # Legend refuses it already; kept as a guard for hand-made tables
        raise ValueError("value 255 is no data, not a class")
    return _write(pam_path(classes_path), pam_xml(lg), _checker(read_pam_legend, lg), group)
