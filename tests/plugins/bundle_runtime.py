"""Runtime side of the test-only ``bundle`` target: runs ``model.bundle`` (an ONNX file) in ONNX Runtime."""

from __future__ import annotations

from vit_edge.runtimes.onnx import ONNXRuntime


class BundleRuntime(ONNXRuntime):
    target = "bundle"


def from_artifact(path, manifest, preprocess, **options) -> BundleRuntime:
    return BundleRuntime(path, preprocess=preprocess, labels=manifest.labels, task=manifest.task or "classify",
                         manifest=manifest, precision=manifest.precision or "fp32")
