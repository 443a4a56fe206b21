"""The ONNX every ONNX-based target starts from: the proven FP32 export, then the job's precision applied
in place (FP16 with FP32 islands, or INT8 Q/DQ)."""

from __future__ import annotations

from pathlib import Path


def onnx_in_precision(job, path: Path, *, symmetric_activations: bool = False):
    """Write ``path``; returns the quantization record for INT8 (None otherwise). ``symmetric_activations``:
    only recipes with signed, zero-point-0 activations (what TensorRT runs)."""
    from vit_edge.convert.stages.export import export_fp32

    export_fp32(job, path)
    if job.precision == "fp16":
        from vit_edge.convert.stages.fp16 import convert_fp16
        from vit_edge.progress import phase

        phase("converting to FP16 (FP32 islands)")
        convert_fp16(path, path, job)
    elif job.precision == "int8":
        from vit_edge.convert.stages.quantize import quantize_onnx

        return quantize_onnx(job, path, path, symmetric_activations=symmetric_activations)
    return None
