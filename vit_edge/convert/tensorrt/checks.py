"""Static checks that an ONNX file is TensorRT-ready, runnable anywhere (no TensorRT, no GPU).

- opset >= 17 (LayerNormalization) and no newer than the parser of the oldest TensorRT targeted
  (``trt_version``, default 10.3: JetPack 6) documents;
- every operator is in that parser's operator list (:mod:`vit_edge.convert.tensorrt.operators`);
- INT8: the Q/DQ rules of :func:`vit_edge.convert.stages.qdq.check_rules` (signed, zero point 0, an
  explicit axis on every per-channel Q/DQ, weights per output channel, no quantized LayerNorm/Softmax);
- FP16: the graph really holds FP16 and LayerNorm, Softmax and reductions still compute in FP32.
"""

from __future__ import annotations

from vit_edge.convert.stages import qdq
import vit_edge.convert.tensorrt.operators as operators
from vit_edge.convert.tensorrt.options import DEFAULT_TRT_VERSION, version_tuple

MIN_OPSET = 17
# Ops that overflow or lose too much in FP16 inside a ViT: LayerNorm variance, Softmax sums, reductions.
FP16_FP32_ISLANDS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceSum", "ReduceSumSquare")


def opset_of(model) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _name(version: tuple) -> str:
    return f"{version[0]}.{version[1]}"


def check_operators(model, trt_version=DEFAULT_TRT_VERSION) -> list[str]:
    """Opset and operators against the ONNX parser of TensorRT ``trt_version`` (the oldest targeted)."""
    version = version_tuple(trt_version)
    problems = []
    opset = opset_of(model)
    ceiling = operators.opset_max(version)
    if opset < MIN_OPSET:
        problems.append(f"opset {opset} < {MIN_OPSET}: re-export with --opset 17 or newer")
    elif opset > ceiling:
        problems.append(f"opset {opset} is newer than TensorRT {_name(version)}'s ONNX parser supports (opset "
                        f"{operators.OPSET_MIN} to {ceiling}); re-export with --opset {ceiling}, or raise "
                        f"--trt-version if every target runs a newer TensorRT")
    ops = {(n.domain, n.op_type) for n in model.graph.node}
    foreign = sorted(f"{d}.{op}" for d, op in ops if d not in ("", "ai.onnx"))
    unknown = sorted(op for d, op in ops if d in ("", "ai.onnx") and op not in operators.SUPPORTED)
    if foreign or unknown:
        problems.append(f"operators TensorRT's ONNX parser does not support ({operators.SOURCE}): "
                        f"{', '.join(unknown + foreign)}")
    too_new = sorted(op for d, op in ops if d in ("", "ai.onnx") and op in operators.SUPPORTED
                     and operators.ADDED_IN.get(op, (0, 0)) > version)
    for op in too_new:
        problems.append(f"operator {op} needs TensorRT {_name(operators.ADDED_IN[op])} (the parser of "
                        f"TensorRT {_name(version)} lacks it); keep it out of the export, or raise --trt-version")
    for (op, since), first in sorted(operators.OPSET_VERSION_ADDED_IN.items()):
        if opset >= since and any(o == op for _, o in ops) and first > version:
            problems.append(f"operator {op} at opset {opset} (its opset-{since} form) needs TensorRT "
                            f"{_name(first)}; export with --opset {since - 1} or raise --trt-version")
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


def check_tensorrt_ready(model, precision: str, trt_version=DEFAULT_TRT_VERSION) -> list[str]:
    """All violations for this precision and oldest targeted TensorRT (empty list: TensorRT-ready)."""
    problems = check_operators(model, trt_version)
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
