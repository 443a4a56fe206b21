"""Target ``onnx``: ``model.onnx`` for ONNX Runtime, in FP32, FP16 (FP32 islands) or INT8 (Q/DQ).

Runs in :mod:`vit_edge.runtimes.onnx`. The FP32 graph is the export stage's, already proven equal to torch.
"""

from __future__ import annotations

from vit_edge.convert.target import Built, Target

ARTIFACT = "model.onnx"


class ONNXTarget(Target):
    name = "onnx"
    summary = "ONNX for ONNX Runtime (Q/DQ for INT8)"

    def build(self, job) -> Built:
        from vit_edge.convert.stages.export import stamp_metadata
        from vit_edge.convert.stages.precision import onnx_in_precision

        path = job.workdir / ARTIFACT
        onnx_in_precision(job, path)
        job.manifest.artifact = ARTIFACT
        stamp_metadata(job, path)
        return Built(artifact=ARTIFACT)


TARGET = ONNXTarget()
