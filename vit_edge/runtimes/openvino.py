"""OpenVINO runtime: runs what ``convert/openvino.py`` writes, on CPU (default), GPU, NPU or AUTO.

Needs only ``openvino`` (never torch). Thread safety: a compiled model is shared, but an infer request
is not, so each call borrows requests from a pool and returns them; concurrent callers each get their
own, and OpenVINO runs them in parallel on its streams.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from pathlib import Path

import numpy as np

from vit_edge.errors import ArtifactError, BackendUnavailable, first_line, require
from vit_edge.preprocess import check_batch
from vit_edge.runtimes.base import Runtime

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
MAX_REQUESTS = 8  # most streams a batch is split across under the throughput hint
MAX_STATIC_SHAPES = 3  # input shapes compiled static (each holds its own compiled model: ~90 MB for ViT-S INT8)


class OpenVINORuntime(Runtime):
    """Runs an IR; each batch shape gets its own static-shape compilation, and the throughput hint splits
    a batch across the plugin's streams.

    Why static shapes: on a dynamic batch axis the CPU plugin keeps FakeQuantize out of its fused kernels
    and inserts layout reorders; the same INT8 ViT-S then cost 33% more CPU time per image at batch 1 and
    15% more at batch 8 (2-core AMD EPYC, OpenVINO 2026.4). So the first ``MAX_STATIC_SHAPES`` input
    shapes seen are each compiled with that shape fixed (batch 1 at load time, so the first image costs no
    compile), and any further shape runs the dynamic model; each static shape is one more compiled model in
    memory. The price: static and dynamic compiles are different kernels, so one input's logits depend
    slightly on which shapes were compiled before it (demo INT8: up to 0.0096 at batch 32..128, 0 at 4 and
    16, no top-1 changed; benchmarks/openvino_static_vs_dynamic.py), accepted for the speed and documented
    in the README. Why the split: under the throughput hint the plugin runs one single-thread stream per core,
    but one synchronous request would use only one of them."""

    target = "openvino"

    def __init__(self, path, *, preprocess, device: str | None = None, hint: str | None = None,
                 threads: int | None = None, inference_precision: str | None = None, precision: str = "fp32",
                 cache_dir=None, **kwargs):
        ov = require("openvino", "openvino")
        self.path = Path(path)
        self._core = core = ov.Core()
        self.cache_dir = _cache_dir(cache_dir)
        if self.cache_dir:
            core.set_property({"CACHE_DIR": self.cache_dir})
        self.device = check_device(core, device or "CPU")
        config = {"PERFORMANCE_HINT": _hint(hint)}
        # The CPU plugin would run an FP32 model in bf16 on CPUs that have it; an FP32 artifact must run
        # f32 so that its accuracy is the one validated. int8/fp16 artifacts keep the plugin's choice
        # (bf16 for their floating-point parts where the CPU has it) unless asked otherwise.
        wanted = inference_precision or ("f32" if precision == "fp32" else None)
        if wanted and self.device.split(".")[0] in ("CPU", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = wanted
        if threads and self.device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self._config = config
        try:
            self._model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
            raise ArtifactError(f"{self.path}: OpenVINO cannot read it ({first_line(exc, 160)})",
                                hint="re-run vit-edge convert; model.xml and model.bin must sit together") from None
        self._input_shape = self._model.inputs[0].get_partial_shape()
        self._compiled: dict = {}  # input shape -> _Compiled; None -> the model as stored (dynamic)
        self._static_shapes: list = []  # the shapes compiled static, in the order first seen
        self._lock = threading.Lock()
        shape = self._input_shape
        dynamic = shape.rank.is_static and len(shape) == 4 and (shape[2].is_dynamic or shape[3].is_dynamic)
        # An IR saved with a fixed batch (another tool's, converted from a batch-1 example) runs any number of
        # images as batches of that size: reshaping it often fails on shapes its tracer baked in.
        self._fixed_batch = shape[0].get_length() if shape.rank.is_static and shape[0].is_static else None
        if self._fixed_batch:
            kwargs["max_batch"] = min(kwargs.get("max_batch") or self._fixed_batch, self._fixed_batch)
        kwargs.setdefault("name", self.path.name)
        super().__init__(preprocess=preprocess, precision=precision, dynamic_size=dynamic, **kwargs)
        h, w = preprocess.input_size
        self.compiled = self._entry((1, preprocess.channels, h, w)).compiled  # what batch-1 calls run
        self.inference_precision = _read_precision(self.compiled)
        self.hint = config["PERFORMANCE_HINT"].lower()
        self._streams = _optimal_requests(self.compiled) if self.hint == "throughput" else 1
        # Batches run_many keeps in flight: two per stream, so a stream that finishes finds the next batch
        # queued while Python collects the last one (HF imagenette fixture, batch 8, alternated medians: one
        # per stream 1,958 img/s, two 2,122, four 2,175; benchmark_app 2,025).
        self._depth = 2 * self._streams

    def _entry(self, shape: tuple):
        """The compiled model for inputs of ``shape``, compiled on first use."""
        entry = self._compiled.get(shape)
        if entry is None:
            with self._lock:
                entry = self._compiled.get(shape)
                if entry is None:
                    entry = self._compiled[shape] = self._compile(shape)
        return entry

    def _compile(self, shape: tuple):
        """Compile ``shape`` as a static shape while fewer than MAX_STATIC_SHAPES are; else share the model
        as stored. Called under the lock (``reshape`` changes the one ov.Model in place)."""
        ov = require("openvino", "openvino")
        static = (self._input_shape.is_dynamic and len(self._static_shapes) < MAX_STATIC_SHAPES
                  and self._input_shape.compatible(ov.PartialShape(list(shape))))
        if not static and None in self._compiled:
            return self._compiled[None]
        self._model.reshape({self._model.inputs[0]: ov.PartialShape(list(shape)) if static else self._input_shape})
        try:
            entry = _Compiled(self._core.compile_model(self._model, self.device, self._config))
        except Exception as exc:
            raise BackendUnavailable(f"OpenVINO cannot compile {self.path.name} for {self.device}: "
                                     f"{first_line(exc, 160)}",
                                     hint=f"available devices: {', '.join(self._core.available_devices)}") from None
        if static:
            self._static_shapes.append([int(d) for d in shape])
        else:
            self._compiled[None] = entry
        return entry

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if self._fixed_batch and len(batch) < self._fixed_batch:  # the last, short batch: padded, then cut
            pad = np.zeros((self._fixed_batch - len(batch), *batch.shape[1:]), batch.dtype)
            return self._infer(np.concatenate([batch, pad]))[:len(batch)]
        parts = 1 if self._fixed_batch else min(self._streams, len(batch))
        if parts == 1:
            entry = self._entry(batch.shape)
            request = entry.borrow()
            try:
                _infer_shared(request, batch)
                return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # copy: the request is reused
            finally:
                entry.give_back(request)
        running = []
        try:
            for chunk in np.array_split(batch, parts):  # start every part, then collect: streams run them together
                entry = self._entry(chunk.shape)
                request = entry.borrow()
                try:
                    request.start_async({0: chunk})  # copied: array_split's parts are views
                except BaseException:
                    entry.give_back(request)
                    raise
                running.append((entry, request))
            outputs = []
            for _, request in running:
                request.wait()
                outputs.append(np.array(request.get_output_tensor(0).data, dtype=np.float32))
            return np.concatenate(outputs)
        finally:
            for entry, request in running:
                with contextlib.suppress(Exception):  # a failed part already raised; just make it idle
                    request.wait()
                entry.give_back(request)

    def run_many(self, batches):
        """Outputs of each batch in order, with two batches per stream in flight (each request a whole
        batch): what ``benchmark_app`` measures under the throughput hint. ``run`` instead splits
        one batch across the streams, which a single call needs but which halves each request's batch.
        Why: on the imagenette fixture (INT8, batch 8) back-to-back ``run`` calls reached 28% less than
        benchmark_app; see benchmarks/runtime_overhead.py for what this path reaches."""
        if self._fixed_batch or self._streams == 1:
            yield from super().run_many(batches)
            return
        import collections

        in_flight = collections.deque()  # (entry, request, batch kept alive while the request reads it)
        try:
            for batch in batches:
                batch = check_batch(batch, self.preprocess, self.dynamic_size)
                if len(in_flight) == self._depth:
                    yield self._collect(*in_flight.popleft())
                entry = self._entry(batch.shape)
                request = entry.borrow()
                try:
                    request.start_async({0: batch}, share_inputs=True)
                except BaseException:
                    entry.give_back(request)
                    raise
                in_flight.append((entry, request, batch))
            while in_flight:
                yield self._collect(*in_flight.popleft())
        finally:
            for entry, request, _ in in_flight:  # a batch that failed, or a consumer that stopped early
                with contextlib.suppress(Exception):
                    request.wait()
                entry.give_back(request)

    @staticmethod
    def _collect(entry, request, _batch) -> np.ndarray:
        try:
            request.wait()
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)
        finally:
            entry.give_back(request)

    def close(self) -> None:
        """Drop the compiled models and their requests (OpenVINO frees them with their last reference)."""
        with self._lock:
            self._compiled.clear()
            self.compiled = None

    def info(self) -> dict:
        return {**super().info(), "device": self.device, "inference_precision": self.inference_precision,
                "hint": self.hint, "streams": self._streams, "static_shapes": list(self._static_shapes),
                "cache_dir": self.cache_dir}


class _Compiled:
    """A compiled model and its infer requests. A request serves one call at a time; callers borrow a free
    one or create one (never wait, so a call that splits its batch cannot deadlock another that does)."""

    def __init__(self, compiled):
        self.compiled = compiled
        self._free: queue.SimpleQueue = queue.SimpleQueue()

    def borrow(self):
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return self.compiled.create_infer_request()

    def give_back(self, request) -> None:
        self._free.put(request)


def _infer_shared(request, batch: np.ndarray) -> None:
    """Run ``request`` on ``batch`` (contiguous float32, see check_batch) without copying it in and without
    building the dict of outputs ``InferRequest.infer`` returns: the binding's own ``infer(tensor, share_outputs,
    decode_strings)``, which ``InferRequest`` wraps. Why: on a 0.75 ms model (HF imagenette fixture, batch 1)
    the wrapper's input dispatch and output dict cost ~25 us a call, 3% of the latency the issue budgets at 5%."""
    import openvino as ov

    binding = type(request).__mro__[1]  # what ov.InferRequest derives from: its infer is the C++ binding's
    try:
        binding.infer(request, ov.Tensor(batch, shared_memory=True), True, False)
    except TypeError:  # another OpenVINO whose binding takes other arguments: the public call
        request.infer({0: batch}, share_inputs=True)


