"""TensorRT runtime: runs the ``model.engine`` that ``convert/tensorrt.py`` (or ``vit-edge build-engine``) built.

An engine only runs on the TensorRT version and GPU architecture that built it, and deserializing a
foreign one fails with an opaque message, so the manifest's record is compared with this machine first
(:func:`engine_mismatch`, a pure function). A TensorRT directory without an engine runs its
TensorRT-ready ONNX in ONNX Runtime instead, and says so.

Device memory and streams come from NVIDIA's cuda-python bindings (the ``tensorrt`` extra).
API followed (TensorRT 10.x and 11.x, name-based I/O, enqueueV3):
https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-8x-to-10x-python-api-patterns.html
https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/index.html (ICudaEngine, IExecutionContext)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from vit_edge.errors import ArtifactError, BackendUnavailable, require
from vit_edge.runtimes.base import Runtime

log = logging.getLogger("vit_edge")


def rebuild_command(directory) -> str:
    return f"vit-edge build-engine {directory}"


def engine_mismatch(recorded: dict | None, tensorrt_version: str, gpu: dict) -> str | None:
    """Why an engine recorded in a manifest cannot run here (None: it can).

    ``recorded`` is ``manifest["tensorrt"]["engine"]`` (not None); ``gpu`` has ``name`` and ``compute_capability``.
    TensorRT engines are tied to the exact TensorRT version and to the GPU architecture (compute
    capability); a different GPU model of the same architecture is allowed with a warning.
    """
    built_trt = str(recorded.get("tensorrt_version", "?"))
    built_cc = str(recorded.get("compute_capability", "?"))
    built_gpu = recorded.get("gpu", "?")
    if built_trt != str(tensorrt_version):
        return (f"the engine was built with TensorRT {built_trt} on {built_gpu} (sm {built_cc}), "
                f"this machine has TensorRT {tensorrt_version}")
    if built_cc != str(gpu.get("compute_capability")):
        return (f"the engine was built for {built_gpu} (sm {built_cc}), this GPU is {gpu.get('name')} "
                f"(sm {gpu.get('compute_capability')})")
    return None


def check_engine(recorded: dict | None, tensorrt_version: str, gpu: dict, directory) -> None:
    """Raise a one-line :class:`ArtifactError` with the rebuild command when the engine is foreign."""
    if not recorded:  # a bare engine (e.g. from trtexec): nothing to compare, TensorRT will have its say
        log.warning("%s: no manifest record of how the engine was built; cannot check it fits this machine",
                    directory)
        return
    reason = engine_mismatch(recorded, tensorrt_version, gpu)
    if reason:
        raise ArtifactError(f"{directory}: stale or foreign TensorRT engine: {reason}",
                            hint=f"rebuild it on this machine: {rebuild_command(directory)}")
    if recorded.get("gpu") != gpu.get("name"):
        log.warning("engine built on %s, running on %s (same architecture sm %s)", recorded.get("gpu"),
                    gpu.get("name"), gpu.get("compute_capability"))


# ------------------------------------------------------------------ CUDA through cuda-python


def cudart():
    """cuda-python's runtime bindings (``cuda.bindings.runtime`` since 12.6, ``cuda.cudart`` before)."""
    try:
        from cuda.bindings import runtime
    except ImportError:
        try:
            from cuda import cudart as runtime
        except ImportError:
            raise BackendUnavailable("cuda-python is not installed",
                                     hint="install it with: pip install 'vit-edge[tensorrt]'") from None
    return runtime


