"""TensorRT runtime: runs the ``model.engine`` that ``convert/tensorrt`` (or ``vit-edge build-engine``) built.

An engine only runs on the TensorRT version and GPU that built it, and deserializing a foreign one fails
with an opaque message, so the manifest's record is compared with this machine first
(:func:`engine_mismatch`, a pure function): TensorRT version, compute capability, and -- because every
Jetson Orin module reports SM 8.7 -- SM count, memory and DLA cores, naming the board from the device tree.
A TensorRT directory without an engine runs its TensorRT-ready ONNX in ONNX Runtime instead, and says so.

One runtime may be shared by many threads (the Runtime contract): each call takes an execution slot -- its
own IExecutionContext, CUDA stream and pinned host / device buffers -- from a small pool, so no two threads
ever share a context or a buffer, and sets the CUDA device in the calling thread (the current device is
per host thread). Device memory, pinned host memory and streams come from NVIDIA's cuda-python bindings.
API followed (TensorRT 10.x and 11.x, name-based I/O, enqueueV3):
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/index.html (ICudaEngine,
IExecutionContext, Runtime.DLA_core) and samples/python/common_runtime.py (HostDeviceMem: cudaMallocHost).
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
from pathlib import Path

import numpy as np

from vit_edge.errors import ArtifactError, BackendUnavailable, require
from vit_edge.runtimes.base import Runtime

log = logging.getLogger("vit_edge")

DEVICE_TREE_MODEL = Path("/proc/device-tree/model")  # "NVIDIA Jetson AGX Orin Developer Kit" on a Jetson
MEMORY_TOLERANCE = 0.10  # Jetson memory as CUDA reports it moves a little with carve-outs, not by a SKU's 2x
DEFAULT_CONTEXTS = 2  # execution slots per runtime: each holds its own activation memory (scarce on Jetson)


def rebuild_command(directory) -> str:
    return f"vit-edge build-engine {directory}"


def rebuild_hint(path) -> str | None:
    """The fix for an engine that is not the one the manifest records (runtimes.load checks every target's
    files); None for the TensorRT-ready ONNX, which convert makes."""
    path = Path(path)
    return f"rebuild it: {rebuild_command(path.parent)}" if path.suffix.lower() in (".engine", ".plan") else None


def _board(info: dict) -> str:
    return info.get("board") or info.get("gpu") or info.get("name") or "?"


def _gib(n) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n else "? GiB"


def engine_mismatch(recorded: dict | None, tensorrt_version: str, gpu: dict) -> str | None:
    """Why an engine recorded in a manifest cannot run here (None: it can).

    ``recorded`` is ``manifest["tensorrt"]["engine"]`` (not None); ``gpu`` is :func:`device_info`'s dict.
    Engines are tied to the exact TensorRT version and to the GPU (architecture, and on Jetson the module:
    an AGX Orin engine is not an Orin Nano engine although both are sm 8.7); fields a record lacks (older
    manifests) are not compared."""
    built_trt = str(recorded.get("tensorrt_version", "?"))
    built_cc = str(recorded.get("compute_capability", "?"))
    built_gpu = recorded.get("gpu", "?")
    if built_trt != str(tensorrt_version):
        return (f"the engine was built with TensorRT {built_trt} on {built_gpu} (sm {built_cc}), "
                f"this machine has TensorRT {tensorrt_version}")
    if built_cc != str(gpu.get("compute_capability")):
        return (f"the engine was built for {built_gpu} (sm {built_cc}), this GPU is {gpu.get('name')} "
                f"(sm {gpu.get('compute_capability')})")
    here = f"{_board(gpu)} ({gpu.get('sm_count', '?')} SMs, {_gib(gpu.get('total_memory'))})"
    there = f"{_board(recorded)} ({recorded.get('sm_count', '?')} SMs, {_gib(recorded.get('total_memory'))})"
    if recorded.get("sm_count") and gpu.get("sm_count") and int(recorded["sm_count"]) != int(gpu["sm_count"]):
        return f"the engine was built on {there}, this is {here}"
    built_mem, mem = recorded.get("total_memory"), gpu.get("total_memory")
    if built_mem and mem and abs(int(built_mem) - int(mem)) > MEMORY_TOLERANCE * max(int(built_mem), int(mem)):
        return f"the engine was built on {there}, this is {here}"
    dla_core = recorded.get("dla_core")
    if dla_core is not None and gpu.get("dla_cores") is not None and int(gpu["dla_cores"]) <= int(dla_core):
        return f"the engine runs on DLA core {dla_core} of {there}; {_board(gpu)} has {gpu['dla_cores']} DLA core(s)"
    return None


def engine_warnings(recorded: dict, gpu: dict) -> list:
    """What differs but does not stop the engine (same module, other carrier board or GPU name)."""
    notes = []
    if recorded.get("board") and gpu.get("board") and recorded["board"] != gpu["board"]:
        notes.append(f"engine built on {recorded['board']}, running on {gpu['board']} (same GPU: "
                     f"sm {gpu.get('compute_capability')}, {gpu.get('sm_count', '?')} SMs)")
    elif recorded.get("gpu") != gpu.get("name"):
        notes.append(f"engine built on {recorded.get('gpu')}, running on {gpu.get('name')} "
                     f"(same architecture sm {gpu.get('compute_capability')})")
    return notes


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
    for note in engine_warnings(recorded, gpu):
        log.warning("%s", note)


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
                                     hint="install it with: pip install 'vit-edge[tensorrt-cu12]' (CUDA 12 driver, "
                                          "JetPack 6) or 'vit-edge[tensorrt-cu13]' (CUDA 13 driver)") from None
    return runtime


def cuda_call(result):
    """cuda-python returns ``(error, *values)``; raise on error, return the value(s)."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise ArtifactError(f"CUDA error {err}", hint="check the GPU and driver (nvidia-smi)")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def board_model(path: Path = DEVICE_TREE_MODEL) -> str | None:
    """The board name a Jetson's device tree gives (None elsewhere)."""
    try:
        return path.read_bytes().rstrip(b"\x00").decode(errors="replace").strip() or None
    except OSError:
        return None


