"""The two backends the accuracy budget edits and runs: ONNX with Q/DQ (ONNX Runtime) and OpenVINO
(FakeQuantize). Each finds the GEMMs whose input is quantized and can take one out of INT8."""

from __future__ import annotations

import copy

import numpy as np

from vit_edge.convert.stages.budget import Backend
from vit_edge.convert.stages.opmap import GEMM_OPS

OPENVINO_GEMMS = ("MatMul", "Convolution")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Ops that only move values: a quantizer may sit before them and still feed the op after them.
LAYOUT_OPS = ("Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten")


# ---------------------------------------------------------------- ONNX (Q/DQ)


def _producers(model) -> dict:
    return {out: node for node in model.graph.node for out in node.output}


def _onnx_site(producers, inits, node, index, through):
    """(node whose input reads the dequantized tensor, that input's position, the QuantizeLinear) when input
    ``index`` of ``node`` is an activation that came through QuantizeLinear -> DequantizeLinear, maybe via
    the layout-only ops ``through``; else None."""
    reader, position = node, index
    tensor = node.input[index] if index < len(node.input) else ""
    source = producers.get(tensor)
    while source is not None and source.op_type in through:
        reader, position = source, 0
        source = producers.get(source.input[0])
    if source is None or source.op_type != "DequantizeLinear":
        return None
    q = producers.get(source.input[0])
    if q is None or q.op_type != "QuantizeLinear" or (index > 0 and q.input[0] in inits):
        return None  # not quantized, or a weight quantized in the graph (modelopt style)
    return reader, position, q


def _onnx_inputs(node, every_input: bool) -> range:
    return range(len(node.input)) if every_input else range(min(1, len(node.input)))


def onnx_quantized_ops(model, op_types=GEMM_OPS, through=(), every_input: bool = False) -> list:
    """Nodes whose activation input comes through QuantizeLinear -> DequantizeLinear: by default the first
    (activation) input of the GEMMs. ``op_types`` None: nodes of any type (not Q/DQ, not ``through``);
    ``through``: layout-only op types allowed between the DequantizeLinear and the node; ``every_input``:
    any input, not only the first."""
    producers, inits = _producers(model), {i.name for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        if (node.op_type in op_types) if op_types is not None else \
                node.op_type not in (*QDQ_OPS, *through):
            if any(_onnx_site(producers, inits, node, i, through) for i in _onnx_inputs(node, every_input)):
                found.append(node.name)
    return found


def _onnx_weight_site(producers, inits, node):
    """(node, 1, the QuantizeLinear) when input 1 of ``node`` is a float weight behind Q/DQ (NNCF's layout
    before its weights are compressed to INT8); else None."""
    if len(node.input) < 2:
        return None
    source = producers.get(node.input[1])
    q = producers.get(source.input[0]) if source is not None and source.op_type == "DequantizeLinear" else None
    return (node, 1, q) if q is not None and q.op_type == "QuantizeLinear" and q.input[0] in inits else None


def onnx_bypass(model, names, through=(), every_input: bool = False, weights: bool = False) -> object:
    """A copy of ``model`` where the named nodes read their activation input from before its Q/DQ (the
    options mean what they mean in :func:`onnx_quantized_ops`); ``weights``: their float weight too, so the
    operation is wholly back in float (the weights must not be compressed yet: see .shared_ptq)."""
    edited = copy.deepcopy(model)
    producers, inits = _producers(edited), {i.name for i in edited.graph.initializer}
    wanted = set(names)
    for node in edited.graph.node:
        if node.name in wanted:
            sites = [_onnx_site(producers, inits, node, index, through) for index in _onnx_inputs(node, every_input)]
            if weights:
                sites.append(_onnx_weight_site(producers, inits, node))
            for site in sites:
                if site is not None:
                    reader, position, q = site
                    reader.input[position] = q.input[0]  # the tensor before Q/DQ
    return edited


def onnx_prune(model) -> object:
    """``model`` without the nodes and initializers nothing reads (the quantizers a bypass left behind)."""
    graph = model.graph
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [node for node in graph.node if not any(out in read for out in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    read = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name not in read]:
        graph.initializer.remove(init)
    return model


def onnx_backend(fp32_model) -> Backend:
    import onnxruntime as ort

    input_name = fp32_model.graph.input[0].name

    def infer(model, batches):
        session = ort.InferenceSession((model or fp32_model).SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {input_name: b})[0] for b in batches]).astype(np.float64)

    return Backend(quantized_ops=onnx_quantized_ops, infer=infer, finish=onnx_prune,
                   bypass=lambda model, names: onnx_bypass(model, names, weights=True), onnx_name=lambda name: name)


