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
        from vit_edge.convert.stages.export import export_fp32, stamp_metadata

        path = job.workdir / ARTIFACT
        export_fp32(job, path)
        if job.precision == "fp16":
            from vit_edge.convert.stages.fp16 import convert_fp16

            convert_fp16(path, path, job)
        elif job.precision == "int8":
            from vit_edge.convert.stages.quantize import quantize_onnx

            quantize_onnx(job, path, path)
        job.manifest.artifact = ARTIFACT
        stamp_metadata(job, path)
        return Built(artifact=ARTIFACT)


TARGET = ONNXTarget()