def _cache_dir(option) -> str | None:
    """Where compiled models are cached: ``option``, else $VIT_EDGE_CACHE_DIR, else the user cache folder.

    Why: compiling ViT-S INT8 is most of a fresh process's first-image time (1.6 s of 2.5 s on a busy
    2-core machine); loading the cached blob takes 0.7 s. ``False``/"off" (option or variable) disables it.
    OpenVINO keys each blob by model, shape, device and settings, so a changed artifact is never served
    from a stale entry. An unwritable folder only turns caching off."""
    import os

    from vit_edge.cache import cache_dir, is_off

    if option is not None:
        if is_off(option):
            return None
        value = str(option)
    else:
        folder = cache_dir("openvino")
        if folder is None:
            return None
        value = str(folder)
    try:
        os.makedirs(value, exist_ok=True)
    except OSError:
        return None
    return str(value) if os.access(value, os.W_OK) else None


def check_device(core, device: str) -> str:
    """Upper-case ``device`` and make sure this machine has it; else a one-line error listing what it has."""
    name = device.strip().upper()
    available = core.available_devices
    if name.split(":")[0] in VIRTUAL_DEVICES or name in available or name in {d.split(".")[0] for d in available}:
        return name
    raise BackendUnavailable(f"OpenVINO device {device!r} is not available on this machine",
                             hint=f"available devices: {', '.join(available + ['AUTO'])}")


def _hint(hint: str | None) -> str:
    key = (hint or "latency").lower()
    if key not in HINTS:
        raise BackendUnavailable(f"unknown performance hint {hint!r}", hint=f"use one of {', '.join(HINTS)}")
    return HINTS[key]


def _read_precision(compiled) -> str:
    """The inference precision the compiled model really uses (f32, bf16, f16), as OpenVINO reports it."""
    try:
        value = compiled.get_property("INFERENCE_PRECISION_HINT")
    except Exception:  # virtual devices (AUTO) may not expose it
        return "unknown"
    return getattr(value, "to_string", lambda: str(value))()


def _optimal_requests(compiled) -> int:
    try:
        return max(1, min(MAX_REQUESTS, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))
    except Exception:
        return 1


def from_artifact(path: Path, manifest, preprocess, **options) -> OpenVINORuntime:
    return OpenVINORuntime(path, preprocess=preprocess, labels=manifest.labels,
                           task=manifest.task or "classify", manifest=manifest,
                           precision=manifest.precision or "fp32", device=options.get("device"),
                           hint=options.get("hint"), threads=options.get("threads"),
                           inference_precision=options.get("inference_precision") or
                           getattr(manifest.openvino, "float_precision", None), cache_dir=options.get("cache_dir"))
