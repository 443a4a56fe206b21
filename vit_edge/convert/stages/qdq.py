"""Explicit Q/DQ graphs for TensorRT: the rules TensorRT imposes, one repair, and where the Q/DQ sit.

TensorRT accepts only signed INT8 QuantizeLinear/DequantizeLinear with zero point 0 inside a network
(onnx-tensorrt docs/operators.md: "`x_zero_point` must be zero", "UINT8 is only supported as network
input or output tensor types"). NNCF gives signed symmetric Q/DQ for most ViT activations, but the
activations after a ReLU come out UINT8 (zero point 0). :func:`make_signed` rewrites those to INT8 with
the scale multiplied by 255/127: the same range [0, 255*scale] at half the resolution (one bit lost),
which TensorRT can then run.

Everything here works on an ``onnx.ModelProto`` and needs only ``onnx`` and numpy.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Ops that must run in floating point: quantizing their input wrecks ViT accuracy (LayerNorm statistics,
# Softmax over attention logits), and TensorRT's fused kernels expect them unquantized.
FLOAT_ONLY_OPS = ("LayerNormalization", "Softmax")
# Ops whose weight (an initializer behind a DequantizeLinear) must be quantized per output channel.
WEIGHTED_OPS = ("MatMul", "Gemm", "Conv")
UINT8_TO_INT8 = 255.0 / 127.0


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return a.i
    return default


def _has_attr(node, name) -> bool:
    return any(a.name == name for a in node.attribute)


class _Graph:
    """Lookups the rules need: initializers by name, the producer and consumers of every tensor."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers = {}
        for n in self.graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)

    def array(self, name):
        from onnx import numpy_helper

        init = self.inits.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def weight_of(self, dq):
        """The weight initializer behind a DequantizeLinear: stored quantized (NNCF), or float behind a
        QuantizeLinear (modelopt). None for an activation."""
        if dq.input[0] in self.inits:
            return dq.input[0]
        q = self.producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in self.inits:
            return q.input[0]
        return None

    def weight_consumer(self, dq):
        """(op, input index) when this DequantizeLinear dequantizes a weight initializer of a GEMM/Conv."""
        if self.weight_of(dq) is None:
            return None
        for consumer in self.consumers.get(dq.output[0], []):
            if consumer.op_type in WEIGHTED_OPS:
                return consumer, list(consumer.input).index(dq.output[0])
        return None


def _output_axis(op, index: int, rank: int) -> int | None:
    """The output-channel axis of a weight at input ``index`` of ``op`` (None: not a weight input)."""
    if op.op_type == "Conv" and index == 1:
        return 0
    if op.op_type == "Gemm" and index == 1:
        return 0 if _attr(op, "transB", 0) else 1
    if op.op_type == "MatMul" and index == 1:
        return rank - 1
    return None


SIGNED_SUFFIX = "_int8"  # the scale make_signed writes is named after the UINT8 one it replaces, plus this


def signed_count(model) -> int:
    """How many Q/DQ nodes :func:`make_signed` rewrote (they read the scales it wrote)."""
    return sum(n.op_type in QDQ_OPS and len(n.input) > 1 and n.input[1].endswith(SIGNED_SUFFIX)
               for n in model.graph.node)


