"""Self-describing model files: the :class:`ModelSpec` read from (and written to) ONNX metadata.

A Nimbus ONNX file carries everything the deployment side needs in its ``metadata_props``: the
classes (values, names, colours), the input channels by name and in order, each channel's
normalisation exactly as in training, the pixel size, the window size and default overlap, whether
the graph accepts any height/width, and a format version. Every value is a JSON string.

Two families of keys are written:

* ``nimbus.*`` keys, the authoritative description read by :meth:`ModelSpec.from_metadata`;
* the keys of the QGIS Deepness plugin (``model_type``, ``class_names``, ``resolution`` in cm,
  ``tile_size`` and ``tiles_size``, ``tiles_overlap`` in percent, ``standardization_mean/std``),
  so the same file runs in QGIS. Deepness divides inputs by 255 and then standardises; when the
  normalisation is baked into the graph (the default) we write mean 0 and std 1/255 per channel so
  its preprocessing cancels out and the graph sees the harmonised DN it expects.

Example:
    >>> spec = ModelSpec(channels=("B02", "B03"), mean=(0.0, 0.0), std=(1.0, 1.0))
    >>> ModelSpec.from_metadata(spec.to_metadata()) == spec
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from nimbus.errors import ModelError

__all__ = [
    "DEFAULT_CLASSES",
    "FORMAT_VERSION",
    "NODATA_CLASS",
    "ClassInfo",
    "ModelSpec",
]

#: Version of the ``nimbus.*`` metadata layout written by :meth:`ModelSpec.to_metadata`.
FORMAT_VERSION: int = 1

#: Class value written where the input has no data.
NODATA_CLASS: int = 255

#: Prefix of the Nimbus metadata keys.
_PREFIX = "nimbus."


@dataclass(frozen=True)
class ClassInfo:
    """One output class of a model.

    Attributes:
        value: the value written into class maps (0..254; 255 is no data).
        name: short lower-case name, e.g. ``"cloud"``.
        color: RGB colour of the palette, three integers 0..255.
    """

    value: int
    name: str
    color: tuple[int, int, int]


#: The Nimbus classes: 0 cloud, 1 ground, 2 snow, 3 water (255 is no data).
DEFAULT_CLASSES: tuple[ClassInfo, ...] = (
    ClassInfo(0, "cloud", (255, 0, 0)),
    ClassInfo(1, "ground", (112, 153, 89)),
    ClassInfo(2, "snow", (115, 191, 250)),
    ClassInfo(3, "water", (242, 238, 162)),
)


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


@dataclass(frozen=True)
class ModelSpec:
    """What a segmentation model expects and produces, as recorded in its ONNX metadata.

    The graph's output channel ``k`` is the probability (or logit, if ``softmax_in_graph`` is
    false) of ``classes[k]``.

    Attributes:
        channels: input channel names in order: bands (``"B01"`` .. ``"B12"``, ``"B8A"``) and
            auxiliary layers (``"altitude"``, ``"treecover"``, ``"water"``).
        mean: per-channel mean of the training normalisation ``(x - mean) / std``.
        std: per-channel standard deviation of that normalisation.
        classes: the output classes in channel order.
        resolution: pixel size in metres the model works at.
        window: window (tile) size in pixels the model was trained on.
        overlap: default fraction (0 <= overlap < 1) of a window shared with its neighbour.
        dynamic_hw: whether the graph accepts any height/width (else exactly ``window``).
        normalization_in_graph: the graph normalises itself: feed harmonised DN / raw auxiliary
            values. When false the caller applies ``(x - mean) / std``.
        softmax_in_graph: the graph returns probabilities. When false it returns logits and the
            caller applies a softmax over the class axis.
        name: model name, used in output file names.
        version: model version, used in output file names.
        format_version: version of the metadata layout.
        input_name: name of the graph input (filled by :meth:`from_onnx`).
        output_name: name of the graph output holding the class scores (filled by :meth:`from_onnx`).
        input_dtype: ``"float32"`` or ``"float16"``: the element type the graph input takes.
        description: free text (training data, licence, ...).
    """

    channels: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[ClassInfo, ...] = DEFAULT_CLASSES
    resolution: float = 10.0
    window: int = 256
    overlap: float = 0.5
    dynamic_hw: bool = True
    normalization_in_graph: bool = True
    softmax_in_graph: bool = True
    name: str = "nimbus"
    version: str = "0"
    format_version: int = FORMAT_VERSION
    input_name: str = "input"
    output_name: str = "probabilities"
    input_dtype: str = "float32"
    description: str = ""
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f" in {self.source}" if self.source else ""
        object.__setattr__(self, "channels", tuple(str(c) for c in self.channels))
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        object.__setattr__(
            self,
            "classes",
            tuple(c if isinstance(c, ClassInfo) else ClassInfo(int(c[0]), str(c[1]), tuple(c[2])) for c in self.classes),
        )
        n = len(self.channels)
        if n == 0:
            raise ModelError(f"model metadata{where} lists no input channels")
        if len(set(self.channels)) != n:
            raise ModelError(f"model metadata{where} lists a channel twice: {list(self.channels)}")
        if len(self.mean) != n or len(self.std) != n:
            raise ModelError(
                f"model metadata{where}: {n} channels but {len(self.mean)} means and {len(self.std)} stds; "
                "give one mean and one std per channel"
            )
        if not all(math.isfinite(v) for v in (*self.mean, *self.std)):
            raise ModelError(f"model metadata{where}: every mean and std must be a finite number, got {list(self.mean)} / {list(self.std)}")
        if any(not s > 0 for s in self.std):
            raise ModelError(f"model metadata{where}: every std must be > 0, got {list(self.std)}")
        if not self.classes:
            raise ModelError(f"model metadata{where} lists no classes")
        values = [c.value for c in self.classes]
        if len(set(values)) != len(values) or any(not 0 <= v < NODATA_CLASS for v in values):
            raise ModelError(f"model metadata{where}: class values must be distinct and in 0..254, got {values}")
        if int(self.window) <= 0:
            raise ModelError(f"model metadata{where}: window must be positive, got {self.window}")
        if not 0.0 <= float(self.overlap) < 1.0:
            raise ModelError(f"model metadata{where}: overlap must be in [0, 1), got {self.overlap}")
        if float(self.resolution) <= 0:
            raise ModelError(f"model metadata{where}: resolution must be positive, got {self.resolution}")
        if self.input_dtype not in ("float32", "float16"):
            raise ModelError(f"model{where}: input type {self.input_dtype!r} is not supported (float32 or float16)")
        object.__setattr__(self, "window", int(self.window))
        object.__setattr__(self, "overlap", float(self.overlap))
        object.__setattr__(self, "resolution", float(self.resolution))

    # ------------------------------------------------------------------ derived
    @property
    def num_classes(self) -> int:
        """Number of output classes (channels of the model output)."""
        return len(self.classes)

    @property
    def class_values(self) -> tuple[int, ...]:
        """Class values in output-channel order."""
        return tuple(c.value for c in self.classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in output-channel order."""
        return tuple(c.name for c in self.classes)

    @property
    def class_colors(self) -> tuple[tuple[int, int, int], ...]:
        """Class colours (RGB) in output-channel order."""
        return tuple(c.color for c in self.classes)

    @property
    def bands(self) -> tuple[str, ...]:
        """The input channels that are Sentinel-2 bands."""
        from nimbus.bands import NATIVE_RESOLUTION

        return tuple(c for c in self.channels if c in NATIVE_RESOLUTION)

    @property
    def aux_layers(self) -> tuple[str, ...]:
        """The input channels that are auxiliary layers (not Sentinel-2 bands)."""
        from nimbus.bands import NATIVE_RESOLUTION

        return tuple(c for c in self.channels if c not in NATIVE_RESOLUTION)

    @property
    def file_tag(self) -> str:
        """``name`` and ``version`` as used in output file names, e.g. ``"nimbus-unet-v1"``."""
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in self.name) or "model"
        ver = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(self.version))
        return f"{safe}-v{ver}" if ver else safe

    def replace(self, **changes: Any) -> ModelSpec:
        """A copy with some fields changed (e.g. ``spec.replace(window=512)``)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ metadata
    def to_metadata(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` describing this model: ``nimbus.*`` and QGIS Deepness keys.

        Every value is a JSON string (Deepness ``json.loads`` each one).

        Returns:
            A ``{key: json_text}`` dict, ready for ``onnx.helper.set_model_props``.
        """
        meta: dict[str, Any] = {
            "format_version": self.format_version,
            "model_name": self.name,
            "model_version": str(self.version),
            "channels": list(self.channels),
            "mean": list(self.mean),
            "std": list(self.std),
            "classes": [{"value": c.value, "name": c.name, "color": list(c.color)} for c in self.classes],
            "nodata_class": NODATA_CLASS,
            "resolution_m": self.resolution,
            "window": self.window,
            "overlap": self.overlap,
            "dynamic_hw": self.dynamic_hw,
            "normalization_in_graph": self.normalization_in_graph,
            "softmax_in_graph": self.softmax_in_graph,
            "input_dtype": self.input_dtype,
            "description": self.description,
        }
        out = {_PREFIX + k: json.dumps(v) for k, v in meta.items()}
        n = len(self.channels)
        if self.normalization_in_graph:
            d_mean, d_std = [0.0] * n, [1.0 / 255.0] * n
        else:  # Deepness: x/255 then (x - m)/s  ==  (x - 255 m)/(255 s)
            d_mean = [m / 255.0 for m in self.mean]
            d_std = [s / 255.0 for s in self.std]
        deepness = {
            "model_type": "Segmentor",
            "class_names": {str(i): c.name for i, c in enumerate(self.classes)},
            "resolution": self.resolution * 100.0,
            "tile_size": self.window,
            "tiles_size": self.window,
            "tiles_overlap": int(round(self.overlap * 100)),
            "standardization_mean": d_mean,
            "standardization_std": d_std,
        }
        out.update({k: json.dumps(v) for k, v in deepness.items()})
        return out

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str = "") -> ModelSpec:
        """Parse the ``nimbus.*`` keys of a model's metadata.

        Args:
            meta: the ``metadata_props`` as a ``{key: value}`` mapping (values JSON text).
            source: the file the metadata came from, used in error messages.

        Returns:
            The model description.

        Raises:
            ModelError: when the Nimbus keys are missing or malformed.
        """
        where = f" {source}" if source else ""
        if (_PREFIX + "channels") not in meta:
            has_deepness = "model_type" in meta
            raise ModelError(
                f"model{where} has no Nimbus metadata (key 'nimbus.channels' missing"
                + ("; it has only QGIS Deepness keys, which do not name the input channels" if has_deepness else "")
                + "); export it with `nimbus export`, or write ModelSpec(...).to_metadata() into its metadata_props"
            )

        def get(key: str, default: Any = ...) -> Any:
            full = _PREFIX + key
            if full not in meta:
                if default is ...:
                    raise ModelError(f"model{where}: metadata key {full!r} is missing; re-export the model with `nimbus export`")
                return default
            raw = meta[full]
            try:
                return json.loads(raw) if isinstance(raw, str) else raw
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits, nesting too deep
                raise ModelError(f"model{where}: metadata key {full!r} is not valid JSON ({exc}): {raw!r}") from exc

        try:
            fmt = int(get("format_version", FORMAT_VERSION))
        except (TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"model{where}: 'nimbus.format_version' is not an integer") from exc
        if fmt > FORMAT_VERSION:
            raise ModelError(
                f"model{where} uses metadata format {fmt}, newer than this Nimbus understands ({FORMAT_VERSION}); upgrade nimbus"
            )
        raw_classes = get("classes", None)
        if raw_classes is None:
            classes = DEFAULT_CLASSES
        else:
            try:
                classes = tuple(ClassInfo(int(c["value"]), str(c["name"]), tuple(int(x) for x in c["color"])) for c in raw_classes)
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise ModelError(f"model{where}: 'nimbus.classes' must be a list of {{value, name, color}}: {exc}") from exc
        channels = get("channels")
        n = len(channels) if isinstance(channels, list) else 0
        try:
            return cls(
                channels=tuple(channels),
                mean=tuple(get("mean", [0.0] * n)),
                std=tuple(get("std", [1.0] * n)),
                classes=classes,
                resolution=float(get("resolution_m", 10.0)),
                window=int(get("window", 256)),
                overlap=float(get("overlap", 0.5)),
                dynamic_hw=_bool(get("dynamic_hw", True)),
                normalization_in_graph=_bool(get("normalization_in_graph", True)),
                softmax_in_graph=_bool(get("softmax_in_graph", True)),
                name=str(get("model_name", "model")),
                version=str(get("model_version", "0")),
                format_version=fmt,
                input_dtype=str(get("input_dtype", "float32")),
                description=str(get("description", "")),
                source=source,
            )
        except (TypeError, ValueError, OverflowError) as exc:
            raise ModelError(f"model{where}: malformed Nimbus metadata: {exc}") from exc

    @classmethod
    def from_onnx(cls, path: str | os.PathLike[str]) -> ModelSpec:
        """Read the description of an ONNX model file (metadata plus graph input/output).

        The graph decides ``input_name``, ``output_name``, ``input_dtype`` and, when the
        metadata says nothing, ``dynamic_hw``. The number of graph input channels and output
        classes must match the metadata when they are fixed in the graph.

        Args:
            path: the ``.onnx`` file.

        Returns:
            The model description.

        Raises:
            ModelError: when the file is missing, not ONNX, or lacks the Nimbus metadata.
        """
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise ModelError(f"model file {path} does not exist")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own (non-NimbusError) exception types
            raise ModelError(f"model file {path} cannot be loaded by onnxruntime: {exc}") from exc
        meta = dict(sess.get_modelmeta().custom_metadata_map)
        spec = cls.from_metadata(meta, source=path)
        return spec._with_graph(sess.get_inputs(), sess.get_outputs(), path, meta)

    def _with_graph(self, inputs: Sequence[Any], outputs: Sequence[Any], path: str, meta: Mapping[str, str]) -> ModelSpec:
        if len(inputs) != 1:
            raise ModelError(f"model {path} has {len(inputs)} graph inputs; Nimbus models take exactly one (N, C, H, W) input")
        inp = inputs[0]
        out = outputs[0]
        for o in outputs:
            if o.name == self.output_name:
                out = o
        types = {"tensor(float)": "float32", "tensor(float16)": "float16"}
        if inp.type not in types:
            raise ModelError(f"model {path}: graph input {inp.name!r} has type {inp.type}; expected float or float16")
        shape = list(inp.shape)
        if len(shape) != 4:
            raise ModelError(f"model {path}: graph input {inp.name!r} has shape {shape}; expected (N, C, H, W)")
        if isinstance(shape[1], int) and shape[1] != len(self.channels):
            raise ModelError(
                f"model {path}: graph input takes {shape[1]} channels but the metadata names {len(self.channels)}: {list(self.channels)}"
            )
        oshape = list(out.shape)
        if len(oshape) == 4 and isinstance(oshape[1], int) and oshape[1] != self.num_classes:
            raise ModelError(f"model {path}: graph output has {oshape[1]} channels but the metadata names {self.num_classes} classes")
        dynamic = not (isinstance(shape[2], int) and isinstance(shape[3], int))
        changes: dict[str, Any] = {
            "input_name": inp.name,
            "output_name": out.name,
            "input_dtype": types[inp.type],
            "dynamic_hw": dynamic if (_PREFIX + "dynamic_hw") not in meta else (self.dynamic_hw and dynamic),
        }
        if not dynamic and shape[2] != shape[3]:
            raise ModelError(f"model {path}: fixed non-square input {shape[2]}x{shape[3]} is not supported")
        if not dynamic and shape[2] != self.window:
            changes["window"] = int(shape[2])
        return self.replace(**changes)

    # ------------------------------------------------------------------ text
    def describe(self) -> str:
        """A human-readable description (what ``nimbus info MODEL.onnx`` prints)."""
        lines = [
            f"model       {self.name} version {self.version}" + (f"  ({self.source})" if self.source else ""),
            f"format      nimbus metadata v{self.format_version}; input {self.input_name!r} {self.input_dtype}, "
            f"output {self.output_name!r}",
            f"resolution  {self.resolution:g} m",
            f"window      {self.window} px, default overlap {self.overlap:g}, "
            + ("dynamic height/width" if self.dynamic_hw else "fixed height/width"),
            "graph       "
            + ("normalises its input (feed harmonised DN / raw auxiliary values)" if self.normalization_in_graph else "expects normalised input")
            + ", "
            + ("returns softmax probabilities" if self.softmax_in_graph else "returns logits"),
            f"classes     {self.num_classes} (255 = no data)",
        ]
        for i, c in enumerate(self.classes):
            lines.append(f"  [{i}] {c.value:3d} {c.name:<10s} rgb{tuple(c.color)}")
        lines.append(f"channels    {len(self.channels)}  (x - mean) / std")
        for i, (ch, m, s) in enumerate(zip(self.channels, self.mean, self.std)):
            lines.append(f"  [{i:2d}] {ch:<10s} mean {m:12.4f}  std {s:12.4f}")
        if self.description:
            lines.append(f"about       {self.description}")
        return "\n".join(lines)
