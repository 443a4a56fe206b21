"""Stage ``fp16``: FP16 ONNX with FP32 islands: LayerNorm, Softmax and reductions stay in FP32 (they overflow in FP16).

Uses onnxconverter-common's maintained converter; inputs and outputs stay FP32 so callers see no change.
"""

from __future__ import annotations

from pathlib import Path

from vit_edge.artifact.manifest import FP16Record

# Ops whose FP16 versions lose range or precision in ViTs (LayerNorm variance, Softmax sums, GELU's erf).
FP32_ISLAND_OPS = ["LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceSumSquare", "Pow",
                   "Sqrt", "Erf", "Exp", "Log", "Div", "Range", "Resize"]


def convert_fp16(src: Path, dst: Path, job=None) -> FP16Record:
    import onnx
    from onnxconverter_common import float16

    from vit_edge.quiet import quiet_block

    model = onnx.load(str(src))
    blocked = sorted(set(FP32_ISLAND_OPS) | set(job.export.fp32_ops if job else ()))
    # It warns for every FP32 constant it clamps (-3.4e38 mask fills become -1e4): expected, and the FP16
    # artifact's accuracy is judged by parity and validation, not by these lines.
    with quiet_block():
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked,
                                                     disable_shape_infer=False)
    onnx.checker.check_model(converted)
    onnx.save(converted, str(dst))
    record = FP16Record(fp32_op_types=blocked, converter="onnxconverter-common float16")
    if job is not None:
        job.manifest.fp16 = record
    return record