def make_signed(model) -> int:
    """Rewrite every UINT8 Q/DQ with zero point 0 to INT8 (scale x 255/127), in place.

    Returns how many nodes were rewritten. A UINT8 pair with a non-zero zero point is left alone (it
    would need a shift, not a rescale); :func:`check_rules` reports it.
    """
    from onnx import TensorProto, numpy_helper

    g = _Graph(model)
    rewritten, done = 0, {}
    for node in g.graph.node:
        if node.op_type not in QDQ_OPS or node.input[0] in g.inits:
            continue  # weights stored quantized are INT8 already; only activations need the rewrite
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        zp = g.array(zp_name) if zp_name else np.zeros((), np.uint8)  # an absent zero point means UINT8 0
        scale = g.array(node.input[1])
        if zp is None or scale is None or zp.dtype != np.uint8 or np.any(zp != 0):
            continue
        key = (node.input[1], zp_name)
        if key not in done:
            base = f"{node.input[1]}{SIGNED_SUFFIX}"
            g.graph.initializer.extend([
                numpy_helper.from_array((scale.astype(np.float64) * UINT8_TO_INT8).astype(scale.dtype), base),
                numpy_helper.from_array(np.zeros(zp.shape, np.int8), f"{base}_zero_point"),
            ])
            done[key] = (base, f"{base}_zero_point")
        new_scale, new_zp = done[key]
        inputs = list(node.input) + [""] * (3 - len(node.input))
        inputs[1], inputs[2] = new_scale, new_zp
        del node.input[:]
        node.input.extend(inputs)
        rewritten += 1
    _drop_unused_initializers(model)
    if rewritten:
        # Shape/type information recorded for the Q outputs said UINT8; drop it so tools re-infer INT8.
        outs = {n.output[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
        keep = [v for v in model.graph.value_info if v.name not in outs or
                v.type.tensor_type.elem_type != TensorProto.UINT8]
        del model.graph.value_info[:]
        model.graph.value_info.extend(keep)
    return rewritten


def _drop_unused_initializers(model) -> None:
    used = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    keep = [i for i in model.graph.initializer if i.name in used]
    if len(keep) != len(model.graph.initializer):
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)


def check_rules(model) -> list[str]:
    """Every violation of TensorRT's Q/DQ rules, one readable line each (empty list: all good).

    - every Q/DQ is signed INT8 with an all-zero zero point held in an initializer;
    - every per-channel Q/DQ (more than one scale) names its ``axis``: ONNX defaults a missing axis to 1,
      but onnx-tensorrt's older importer (``QuantDequantLinearHelper`` in the TensorRT 8.x parser) reads
      ``attrs.get<int32_t>("axis", nbDims)`` and then, for ``scaleSize != 1``, does
      ``if (axis == nbDims) axis = 0`` -- axis 0, not 1, so the same file means two different things;
    - weights of MatMul/Gemm/Conv are quantized per output channel on the output axis;
    - no LayerNormalization or Softmax reads a dequantized tensor.
    """
    g = _Graph(model)
    problems = []
    for node in g.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        name = node.name or node.output[0]
        zp_name = node.input[2] if len(node.input) > 2 and node.input[2] else None
        if zp_name is None:
            problems.append(f"{node.op_type} {name}: no zero point (ONNX then means UINT8)")
            continue
        zp = g.array(zp_name)
        if zp is None:
            problems.append(f"{node.op_type} {name}: zero point {zp_name} is not an initializer")
            continue
        if zp.dtype != np.int8:
            problems.append(f"{node.op_type} {name}: {zp.dtype.name.upper()}, TensorRT needs INT8")
        if np.any(zp != 0):
            problems.append(f"{node.op_type} {name}: zero point {int(zp.flat[np.flatnonzero(zp)[0]])} "
                            "(asymmetric); TensorRT needs 0")
        scales = g.array(node.input[1])
        if scales is not None and scales.size > 1 and not _has_attr(node, "axis"):
            problems.append(f"{node.op_type} {name}: {scales.size} per-channel scales but no explicit axis "
                            "(ONNX reads a missing axis as 1, older TensorRT parsers as 0); set axis")
        if node.op_type == "DequantizeLinear":
            hit = g.weight_consumer(node)
            if hit is not None:
                op, index = hit
                weight = g.array(g.weight_of(node))
                scale = g.array(node.input[1])
                want = _output_axis(op, index, weight.ndim)
                axis = _attr(node, "axis", 1)
                axis = axis + weight.ndim if axis < 0 else axis
                if want is not None and (scale is None or scale.size != weight.shape[want] or axis != want):
                    problems.append(f"weight {node.input[0]} of {op.op_type} {op.name}: expected per-channel "
                                    f"scales on axis {want} ({weight.shape[want]} channels), got axis {axis} "
                                    f"with {0 if scale is None else scale.size} scale(s)")
    for node in g.graph.node:
        if node.op_type in FLOAT_ONLY_OPS:
            for name in node.input:
                src = g.producer.get(name)
                if src is not None and src.op_type == "DequantizeLinear":
                    problems.append(f"{node.op_type} {node.name or node.output[0]} is quantized "
                                    f"(reads DequantizeLinear {src.name or src.output[0]})")
    return problems


def summary(model) -> dict:
    """What the Q/DQ look like: counts by dtype, and which GEMMs/Convs TensorRT can run in INT8.

    A MatMul/Gemm/Conv runs in INT8 in TensorRT when every one of its data inputs comes from a
    DequantizeLinear; "activation x activation" MatMuls are the two attention GEMMs (Q.K^T, P.V)."""
    g = _Graph(model)
    dtypes = Counter()
    for node in g.graph.node:
        if node.op_type in QDQ_OPS:
            zp = g.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            dtypes[f"{node.op_type}:{'uint8(absent zp)' if zp is None else zp.dtype.name}"] += 1

    def from_dq(name):
        src = g.producer.get(name)
        return src is not None and src.op_type == "DequantizeLinear"

    gemms = {"weight": [0, 0], "attention": [0, 0]}  # [int8, total]
    for node in g.graph.node:
        if node.op_type not in WEIGHTED_OPS:
            continue
        data = list(node.input[:2])
        weight_input = any((src := g.producer.get(n)) is not None and src.op_type == "DequantizeLinear"
                           and g.weight_of(src) is not None for n in data) or any(n in g.inits for n in data)
        kind = "weight" if weight_input else "attention"
        gemms[kind][1] += 1
        gemms[kind][0] += all(from_dq(n) for n in data)
    return {"qdq_nodes": dict(sorted(dtypes.items())),
            "int8_weight_gemms": f"{gemms['weight'][0]}/{gemms['weight'][1]}",
            "int8_attention_matmuls": f"{gemms['attention'][0]}/{gemms['attention'][1]}"}
