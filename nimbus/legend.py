"""The class legend: values, names and colours of the Nimbus classes, in one place.

Every writer of class maps (COG palettes, raster attribute tables, QGIS styles, quicklooks), the
labels, the labelling tool, training and evaluation take their class table from here (or from a
model's own ``nimbus.classes`` metadata, which becomes a :class:`Legend` through :func:`as_legend`).
Value 255 is no data everywhere.

Two colour schemes (:data:`SCHEMES`), chosen by class name so they apply to any model's legend:

- ``"default"``: the original project's colours: cloud red, ground green, snow light blue, water
  pale yellow (:data:`nimbus.modelspec.DEFAULT_CLASSES`).
- ``"colorblind"``: from the Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"):
  cloud grey, ground orange, snow white, water blue. Under simulated protanopia, deuteranopia
  and tritanopia (Machado et al. 2009) every pair of classes stays > 32 apart in CIELAB (the
  original colours: 24, cloud red vs ground green under protanopia); ``tests/test_legend.py``
  checks it. (Okabe-Ito's bluish green and sky blue came within 16 of each other under tritanopia.)

Example:
    >>> from nimbus.legend import DEFAULT_LEGEND, Legend
    >>> DEFAULT_LEGEND.name(2)
    'snow'
    >>> Legend.scheme("colorblind").color(1)
    (230, 159, 0)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nimbus.modelspec import DEFAULT_CLASSES, NODATA_CLASS, ClassInfo

__all__ = ["DEFAULT_LEGEND", "NODATA", "NODATA_RGB", "SCHEMES", "Legend", "as_legend"]

#: The no-data class value of every class map.
NODATA: int = NODATA_CLASS

#: How no data is drawn where a colour is needed (quicklooks, the labelling tool): dark grey.
NODATA_RGB: tuple[int, int, int] = (40, 40, 40)

#: Colour schemes: scheme name -> {class name: RGB}. Classes a scheme does not name keep their colour.
SCHEMES: dict[str, dict[str, tuple[int, int, int]]] = {
    "default": {c.name: tuple(c.color) for c in DEFAULT_CLASSES},  # type: ignore[misc]
    "colorblind": {
        "cloud": (153, 153, 153),  # grey
        "ground": (230, 159, 0),  # Okabe-Ito orange
        "snow": (255, 255, 255),  # white
        "water": (0, 114, 178),  # Okabe-Ito blue
    },
}


@dataclass(frozen=True)
class Legend:
    """An ordered class table (value, name, RGB colour); 255 is no data and never a class.

    Attributes:
        classes: the classes, in the model's output order.
        scheme_name: the colour scheme the colours come from (``"default"``, ``"colorblind"``),
            or None for a model's own colours.
    """

    classes: tuple[ClassInfo, ...] = DEFAULT_CLASSES
    scheme_name: str | None = None

    def __post_init__(self) -> None:
        values = [int(c.value) for c in self.classes]
        if len(set(values)) != len(values) or any(not 0 <= v < NODATA for v in values):
            raise ValueError(f"legend class values must be distinct and in 0..254, got {values}")

    @classmethod
    def of(cls, classes: Iterable[ClassInfo | tuple[int, str, Iterable[int]]]) -> Legend:
        """The legend of a class table (e.g. ``ModelSpec.classes``, or ``(value, name, rgb)`` tuples)."""
        out = []
        for c in classes:
            if not isinstance(c, ClassInfo):
                v, n, rgb = c
                c = ClassInfo(int(v), str(n), tuple(int(x) for x in rgb))  # type: ignore[arg-type]
            out.append(c)
        scheme = next((n for n, colors in SCHEMES.items()
                       if {c.name: tuple(c.color) for c in out} == colors), None)  # e.g. a model with the default colours
        return cls(tuple(out), scheme)

    @classmethod
    def scheme(cls, name: str = "default", legend: Legend | None = None) -> Legend:
        """The legend (default: the Nimbus classes) coloured with a scheme of :data:`SCHEMES`.

        Args:
            name: ``"default"`` (the original colours) or ``"colorblind"`` (Okabe-Ito based).
            legend: the classes to colour (e.g. a model's legend); default :data:`DEFAULT_LEGEND`.

        Raises:
            ValueError: an unknown scheme name (the message lists the known ones).
        """
        return (legend or DEFAULT_LEGEND).recolored(name)

    @classmethod
    def scheme_names(cls) -> tuple[str, ...]:
        """The names of the colour schemes, sorted (for a ``--palette`` option's check)."""
        return tuple(sorted(SCHEMES))

    def recolored(self, name: str) -> Legend:
        """The same classes with the colours of scheme ``name`` (classes it does not name keep theirs)."""
        key = str(name).strip().lower().replace("-", "").replace("_", "")
        key = {"colourblind": "colorblind", "cvd": "colorblind", "okabeito": "colorblind"}.get(key, key)
        if key not in SCHEMES:
            raise ValueError(f"unknown palette {name!r}; choose one of {', '.join(sorted(SCHEMES))}")
        colors = SCHEMES[key]
        return Legend(tuple(ClassInfo(c.value, c.name, colors.get(c.name, tuple(c.color))) for c in self.classes), key)  # type: ignore[arg-type]

    @property
    def values(self) -> tuple[int, ...]:
        """The class values, in order."""
        return tuple(int(c.value) for c in self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        """The class names, in order."""
        return tuple(c.name for c in self.classes)

    def __len__(self) -> int:
        return len(self.classes)

    def name(self, value: int) -> str:
        """The name of a class value (``"nodata"`` for 255, ``"class<v>"`` for an unknown value)."""
        for c in self.classes:
            if c.value == int(value):
                return c.name
        return "nodata" if int(value) == NODATA else f"class{int(value)}"

    def color(self, value: int) -> tuple[int, int, int]:
        """The RGB colour of a class value (black for no data and unknown values)."""
        for c in self.classes:
            if c.value == int(value):
                return tuple(int(x) for x in c.color)  # type: ignore[return-value]
        return (0, 0, 0)

    def hex(self, value: int) -> str:
        """The colour of a class value as ``#rrggbb`` (CSS, QGIS styles)."""
        return "#{:02x}{:02x}{:02x}".format(*self.color(value))

    def name_map(self, nodata: bool = True) -> dict[int, str]:
        """``{value: name}``, with ``255: "nodata"`` unless ``nodata`` is False."""
        out = {int(c.value): c.name for c in self.classes}
        if nodata:
            out[NODATA] = "nodata"
        return out

    def color_map(self) -> dict[int, tuple[int, int, int]]:
        """``{value: (r, g, b)}`` of the classes (no data left out)."""
        return {int(c.value): tuple(int(x) for x in c.color) for c in self.classes}  # type: ignore[misc]

    def gdal_colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """The GDAL palette of all 256 values: classes opaque, 255 (no data) transparent, others black."""
        cmap = {v: (0, 0, 0, 255) for v in range(256)}
        cmap.update({v: (*rgb, 255) for v, rgb in self.color_map().items()})
        cmap[NODATA] = (0, 0, 0, 0)
        return cmap

    def lut(self, nodata_rgb: tuple[int, int, int] = NODATA_RGB) -> np.ndarray:
        """uint8 ``(256, 3)`` lookup table: ``lut[classes]`` is an RGB image (no data and unknown: ``nodata_rgb``)."""
        table = np.empty((256, 3), np.uint8)
        table[:] = nodata_rgb
        for v, rgb in self.color_map().items():
            table[v] = rgb
        return table

    def entries(self, nodata: bool = True) -> list[tuple[str, tuple[int, int, int]]]:
        """``[(name, rgb), ...]`` for drawing a legend, with ``("no data", NODATA_RGB)`` last unless ``nodata`` is False."""
        out = [(c.name, tuple(int(x) for x in c.color)) for c in self.classes]
        return out + [("no data", NODATA_RGB)] if nodata else out  # type: ignore[return-value]

    def tags(self) -> dict[str, str]:
        """GeoTIFF metadata of a class map: ``CLASS_NAMES``, ``CLASS_COLORS`` (JSON), ``NODATA_CLASS``,
        ``PALETTE`` (the scheme) and one ``CLASS_<value>`` per class."""
        tags = {
            "CLASS_NAMES": json.dumps({str(c.value): c.name for c in self.classes}),
            "CLASS_COLORS": json.dumps({str(c.value): list(c.color) for c in self.classes}),
            "NODATA_CLASS": str(NODATA),
            "PALETTE": self.scheme_name or "model",
        }
        tags.update({f"CLASS_{c.value}": c.name for c in self.classes})
        return tags

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> Legend | None:
        """The legend written by :meth:`tags` (None when the tags hold no ``CLASS_NAMES``)."""
        try:
            names = json.loads(tags["CLASS_NAMES"])
            colors = json.loads(tags.get("CLASS_COLORS", "{}"))
        except (KeyError, ValueError, TypeError):
            return None
        classes = tuple(
            ClassInfo(int(v), str(n), tuple(int(x) for x in colors.get(v, DEFAULT_LEGEND.color(int(v)))))  # type: ignore[arg-type]
            for v, n in sorted(names.items(), key=lambda kv: int(kv[0]))
        )
        scheme = tags.get("PALETTE")
        return cls(classes, scheme if scheme in SCHEMES else None)


def as_legend(obj: Any = None) -> Legend:
    """A :class:`Legend` from a legend, a ``ModelSpec`` (its classes), a class table, or None (the default).

    The writers take a legend; this keeps them accepting a ``ModelSpec`` too.

    Raises:
        TypeError: for anything else.
    """
    if obj is None:
        return DEFAULT_LEGEND
    if isinstance(obj, Legend):
        return obj
    classes = getattr(obj, "classes", None)
    if classes is not None and not isinstance(obj, (str, bytes)):
        return Legend.of(classes)
    if isinstance(obj, (list, tuple)):
        return Legend.of(obj)
    raise TypeError(f"expected a Legend, a ModelSpec or a class table, got {type(obj).__name__}")


#: The Nimbus classes: 0 cloud, 1 ground, 2 snow, 3 water, in the original colours.
DEFAULT_LEGEND: Legend = Legend(DEFAULT_CLASSES, "default")