# ---------------------------------------------------------------- OpenVINO (FakeQuantize)


def _activation_fq(op, index: int = 0, through=()):
    """(the input to rewire, the FakeQuantize) when input ``index`` of ``op`` comes from a FakeQuantize,
    maybe via the layout-only ops ``through``; else None."""
    port = op.input(index)
    source = port.get_source_output().get_node()
    while source.get_type_name() in through:
        port = source.input(0)
        source = port.get_source_output().get_node()
    return (port, source) if source.get_type_name() == "FakeQuantize" else None


def _openvino_inputs(op, every_input: bool) -> range:
    return range(op.get_input_size()) if every_input else range(min(1, op.get_input_size()))


def openvino_quantized_ops(model, op_types=OPENVINO_GEMMS, through=(), every_input: bool = False) -> list:
    """Friendly names of the ops whose activation input comes from a FakeQuantize (options as in
    :func:`onnx_quantized_ops`)."""
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if ((op.get_type_name() in op_types) if op_types is not None else
                op.get_type_name() not in ("FakeQuantize", "Constant", *through))
            and any(_activation_fq(op, i, through) is not None for i in _openvino_inputs(op, every_input))]


def _weight_fq(op):
    """(the input to rewire, the FakeQuantize) when input 1 of ``op`` is a constant behind a FakeQuantize (NNCF's
    layout before its weights are compressed to INT8); else None."""
    if op.get_input_size() < 2:
        return None
    site = _activation_fq(op, 1)
    if site is None or site[1].input_value(0).get_node().get_type_name() != "Constant":
        return None
    return site


def openvino_bypass(model, names, through=(), every_input: bool = False, weights: bool = False) -> object:
    """A copy of ``model`` where the named ops read their activation input from before its FakeQuantize
    (options as in :func:`onnx_bypass`)."""
    edited = model.clone()
    wanted = set(names)
    for op in edited.get_ordered_ops():
        if op.get_friendly_name() in wanted:
            sites = [_activation_fq(op, index, through) for index in _openvino_inputs(op, every_input)]
            if weights:
                sites.append(_weight_fq(op))
            for site in sites:
                if site is not None:
                    port, fq = site
                    port.replace_source_output(fq.input_value(0))
    return edited


def openvino_float_precision(device: str = "CPU") -> str:
    """The precision the plugin runs float layers in by default (bf16 on CPUs that have it, else f32)."""
    import openvino as ov

    value = ov.Core().get_property(device, "INFERENCE_PRECISION_HINT")
    return getattr(value, "to_string", lambda: str(value))()


def openvino_backend(fp32_model, onnx_name=None, float_precision=None) -> Backend:
    """``onnx_name`` maps an op's friendly name to its key in the graph's operations: by default the ONNX node
    it came from (OpenVINO keeps the ONNX node name, sometimes with a suffix: ``node_conv2d/WithoutBiases``);
    for a model from the PyTorch frontend the friendly name itself (see :func:`.opmap.openvino_graph_ops`)."""
    import openvino as ov

    core = ov.Core()

    def infer(model, batches):
        # Compiled as the artifact will run (the plugin's default precision unless ``float_precision``), the
        # FP32 reference at f32.
        config = {"INFERENCE_PRECISION_HINT": "f32"} if model is None else \
            ({"INFERENCE_PRECISION_HINT": float_precision} if float_precision else {})
        compiled = core.compile_model(model if model is not None else fp32_model, "CPU", config)
        return np.concatenate([compiled(b)[0] for b in batches]).astype(np.float64)

    # An ov.Model holds only what its results read: a bypassed FakeQuantize is gone with the edit.
    return Backend(quantized_ops=openvino_quantized_ops, infer=infer, finish=lambda model: model,
                   bypass=lambda model, names: openvino_bypass(model, names, weights=True),
                   onnx_name=onnx_name or (lambda name: name.split("/")[0]))
