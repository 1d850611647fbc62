"""How a run tiles and writes: :class:`SegmentConfig`, frozen and picklable (it travels to Dask workers).

What the model file says (channels, classes, resolution, its default window and overlap) is the
:class:`~nimbus.modelspec.ModelSpec` and never changes during a run; how one run cuts windows,
blends and writes is a :class:`SegmentConfig`. A config is checked when it is made, naming the
option that is out of range (the CLI's ``--window`` and friends), never the model's metadata.

Example:
    >>> cfg = SegmentConfig(window=512, tta=4, probabilities="uint8")
    >>> cfg.replace(threads=2).threads
    2
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nimbus.errors import UsageError

__all__ = ["PROBABILITY_KINDS", "SegmentConfig", "check_options"]

#: Encodings of the optional probability raster.
PROBABILITY_KINDS: tuple[str, ...] = ("float16", "uint8")


def _number(name: str, value: Any, kind: type) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and float(value) != int(value)):
        raise UsageError(f"--{name} {value!r}: expected {'an integer' if kind is int else 'a number'}")
    return kind(value)


def check_options(
    window: int | None = None,
    overlap: float | None = None,
    weights: str = "spline",
    tta: int | bool = 0,
    batch: int = 8,
    threads: int = 0,
) -> None:
    """Refuse run options out of range, naming the option (not the model, whose metadata is checked apart).

    Args:
        window: window size in pixels, or None (the model's).
        overlap: overlap fraction in [0, 1), or None (the model's).
        weights: one of :data:`nimbus.windows.WEIGHT_KINDS`.
        tta: 0..8 D4 transforms (True = 8).
        batch: windows per inference call, >= 1.
        threads: CPU threads, >= 0 (0 = all cores).

    Raises:
        UsageError: naming the option, its value and the allowed range.
    """
    from nimbus.windows import WEIGHT_KINDS

    if window is not None and not 16 <= _number("window", window, int) <= 8192:
        raise UsageError(f"--window {window}: must be between 16 and 8192 pixels")
    if overlap is not None and not 0.0 <= _number("overlap", overlap, float) < 1.0:
        raise UsageError(f"--overlap {overlap}: must be a fraction in [0, 1), e.g. 0.5")
    if weights not in WEIGHT_KINDS:
        raise UsageError(f"--weights {weights!r}: choose one of {', '.join(WEIGHT_KINDS)}")
    if tta is not True and not 0 <= _number("tta", tta, int) <= 8:
        raise UsageError(f"--tta {tta}: must be 0 (off) to 8 D4 transforms")
    if _number("batch", batch, int) < 1:
        raise UsageError(f"--batch {batch}: must be at least 1")
    if _number("threads", threads, int) < 0:
        raise UsageError(f"--threads {threads}: must be 0 (all cores) or more")


@dataclass(frozen=True)
class SegmentConfig:
    """One run's tiling, inference and output options (the model's own description is apart).

    Attributes:
        window: window size in pixels (None: the model's).
        overlap: fraction of a window shared with its neighbour, in [0, 1) (None: the model's).
        weights: blending weights: ``"spline"``, ``"gaussian"`` or ``"tukey"``.
        tta: D4 test-time augmentation, number of transforms averaged (0 or 1 = off, up to 8).
        batch: windows per inference call.
        provider: ``"auto"`` (CUDA if usable, else CPU), ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        threads: CPU threads for onnxruntime and the blend kernel (0 = all cores).
        aux: folder of auxiliary layers for models that take them; ``"auto"`` fetches them from
            public sources into the cache (:func:`nimbus.fetch.auto_aux`).
        probabilities: also write per-class probabilities: ``"uint8"`` or ``"float16"`` (None: no).
        uncertainty: also write the normalised entropy of the probabilities.
        quicklook: also write a PNG quicklook.
        stac_item: also write a STAC Item beside the class map (needs pystac, the ``[stac]`` extra;
            skipped with a warning where it is missing).
        overwrite: redo products whose outputs exist and validate (default: skip them).
        read_rows: input rows read per chunk (None: the window step).
        gdal_cache_mb: GDAL block cache of the process in MB (None: GDAL's default, 5 % of RAM).
        progress: show a progress bar per product (quiet when the output is not a terminal).
    """

    window: int | None = None
    overlap: float | None = None
    weights: str = "spline"
    tta: int = 0
    batch: int = 8
    provider: str = "auto"
    threads: int = 0
    aux: str | None = None
    probabilities: str | None = None
    uncertainty: bool = False
    quicklook: bool = False
    stac_item: bool = False
    overwrite: bool = False
    read_rows: int | None = None
    gdal_cache_mb: int | None = 256
    progress: bool = True

    def __post_init__(self) -> None:
        check_options(window=self.window, overlap=self.overlap, weights=self.weights, tta=self.tta, batch=self.batch, threads=self.threads)
        set_ = object.__setattr__
        set_(self, "tta", 8 if self.tta is True else max(1, min(8, int(self.tta or 1))))
        set_(self, "batch", int(self.batch))
        set_(self, "threads", int(self.threads))
        if self.window is not None:
            set_(self, "window", int(self.window))
        if self.overlap is not None:
            set_(self, "overlap", float(self.overlap))
        if self.probabilities is True:
            set_(self, "probabilities", "uint8")
        if self.probabilities in (False, ""):
            set_(self, "probabilities", None)
        if self.probabilities is not None and self.probabilities not in PROBABILITY_KINDS:
            raise UsageError(f"--probabilities {self.probabilities!r}: give the flag alone (uint8) or --probabilities float16")
        if self.provider not in ("auto", "cpu", "cuda", "tensorrt"):
            raise UsageError(f"--provider {self.provider!r}: choose one of auto, cpu, cuda, tensorrt")
        if self.read_rows is not None and _number("read_rows", self.read_rows, int) < 1:
            raise UsageError(f"read_rows {self.read_rows}: must be at least 1")
        if self.aux is not None:
            set_(self, "aux", str(self.aux))

    def replace(self, **changes: Any) -> SegmentConfig:
        """A copy with some options changed (checked again)."""
        return dataclasses.replace(self, **changes)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The outputs this run writes per product, the class map first."""
        out = ["classes"]
        if self.probabilities:
            out.append("probabilities")
        if self.uncertainty:
            out.append("uncertainty")
        if self.quicklook:
            out.append("quicklook")
        if self.stac_item:
            out.append("item")
        return tuple(out)

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain dict (for run reports)."""
        return dataclasses.asdict(self)
