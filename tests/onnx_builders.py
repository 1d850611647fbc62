"""Tiny ONNX models built with ``onnx.helper`` for the deployment-path tests.

Not a test module (no ``test_`` prefix): imported by test_session, test_segmenter, test_writers...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nimbus.modelspec import ModelSpec

__all__ = ["make_model"]


def make_model(
    path: str | Path,
    channels: tuple[str, ...] = ("B02", "B03", "B04", "B08"),
    kind: str = "normalise",
    n_classes: int = 4,
    dtype: str = "float32",
    fixed: int | None = None,
    metadata: bool = True,
    weights: np.ndarray | None = None,
    **spec: object,
) -> Path:
    """Write a small segmentation-like ONNX model and return its path.

    Kinds:
        ``"normalise"``: output = the first ``n_classes`` input channels divided by their sum (per
            pixel), i.e. a probability vector that *is* the (normalised) input: blending must give
            it back exactly.
        ``"softmax"``: softmax over a 1x1 convolution (``weights`` (K, C)) of the input.
        ``"logits"``: the 1x1 convolution only (metadata says softmax is not in the graph).
        ``"symmetric"``: softmax over a 3x3 convolution whose kernels are symmetric under the
            dihedral group D4 (so the model commutes with flips and rotations).
        ``"conv3"``: softmax over a random (not symmetric) 3x3 convolution.

    Args:
        path: output ``.onnx`` path.
        channels: the model's input channel names.
        kind: see above.
        n_classes: output classes.
        dtype: ``"float32"`` or ``"float16"`` graph.
        fixed: fixed height/width (None = dynamic).
        metadata: write the Nimbus metadata (False gives a model that must be refused).
        weights: 1x1 convolution weights (K, C) for softmax/logits.
        **spec: extra :class:`ModelSpec` fields (window, overlap, name, ...).
    """
    c = len(channels)
    k = n_classes
    hw = [fixed, fixed] if fixed else ["H", "W"]
    elem = TensorProto.FLOAT16 if dtype == "float16" else TensorProto.FLOAT
    npdt = np.float16 if dtype == "float16" else np.float32
    x = helper.make_tensor_value_info("input", elem, ["N", c, *hw])
    y = helper.make_tensor_value_info("probabilities", elem, ["N", k, *hw])
    nodes, inits = [], []
    softmax = True
    if kind == "normalise":
        assert c >= k
        inits += [numpy_helper.from_array(np.array([0], np.int64), "s0"), numpy_helper.from_array(np.array([k], np.int64), "s1"),
                  numpy_helper.from_array(np.array([1], np.int64), "ax")]
        nodes += [
            helper.make_node("Slice", ["input", "s0", "s1", "ax"], ["xs"]),
            helper.make_node("ReduceSum", ["xs", "ax"], ["tot"], keepdims=1),
            helper.make_node("Div", ["xs", "tot"], ["probabilities"]),
        ]
    elif kind in ("softmax", "logits"):
        w = np.asarray(weights if weights is not None else np.random.default_rng(0).normal(0, 1e-3, (k, c)), np.float32)
        inits.append(numpy_helper.from_array(w.reshape(k, c, 1, 1).astype(npdt), "w"))
        if kind == "softmax":
            nodes += [helper.make_node("Conv", ["input", "w"], ["z"]), helper.make_node("Softmax", ["z"], ["probabilities"], axis=1)]
        else:
            nodes.append(helper.make_node("Conv", ["input", "w"], ["probabilities"]))
            softmax = False
    elif kind == "symmetric":
        rng = np.random.default_rng(1)
        a, b, cc = (rng.normal(0, 1e-3, (k, c)) for _ in range(3))
        ker = np.empty((k, c, 3, 3), np.float32)
        ker[:, :, [0, 0, 2, 2], [0, 2, 0, 2]] = a[..., None]
        ker[:, :, [0, 1, 1, 2], [1, 0, 2, 1]] = b[..., None]
        ker[:, :, 1, 1] = cc
        inits.append(numpy_helper.from_array(ker.astype(npdt), "w"))
        nodes += [
            helper.make_node("Conv", ["input", "w"], ["z"], pads=[1, 1, 1, 1]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        ]
    elif kind == "conv3":
        ker = np.random.default_rng(2).normal(0, 1e-3, (k, c, 3, 3)).astype(np.float32)
        inits.append(numpy_helper.from_array(ker.astype(npdt), "w"))
        nodes += [
            helper.make_node("Conv", ["input", "w"], ["z"], pads=[1, 1, 1, 1]),
            helper.make_node("Softmax", ["z"], ["probabilities"], axis=1),
        ]
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, "nimbus_test", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        fields = dict(channels=channels, mean=(0.0,) * c, std=(1.0,) * c, softmax_in_graph=softmax, input_dtype=dtype,
                      dynamic_hw=fixed is None, name=f"test-{kind}", version="1")
        if fixed:
            fields["window"] = fixed
        fields.update(spec)
        helper.set_model_props(model, ModelSpec(**fields).to_metadata())
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, path)
    return path
