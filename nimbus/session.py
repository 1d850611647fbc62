"""An onnxruntime session for a Nimbus model: provider choice, CPU fallback, fp16, IO binding.

``provider``:

* ``"auto"`` (default): CUDA when onnxruntime offers it and the CUDA libraries load, else CPU;
* ``"cpu"``, ``"cuda"``; ``"tensorrt"`` (TensorRT, then CUDA, then CPU for unsupported nodes).

When CUDA is asked for (or offered) but cannot be used (CPU-only onnxruntime package, missing
CUDA/cuDNN libraries), the session runs on the CPU and says so with one warning per process.

Inputs are given as float32 numpy arrays ``(N, C, H, W)``; they are cast to float16 for fp16
graphs. On the CPU, :meth:`Session.run` with ``out=`` binds the input and a caller-owned output
buffer (IO binding), so a loop can reuse one output buffer, and a batch of more than
:data:`MAX_RUN_PIXELS` pixels runs in parts (bounded onnxruntime memory, the same result). On CUDA,
:meth:`Session.run_device` binds the input and output on the GPU (IO binding) and returns the
output as a numba device array, so the blending kernel reads it where it is.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

from nimbus.errors import ModelError
from nimbus.modelspec import ModelSpec

__all__ = ["MAX_RUN_PIXELS", "PROVIDERS", "Session", "resolve_providers"]

#: Most pixels (windows x height x width) one onnxruntime run gets on the CPU: a larger batch is
#: run in parts into the same output. onnxruntime's CPU arena keeps the peak of every intermediate
#: tensor, which grows with the pixels per run (a per-pixel rules graph holds ~200 bytes per pixel);
#: 8 windows of 256² (the shipped default model's batch) is the budget, so its runs are unchanged.
MAX_RUN_PIXELS: int = 8 * 256 * 256

#: Provider names accepted by :class:`Session`.
PROVIDERS: tuple[str, ...] = ("auto", "cpu", "cuda", "tensorrt")

_WARNED: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def resolve_providers(provider: str = "auto", device_id: int = 0) -> list[Any]:
    """The onnxruntime provider list for a provider name.

    Args:
        provider: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        device_id: GPU index.

    Returns:
        Providers (names or ``(name, options)`` tuples) in preference order, CPU last.

    Raises:
        ModelError: for an unknown provider name.
    """
    import onnxruntime as ort

    provider = str(provider).lower()
    if provider not in PROVIDERS:
        raise ModelError(f"unknown provider {provider!r}; choose one of {', '.join(PROVIDERS)}")
    available = set(ort.get_available_providers())
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    trt = ("TensorrtExecutionProvider", {"device_id": device_id})
    if provider == "cpu":
        return ["CPUExecutionProvider"]
    wanted = {"auto": [cuda], "cuda": [cuda], "tensorrt": [trt, cuda]}[provider]
    usable = [p for p in wanted if p[0] in available]
    if provider != "auto" and len(usable) < len(wanted):
        missing = [p[0] for p in wanted if p[0] not in available]
        _warn_once(
            "providers",
            f"onnxruntime offers no {', '.join(missing)} (installed providers: {', '.join(sorted(available))}); "
            "running on the CPU. Install onnxruntime-gpu (pip install nimbus-s2[gpu]) for GPU inference.",
        )
    return usable + ["CPUExecutionProvider"]


class Session:
    """A loaded model ready to run windows.

    Args:
        model: path of the ``.onnx`` file.
        provider: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"tensorrt"``.
        threads: intra-op CPU threads (0 = onnxruntime's default: all cores).
        device_id: GPU index for CUDA/TensorRT.
        max_run_pixels: on the CPU, batches with more pixels than this are run in parts (same
            result, bounded memory; None: never split).

    Attributes:
        spec: the model's :class:`~nimbus.modelspec.ModelSpec`.
        path: the model file.
        providers: the providers the session really uses, preferred first.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        provider: str = "auto",
        threads: int = 0,
        device_id: int = 0,
        max_run_pixels: int | None = MAX_RUN_PIXELS,
    ) -> None:
        import onnxruntime as ort

        self.max_run_pixels = max_run_pixels
        self.path = os.fspath(model)
        if not os.path.isfile(self.path):
            raise ModelError(f"model file {self.path} does not exist")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # no busy-waiting between runs: the blend kernel and the reader threads need those cores
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if threads and threads > 0:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        requested = resolve_providers(provider, device_id)
        try:
            self._sess = ort.InferenceSession(self.path, sess_options=opts, providers=requested)
        except Exception as exc:  # onnxruntime's own exception types
            if requested[0] != "CPUExecutionProvider":
                _warn_once("cuda-init", f"cannot start {requested[0]} for {self.path} ({exc}); running on the CPU")
                try:
                    self._sess = ort.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])
                except Exception as exc2:
                    raise ModelError(f"model file {self.path} cannot be loaded by onnxruntime: {exc2}") from exc2
            else:
                raise ModelError(f"model file {self.path} cannot be loaded by onnxruntime: {exc}") from exc
        self.providers: list[str] = list(self._sess.get_providers())
        wanted_gpu = [p[0] if isinstance(p, tuple) else p for p in requested if p != "CPUExecutionProvider"]
        if wanted_gpu and not any(p in self.providers for p in wanted_gpu):
            _warn_once(
                "cuda-libs",
                f"{wanted_gpu[0]} could not be used for {self.path} (CUDA/cuDNN libraries missing or no GPU); running on the CPU",
            )
        self.device_id = int(device_id)
        meta = dict(self._sess.get_modelmeta().custom_metadata_map)
        self.spec: ModelSpec = ModelSpec.from_metadata(meta, source=self.path)._with_graph(
            self._sess.get_inputs(), self._sess.get_outputs(), self.path, meta
        )
        self._np_dtype = np.float16 if self.spec.input_dtype == "float16" else np.float32
        self._binding: Any = None
        self._cpu_binding: Any = None
        self._out_dtype: str = self._sess.get_outputs()[0].type
        self._in_ortvalue: Any = None
        if not isinstance(self._sess.get_inputs()[0].shape[1], int):
            self._probe()

    def _probe(self) -> None:
        """Run one small batch of zeros: a graph whose channel dimension is dynamic must accept the
        metadata's channel count (otherwise onnxruntime fails later, in the middle of a product).

        Raises:
            ModelError: when the graph refuses an input of the metadata's shape.
        """
        size = 32 if self.spec.dynamic_hw else self.spec.window
        x = np.zeros((1, len(self.spec.channels), size, size), self._np_dtype)
        try:
            out = self._sess.run([self.spec.output_name], {self.spec.input_name: x})[0]
        except Exception as exc:  # onnxruntime's own exception types (Fail, InvalidArgument...)
            raise ModelError(
                f"model {self.path}: its graph does not accept the {len(self.spec.channels)} channels its metadata names "
                f"({', '.join(self.spec.channels)}): {' '.join(str(exc).split())[:300]}"
            ) from exc
        if out.ndim != 4 or out.shape[1] != self.spec.num_classes:
            raise ModelError(
                f"model {self.path}: output shape {tuple(out.shape)} for a ({len(self.spec.channels)}, {size}, {size}) input; "
                f"expected (1, {self.spec.num_classes}, H, W) for its {self.spec.num_classes} classes"
            )

    @property
    def on_gpu(self) -> bool:
        """Whether the session runs on CUDA or TensorRT."""
        return self.providers[0] in ("CUDAExecutionProvider", "TensorrtExecutionProvider")

    def run(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Run the graph on a batch and return its output on the host.

        Args:
            batch: ``(N, C, H, W)`` model input (float32; cast for fp16 graphs).
            out: optional float32 C-contiguous ``(N, K, H, W)`` array to write the output into,
                reused from call to call (CPU IO binding: onnxruntime writes into it directly, no
                output allocation or copy). The caller owns it: a later call overwrites it.

        On the CPU a batch of more than ``max_run_pixels`` pixels runs in parts, each written into
        its slice of the one output (the same values; onnxruntime's memory stays bounded).

        Returns:
            float32 ``(N, K, H, W)``: what the graph outputs (probabilities when
            ``spec.softmax_in_graph``, else logits); ``out`` itself when given.

        Raises:
            ModelError: when the batch does not have the model's channel count, or ``out`` is not
                a float32 C-contiguous array of the output's shape.
        """
        self._check(batch)
        x = np.ascontiguousarray(batch, dtype=self._np_dtype)
        if out is not None and (out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable):
            raise ModelError(f"model {self.path}: run(out=...) needs a writeable C-contiguous float32 array, got {out.dtype}")
        per_run = len(x)
        if self.max_run_pixels and not self.on_gpu and len(x) > 1:
            per_run = max(1, min(len(x), int(self.max_run_pixels) // max(1, x.shape[2] * x.shape[3])))
        host_f32 = not self.on_gpu and self._out_dtype == "tensor(float)"
        if out is None and (per_run >= len(x) or not host_f32):
            parts = [
                self._sess.run([self.spec.output_name], {self.spec.input_name: x[i : i + per_run]})[0] for i in range(0, len(x), per_run)
            ]
            res = parts[0] if len(parts) == 1 else np.concatenate(parts)
            return np.asarray(res, dtype=np.float32)
        if not host_f32:  # outputs not on the host in float32: one copy
            res = self.run(batch)
            if res.shape != out.shape:
                raise ModelError(f"model {self.path}: output of a {tuple(x.shape)} batch is {res.shape}; it does not fit the buffer {tuple(out.shape)}")
            np.copyto(out, res)
            return out
        if out is None:
            k = self.spec.num_classes
            out = np.empty((len(x), k, x.shape[2], x.shape[3]), np.float32)
        want = (len(x), self.spec.num_classes, x.shape[2], x.shape[3])  # Nimbus graphs keep H, W
        if tuple(out.shape) != want:
            raise ModelError(f"model {self.path}: output {want} of a {tuple(x.shape)} batch does not fit the buffer {tuple(out.shape)}")
        for i in range(0, len(x), per_run):  # parts of a large batch into the same output (views: contiguous)
            self._run_into(x[i : i + per_run], out[i : i + per_run])
        return out

    def _run_into(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """CPU IO binding: input bound in place, output bound to ``out``'s memory."""
        import onnxruntime as ort

        if self._cpu_binding is None:
            self._cpu_binding = self._sess.io_binding()
        binding = self._cpu_binding
        binding.bind_cpu_input(self.spec.input_name, x)
        binding.bind_ortvalue_output(self.spec.output_name, ort.OrtValue.ortvalue_from_numpy(out))
        try:
            self._sess.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime's own exception types
            raise ModelError(
                f"model {self.path}: onnxruntime failed on a {tuple(x.shape)} batch bound to an output buffer "
                f"{tuple(out.shape)}: {' '.join(str(exc).split())[:300]}"
            ) from exc
        finally:
            binding.clear_binding_inputs()
            binding.clear_binding_outputs()
        return out

    def run_device(self, batch: np.ndarray) -> tuple[Any, Any]:
        """Run on the GPU with IO binding; the output stays on the device.

        Args:
            batch: ``(N, C, H, W)`` host input; copied once to the GPU.

        Returns:
            ``(array, keepalive)``: a numba device array ``(N, K, H, W)`` viewing onnxruntime's
            output (float32 or float16), and the OrtValue owning that memory, which must be kept
            alive while the array is used.

        Raises:
            ModelError: when the session does not run on a GPU.
        """
        from numba import cuda

        if not self.on_gpu:
            raise ModelError(f"model {self.path} runs on the CPU; run_device needs the CUDA provider")
        out = self._run_bound(batch, "cuda")
        typestr = {"tensor(float)": "<f4", "tensor(float16)": "<f2"}[out.data_type()]
        view = _DeviceView(out.data_ptr(), tuple(out.shape()), typestr)
        return cuda.as_cuda_array(view), out

    def _run_bound(self, batch: np.ndarray, device: str) -> Any:
        """Run with IO binding on ``device`` ("cuda", or "cpu" for tests); return the output OrtValue.

        The input OrtValue is allocated once per batch shape on the device and refilled in place.
        """
        import onnxruntime as ort

        self._check(batch)
        x = np.ascontiguousarray(batch, dtype=self._np_dtype)
        dev_id = self.device_id if device == "cuda" else 0
        if self._in_ortvalue is None or tuple(self._in_ortvalue.shape()) != x.shape:
            self._in_ortvalue = ort.OrtValue.ortvalue_from_numpy(x, device, dev_id)
        else:
            self._in_ortvalue.update_inplace(x)
        binding = self._sess.io_binding()
        binding.bind_ortvalue_input(self.spec.input_name, self._in_ortvalue)
        binding.bind_output(self.spec.output_name, device, dev_id)
        self._sess.run_with_iobinding(binding)
        return binding.get_outputs()[0]

    def _check(self, batch: np.ndarray) -> None:
        if batch.ndim != 4 or batch.shape[1] != len(self.spec.channels):
            raise ModelError(
                f"model {self.path} takes (N, {len(self.spec.channels)}, H, W) inputs "
                f"({', '.join(self.spec.channels)}), got shape {tuple(batch.shape)}"
            )
        if not self.spec.dynamic_hw and batch.shape[2:] != (self.spec.window, self.spec.window):
            raise ModelError(
                f"model {self.path} has a fixed {self.spec.window}x{self.spec.window} input, got {batch.shape[2]}x{batch.shape[3]}"
            )


class _DeviceView:
    """A minimal ``__cuda_array_interface__`` over device memory owned by onnxruntime."""

    def __init__(self, ptr: int, shape: tuple[int, ...], typestr: str) -> None:
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False), "version": 3, "strides": None}