def gpu_info(device: int = 0) -> dict:
    """Name, compute capability, SM count and memory of a CUDA device."""
    rt = cudart()
    count = cuda_call(rt.cudaGetDeviceCount())
    if not count:
        raise BackendUnavailable("no CUDA GPU found", hint="TensorRT engines need an NVIDIA GPU")
    props = cuda_call(rt.cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace").rstrip("\x00") if isinstance(props.name, bytes) else str(props.name)
    return {"name": name, "compute_capability": f"{props.major}.{props.minor}", "device": device,
            "sm_count": int(props.multiProcessorCount), "total_memory": int(props.totalGlobalMem)}


def device_info(device: int = 0, trt=None) -> dict:
    """:func:`gpu_info` plus the board (device tree) and, with ``trt``, the DLA core count."""
    info = {**gpu_info(device), "board": board_model()}
    if trt is not None:
        info["dla_cores"] = int(trt.Runtime(trt.Logger(trt.Logger.WARNING)).num_DLA_cores)
    return info


def tensorrt_version() -> str:
    return require("tensorrt", "tensorrt").__version__


class _Slot:
    """One execution context with its own stream and buffers: used by one thread at a time."""

    def __init__(self, context, stream):
        self.context, self.stream = context, stream
        self.buffers = {}  # tensor name -> (pinned host ptr, device ptr, bytes)


# ------------------------------------------------------------------ the runtime


class TensorRTRuntime(Runtime):
    target = "tensorrt"

    def __init__(self, path, *, preprocess, manifest, device: int = 0, contexts: int = DEFAULT_CONTEXTS, **kwargs):
        trt = require("tensorrt", "tensorrt")
        self.path = Path(path)
        self.rt = cudart()
        self.device = int(device)
        self._local = threading.local()
        self._bind_device()
        gpu = device_info(self.device, trt)
        recorded = manifest.tensorrt.engine if manifest is not None and manifest.tensorrt is not None else None
        check_engine(recorded, trt.__version__, gpu, self.path.parent)
        # The engine's sha256 is checked by runtimes.load against manifest.files (one check for every target).
        self.gpu = gpu
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        dla_core = recorded.get("dla_core") if recorded else None
        if dla_core is not None:  # IRuntime::setDLACore: "the DLA core that the deserialized engine must execute on"
            self._runtime.DLA_core = int(dla_core)
        self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise ArtifactError(f"{self.path}: TensorRT could not deserialize the engine",
                                hint=f"rebuild it: {rebuild_command(self.path.parent)}")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ArtifactError(f"{self.path}: expected one input and one output, got {inputs} and {outputs}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        # An engine built elsewhere (trtexec --inputIOFormats=fp16:chw) may take FP16 I/O: read, don't assume.
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        if self.input_dtype.kind != "f" or self.output_dtype.kind != "f":
            raise ArtifactError(f"{self.path}: the engine takes {self.input_dtype} and gives {self.output_dtype}; "
                                "vit-edge feeds and reads floating-point tensors",
                                hint=f"rebuild it with FP32 or FP16 I/O: {rebuild_command(self.path.parent)}")
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, max_batch = int(low[0]), int(high[0])
        self._pool = queue.LifoQueue()
        self._slots = []  # every slot made, idle or busy
        self._slots_lock = threading.RLock()
        self._max_slots = max(1, int(contexts))
        self._closed = False
        self._pool.put(self._new_slot())  # one now: a context TensorRT cannot create fails here, not mid-request
        kwargs.setdefault("name", self.path.name)
        super().__init__(preprocess=preprocess, max_batch=max_batch, manifest=manifest, **kwargs)

    # ------------------------------------------------------------------ slots and memory

    def _bind_device(self) -> None:
        """cudaSetDevice in the calling thread (the current device is per host thread), once per thread."""
        if getattr(self._local, "device", None) != self.device:
            cuda_call(self.rt.cudaSetDevice(self.device))
            self._local.device = self.device

    def _new_slot(self) -> _Slot:
        context = self.engine.create_execution_context()
        if context is None:  # e.g. out of device memory for the activations
            raise ArtifactError(f"{self.path}: TensorRT could not create an execution context (out of GPU memory?)",
                                hint="close other GPU work, or load fewer runtimes")
        slot = _Slot(context, cuda_call(self.rt.cudaStreamCreate()))
        with self._slots_lock:
            self._slots.append(slot)
        return slot

    def _acquire(self) -> _Slot:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._slots_lock:  # checked and created under one lock: never more than _max_slots contexts
            if len(self._slots) < self._max_slots:
                return self._new_slot()
        return self._pool.get()  # all busy: wait for one to come back

    def _release(self, slot: _Slot) -> None:
        if self._closed:
            self._free(slot)
        else:
            self._pool.put(slot)

    def _buffer(self, slot: _Slot, name: str, nbytes: int) -> tuple:
        """(pinned host ptr, device ptr) of at least ``nbytes`` for ``name`` in ``slot``, grown on demand.
        Pinned (page-locked) host memory, as NVIDIA's samples use, makes cudaMemcpyAsync truly async."""
        host, dev, size = slot.buffers.get(name, (None, None, 0))
        if size < nbytes:
            if host is not None:
                cuda_call(self.rt.cudaFreeHost(host))
                cuda_call(self.rt.cudaFree(dev))
                slot.buffers.pop(name)
            host = int(cuda_call(self.rt.cudaMallocHost(nbytes)))
            try:
                dev = int(cuda_call(self.rt.cudaMalloc(nbytes)))
            except BaseException:
                self.rt.cudaFreeHost(host)
                raise
            slot.buffers[name] = (host, dev, nbytes)
        return host, dev

    @staticmethod
    def _host_array(ptr: int, dtype: np.dtype, shape: tuple) -> np.ndarray:
        count = int(np.prod(shape)) if shape else 1
        raw = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_ubyte)), (count * dtype.itemsize,))
        return raw.view(dtype).reshape(shape)

    def _free(self, slot: _Slot) -> None:
        for host, dev, _ in slot.buffers.values():
            self.rt.cudaFreeHost(host)
            self.rt.cudaFree(dev)
        slot.buffers = {}
        if slot.stream is not None:
            self.rt.cudaStreamDestroy(slot.stream)
            slot.stream = None
        slot.context = None  # contexts go before the engine
        with self._slots_lock:
            if slot in self._slots:
                self._slots.remove(slot)
            last = not self._slots
        if last and self._closed:
            self.engine = None
            self._runtime = None

    # ------------------------------------------------------------------ inference

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._closed:
            raise ArtifactError(f"{self.path}: this runtime was closed", hint="load the artifact again")
        n = len(batch)
        if n < self.min_batch:  # the profile's minimum: pad, run, drop the padding
            batch = np.concatenate([batch, np.zeros((self.min_batch - n, *batch.shape[1:]), batch.dtype)])
        self._bind_device()
        slot = self._acquire()
        try:
            return self._run(slot, batch)[:n]
        finally:
            self._release(slot)

    def _run(self, slot: _Slot, batch: np.ndarray) -> np.ndarray:
        context, kind = slot.context, self.rt.cudaMemcpyKind
        shape = tuple(batch.shape)
        if not context.set_input_shape(self.input_name, shape):
            raise ArtifactError(f"{self.path}: TensorRT refused shape {shape} for input tensor {self.input_name!r}",
                                hint=f"the engine's profile takes batch {self.min_batch}..{self.max_batch}")
        out_shape = tuple(context.get_tensor_shape(self.output_name))
        in_bytes = int(np.prod(shape)) * self.input_dtype.itemsize
        out_bytes = int(np.prod(out_shape)) * self.output_dtype.itemsize
        h_in, d_in = self._buffer(slot, self.input_name, in_bytes)
        h_out, d_out = self._buffer(slot, self.output_name, out_bytes)
        np.copyto(self._host_array(h_in, self.input_dtype, shape), batch, casting="unsafe")  # FP32 -> engine dtype
        for name, ptr in ((self.input_name, d_in), (self.output_name, d_out)):
            if not context.set_tensor_address(name, ptr):
                raise ArtifactError(f"{self.path}: TensorRT refused the device address of tensor {name!r}")
        cuda_call(self.rt.cudaMemcpyAsync(d_in, h_in, in_bytes, kind.cudaMemcpyHostToDevice, slot.stream))
        if not context.execute_async_v3(int(slot.stream)):
            raise ArtifactError(f"{self.path}: TensorRT execution failed")
        cuda_call(self.rt.cudaMemcpyAsync(h_out, d_out, out_bytes, kind.cudaMemcpyDeviceToHost, slot.stream))
        cuda_call(self.rt.cudaStreamSynchronize(slot.stream))
        # A copy: the pinned buffer belongs to the slot and is overwritten by the next call.
        return self._host_array(h_out, self.output_dtype, out_shape).astype(np.float32, copy=True)

    def info(self) -> dict:
        return {**super().info(), "device": self.gpu.get("board") or self.gpu["name"]}

    def close(self) -> None:
        """Free every context, stream, pinned and device buffer (idempotent; also run when garbage-collected).
        Slots busy in other threads are freed when their call returns."""
        if getattr(self, "_closed", True):
            return
        self._closed = True
        while True:
            try:
                slot = self._pool.get_nowait()
            except queue.Empty:
                break
            self._free(slot)
        with self._slots_lock:
            idle = not self._slots
        if idle:
            self.engine = None
            self._runtime = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown may have torn cuda-python down already
            pass


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
    contexts = int(options.get("contexts") or DEFAULT_CONTEXTS)
    return TensorRTRuntime(path, preprocess=preprocess, manifest=manifest, device=device, contexts=contexts, **common)
