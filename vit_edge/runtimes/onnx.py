"""ONNX Runtime (CPU) runtime: runs what ``convert/onnx.py`` writes. Needs onnxruntime, never torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vit_edge.errors import ArtifactError, first_line, require
from vit_edge.runtimes.base import Runtime


class ONNXRuntime(Runtime):
    target = "onnx"

    def __init__(self, path, *, preprocess, threads: int | None = None, providers=None, **kwargs):
        ort = require("onnxruntime", "onnx")
        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = int(threads)
        options.log_severity_level = 3
        from vit_edge.onnx_meta import check_onnx_file

        check_onnx_file(self.path)  # not a model, or external data outside its folder: refuse before ORT reads it
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile classes
            raise ArtifactError(f"{self.path}: ONNX Runtime cannot load it ({first_line(exc, 160)})",
                                hint="re-run vit-edge convert; the file may be corrupt") from None
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        dynamic = len(shape) == 4 and not (isinstance(shape[2], int) and isinstance(shape[3], int))
        if len(shape) == 4 and isinstance(shape[1], int) and shape[1] != preprocess.channels:
            # Fed as recorded, every call would fail inside ONNX Runtime; say which side is wrong now.
            raise ArtifactError(f"{self.path} takes {shape[1]}-channel input but its preprocessing gives "
                                f"{preprocess.channels} channels", hint=f"re-convert it with --channels {shape[1]}")
        kwargs.setdefault("name", self.path.name)
        super().__init__(preprocess=preprocess, dynamic_size=dynamic, **kwargs)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0].astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None  # ONNX Runtime frees the session's memory when its last reference goes


def from_artifact(path: Path, manifest, preprocess, **options) -> ONNXRuntime:
    return ONNXRuntime(path, preprocess=preprocess, labels=manifest.labels, task=manifest.task or "classify",
                       manifest=manifest, precision=manifest.precision or "fp32",
                       threads=options.get("threads"))
