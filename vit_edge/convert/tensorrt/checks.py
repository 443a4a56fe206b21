"""Static checks that an ONNX file is TensorRT-ready, runnable anywhere (no TensorRT, no GPU).

- opset >= 17 (LayerNormalization) and within the range TensorRT's parser documents;
- every operator is in TensorRT's ONNX operator support list (:mod:`vit_edge.convert.tensorrt.operators`);
- INT8: the Q/DQ rules of :func:`vit_edge.convert.stages.qdq.check_rules`;
- FP16: the graph really holds FP16 and LayerNorm, Softmax and reductions still compute in FP32.
"""

from __future__ import annotations

from vit_edge.convert.stages import qdq
from vit_edge.convert.tensorrt.operators import OPSET_RANGE, SOURCE, SUPPORTED

MIN_OPSET = 17
# Ops that overflow or lose too much in FP16 inside a ViT: LayerNorm variance, Softmax sums, reductions.
FP16_FP32_ISLANDS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceSumSquare")


def opset_of(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def check_operators(model) -> list[str]:
    problems = []
    opset = opset_of(model)
    if opset < MIN_OPSET:
        problems.append(f"opset {opset} < {MIN_OPSET}: re-export with --opset 17 or newer")
    elif opset > OPSET_RANGE[1]:
        problems.append(f"opset {opset} is newer than TensorRT's parser supports ({OPSET_RANGE[1]})")
    unsupported = sorted({f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in model.graph.node
                          if n.domain not in ("", "ai.onnx") or n.op_type not in SUPPORTED})
    if unsupported:
        problems.append(f"operators TensorRT's ONNX parser does not support ({SOURCE}): {', '.join(unsupported)}")
    return problems


def _elem_types(model) -> dict:
    """Tensor name -> ONNX element type, after shape inference."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = {i.name: i.data_type for i in inferred.graph.initializer}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if v.type.tensor_type.elem_type:
            types[v.name] = v.type.tensor_type.elem_type
    return types


def check_fp32_islands(model) -> list[str]:
    """An FP16 graph must hold FP16 somewhere, and every island op must read and write FP32."""
    from onnx import TensorProto

    types = _elem_types(model)
    problems = []
    if not any(t == TensorProto.FLOAT16 for t in types.values()):
        problems.append("no FP16 tensor in the graph: this is not an FP16 model")
    for node in model.graph.node:
        if node.op_type not in FP16_FP32_ISLANDS:
            continue
        half = [name for name in (node.input[0], node.output[0]) if types.get(name) == TensorProto.FLOAT16]
        if half:
            problems.append(f"{node.op_type} {node.name or node.output[0]} computes in FP16 ({', '.join(half)}); "
                            "it must stay FP32")
    return problems


def check_tensorrt_ready(model, precision: str) -> list[str]:
    """All violations for this precision (empty list: TensorRT-ready)."""
    problems = check_operators(model)
    has_qdq = any(n.op_type in qdq.QDQ_OPS for n in model.graph.node)
    if precision == "int8":
        problems += qdq.check_rules(model)
        if not has_qdq:
            problems.append("an INT8 model without QuantizeLinear/DequantizeLinear nodes")
    elif has_qdq:
        problems.append(f"a {precision} model holds Q/DQ nodes")
    if precision == "fp16":
        problems += check_fp32_islands(model)
    return problems
