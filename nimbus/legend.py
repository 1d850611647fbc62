"""The class legend: values, names and colours of the Nimbus classes, in one place.

Every writer of class maps (COG palettes, quicklooks), the labels, the labelling tool, training
and evaluation take their class table from here (or from a model's own ``nimbus.classes``
metadata, which is a :class:`Legend` too). Value 255 is no data everywhere.

Example:
    >>> from nimbus.legend import DEFAULT_LEGEND
    >>> DEFAULT_LEGEND.name(2)
    'snow'
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nimbus.modelspec import DEFAULT_CLASSES, NODATA_CLASS, ClassInfo

__all__ = ["DEFAULT_LEGEND", "NODATA", "Legend"]

#: The no-data class value of every class map.
NODATA: int = NODATA_CLASS


@dataclass(frozen=True)
class Legend:
    """An ordered class table (value, name, RGB colour); 255 is no data and never a class.

    Attributes:
        classes: the classes, in the model's output order.
    """

    classes: tuple[ClassInfo, ...] = DEFAULT_CLASSES

    @classmethod
    def of(cls, classes: Iterable[ClassInfo]) -> Legend:
        """The legend of a class table (e.g. ``ModelSpec.classes``)."""
        return cls(tuple(classes))

    @property
    def values(self) -> tuple[int, ...]:
        """The class values, in order."""
        return tuple(c.value for c in self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        """The class names, in order."""
        return tuple(c.name for c in self.classes)

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
                return tuple(c.color)  # type: ignore[return-value]
        return (0, 0, 0)

    def name_map(self, nodata: bool = True) -> dict[int, str]:
        """``{value: name}``, with ``255: "nodata"`` unless ``nodata`` is False."""
        out = {c.value: c.name for c in self.classes}
        if nodata:
            out[NODATA] = "nodata"
        return out

    def color_map(self) -> dict[int, tuple[int, int, int]]:
        """``{value: (r, g, b)}`` of the classes (no data left out)."""
        return {c.value: tuple(c.color) for c in self.classes}  # type: ignore[misc]

    def gdal_colormap(self) -> dict[int, tuple[int, int, int, int]]:
        """The GDAL palette: every class opaque, 255 (no data) transparent black."""
        cmap = {v: (*rgb, 255) for v, rgb in self.color_map().items()}
        cmap[NODATA] = (0, 0, 0, 0)
        return cmap


#: The Nimbus classes: 0 cloud, 1 ground, 2 snow, 3 water.
DEFAULT_LEGEND: Legend = Legend(DEFAULT_CLASSES)