def cuda_call(result):
    """cuda-python returns ``(error, *values)``; raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ArtifactError(f"CUDA error {err}", hint="check the GPU and driver (nvidia-smi)")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def gpu_info(device: int = 0) -> dict:
    """Name and compute capability of a CUDA device."""
    rt = cudart()
    count = cuda_call(rt.cudaGetDeviceCount())
    if not count:
        raise BackendUnavailable("no CUDA GPU found", hint="TensorRT engines need an NVIDIA GPU")
    props = cuda_call(rt.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name, "compute_capability": f"{props.major}.{props.minor}", "device": device}


def tensorrt_version() -> str:
    return require("tensorrt", "tensorrt").__version__


# ------------------------------------------------------------------ the runtime


class TensorRTRuntime(Runtime):
    target = "tensorrt"

    def __init__(self, path, *, preprocess, manifest, device: int = 0, **kwargs):
        trt = require("tensorrt", "tensorrt")
        self.path = Path(path)
        self.rt = cudart()
        gpu = gpu_info(device)
        recorded = manifest.tensorrt.engine if manifest is not None and manifest.tensorrt is not None else None
        check_engine(recorded, trt.__version__, gpu, self.path.parent)
        if recorded and recorded.get("sha256"):
            from vit_edge.artifact import sha256_file

            if sha256_file(self.path) != recorded["sha256"]:
                raise ArtifactError(f"{self.path}: the engine file is not the one the manifest records",
                                    hint=f"rebuild it: {rebuild_command(self.path.parent)}")
        cuda_call(self.rt.cudaSetDevice(device))
        self.gpu = gpu
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{self.path}: TensorRT could not deserialize the engine",
                                hint=f"rebuild it: {rebuild_command(self.path.parent)}")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"{self.path}: expected one input and one output, got {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, max_batch = int(low[0]), int(high[0])
        self.stream = cuda_call(self.rt.cudaStreamCreate())
        self._buffers = {}  # name -> (device pointer, bytes), grown on demand
        kwargs.setdefault("name", self.path.name)
        super().__init__(preprocess=preprocess, max_batch=max_batch, manifest=manifest, **kwargs)

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (None, 0))
        if size < nbytes:
            if ptr is not None:
                cuda_call(self.rt.cudaFree(ptr))
            ptr = cuda_call(self.rt.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return int(ptr)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n < self.min_batch:  # the profile's minimum: pad, run, drop the padding
            batch = np.concatenate([batch, np.zeros((self.min_batch - n, *batch.shape[1:]), batch.dtype)])
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        kind = self.rt.cudaMemcpyKind
        self.context.set_input_shape(self.input_name, tuple(batch.shape))
        out = np.empty(tuple(self.context.get_tensor_shape(self.output_name)), self.output_dtype)
        d_in = self._buffer(self.input_name, batch.nbytes)
        d_out = self._buffer(self.output_name, out.nbytes)
        self.context.set_tensor_address(self.input_name, d_in)
        self.context.set_tensor_address(self.output_name, d_out)
        cuda_call(self.rt.cudaMemcpyAsync(d_in, batch.ctypes.data, batch.nbytes,
                                          kind.cudaMemcpyHostToDevice, self.stream))
        if not self.context.execute_async_v3(int(self.stream)):
            raise ArtifactError(f"{self.path}: TensorRT execution failed")
        cuda_call(self.rt.cudaMemcpyAsync(out.ctypes.data, d_out, out.nbytes, kind.cudaMemcpyDeviceToHost,
                                          self.stream))
        cuda_call(self.rt.cudaStreamSynchronize(self.stream))
        return out[:n].astype(np.float32, copy=False)

    def info(self) -> dict:
        return {**super().info(), "device": self.gpu["name"]}

    def close(self) -> None:
        """Free the device buffers and the stream (idempotent; also run when garbage-collected)."""
        for ptr, _ in getattr(self, "_buffers", {}).values():
            self.rt.cudaFree(ptr)
        self._buffers = {}
        if getattr(self, "stream", None) is not None:
            self.rt.cudaStreamDestroy(self.stream)
            self.stream = None

    def __del__(self):
        self.close()


def from_artifact(path: Path, manifest, preprocess, **options) -> Runtime:
    common = {"labels": manifest.labels, "task": manifest.task or "classify",
              "precision": manifest.precision or "fp32"}
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from vit_edge.runtimes.onnx import ONNXRuntime

        if options.get("warn_no_engine", True):  # convert says it once in its own notes
            log.warning("no TensorRT engine built yet: running the TensorRT-ready %s in ONNX Runtime (build the "
                        "engine on the target: %s)", path.name, rebuild_command(path.parent))
        return ONNXRuntime(path, preprocess=preprocess, manifest=manifest, threads=options.get("threads"),
                           name=f"{path.name} (no engine)", **common)
    device = options.get("device")
    device = int(device) if str(device).isdigit() else 0  # "CPU"/"GPU" are OpenVINO device names
    return TensorRTRuntime(path, preprocess=preprocess, manifest=manifest, device=device, **common)
