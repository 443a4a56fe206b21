"""OpenVINO runtime: runs what ``convert/openvino.py`` writes, on CPU (default), GPU, NPU or AUTO.

Needs only ``openvino`` (never torch). Thread safety: a compiled model is shared, but an infer request
is not, so each call borrows one request from a pool and returns it; concurrent callers each get their
own (or wait for one), and OpenVINO runs them in parallel.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from vit_edge.errors import ArtifactError, BackendUnavailable, require
from vit_edge.runtimes.base import Runtime

HINTS = {"latency": "LATENCY", "throughput": "THROUGHPUT"}
VIRTUAL_DEVICES = ("AUTO", "MULTI", "HETERO", "BATCH")
MAX_REQUESTS = 8


class OpenVINORuntime(Runtime):
    target = "openvino"

    def __init__(self, path, *, preprocess, device: str | None = None, hint: str | None = None,
                 threads: int | None = None, inference_precision: str | None = None, precision: str = "fp32",
                 **kwargs):
        ov = require("openvino", "openvino")
        self.path = Path(path)
        core = ov.Core()
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
        try:
            model = core.read_model(str(self.path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with multi-line text
            raise ArtifactError(f"{self.path}: OpenVINO cannot read it ({str(exc).splitlines()[0][:160]})",
                                hint="re-run vit-edge convert; model.xml and model.bin must sit together") from None
        try:
            self.compiled = core.compile_model(model, self.device, config)
        except Exception as exc:
            raise BackendUnavailable(f"OpenVINO cannot compile {self.path.name} for {self.device}: "
                                     f"{str(exc).splitlines()[0][:160]}",
                                     hint=f"available devices: {', '.join(core.available_devices)}") from None
        self.inference_precision = _read_precision(self.compiled)
        self.hint = config["PERFORMANCE_HINT"].lower()
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._free = _optimal_requests(self.compiled)
        self._lock = threading.Lock()
        shape = model.inputs[0].get_partial_shape()
        dynamic = shape.rank.is_static and len(shape) == 4 and (shape[2].is_dynamic or shape[3].is_dynamic)
        kwargs.setdefault("name", self.path.name)
        super().__init__(preprocess=preprocess, precision=precision, dynamic_size=dynamic, **kwargs)

    def _borrow(self):
        try:
            return self._requests.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            create = self._free > 0
            self._free -= create
        if create:
            return self.compiled.create_infer_request()
        return self._requests.get()  # all requests busy: wait for one

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        request = self._borrow()
        try:
            request.infer({0: batch})
            return np.array(request.get_output_tensor(0).data, dtype=np.float32)  # copy: the request is reused
        finally:
            self._requests.put(request)

    def info(self) -> dict:
        return {**super().info(), "device": self.device, "inference_precision": self.inference_precision,
                "hint": self.hint}


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


def from_artifact(path: Path, manifest: dict, preprocess, **options) -> OpenVINORuntime:
    return OpenVINORuntime(path, preprocess=preprocess, labels=manifest.get("labels"),
                           task=manifest.get("task", "classify"), manifest=manifest,
                           precision=manifest.get("precision", "fp32"), device=options.get("device"),
                           hint=options.get("hint"), threads=options.get("threads"),
                           inference_precision=options.get("inference_precision"))
