"""The two backends the accuracy budget edits and runs: ONNX with Q/DQ (ONNX Runtime) and OpenVINO
(FakeQuantize). Each finds the GEMMs whose input is quantized and can take one out of INT8."""

from __future__ import annotations

import copy

import numpy as np

from vit_edge.convert.stages.budget import Backend
from vit_edge.convert.stages.opmap import GEMM_OPS

OPENVINO_GEMMS = ("MatMul", "Convolution")


# ---------------------------------------------------------------- ONNX (Q/DQ)


def _producers(model) -> dict:
    return {out: node for node in model.graph.node for out in node.output}


def onnx_quantized_ops(model) -> list:
    """GEMM nodes whose first (activation) input comes through QuantizeLinear -> DequantizeLinear."""
    producers = _producers(model)
    found = []
    for node in model.graph.node:
        if node.op_type in GEMM_OPS:
            dq = producers.get(node.input[0])
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                found.append(node.name)
    return found


def onnx_bypass(model, names) -> object:
    edited = copy.deepcopy(model)
    producers = _producers(edited)
    wanted = set(names)
    for node in edited.graph.node:
        if node.name in wanted:
            dq = producers[node.input[0]]
            node.input[0] = producers[dq.input[0]].input[0]  # the tensor before Q/DQ
    return edited


def onnx_backend(fp32_model, requantize) -> Backend:
    import onnxruntime as ort

    input_name = fp32_model.graph.input[0].name

    def infer(model, batches):
        session = ort.InferenceSession((model or fp32_model).SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {input_name: b})[0] for b in batches]).astype(np.float64)

    return Backend(quantized_ops=onnx_quantized_ops, bypass=onnx_bypass, infer=infer, requantize=requantize,
                   onnx_name=lambda name: name)


# ---------------------------------------------------------------- OpenVINO (FakeQuantize)


def _activation_fq(op):
    source = op.input(0).get_source_output().get_node()
    return source if source.get_type_name() == "FakeQuantize" else None


def openvino_quantized_ops(model) -> list:
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() in OPENVINO_GEMMS and _activation_fq(op) is not None]


def openvino_bypass(model, names) -> object:
    edited = model.clone()
    wanted = set(names)
    for op in edited.get_ordered_ops():
        if op.get_friendly_name() in wanted:
            fq = _activation_fq(op)
            if fq is not None:
                op.input(0).replace_source_output(fq.input_value(0))
    return edited


def openvino_backend(fp32_model, requantize) -> Backend:
    import openvino as ov

    core = ov.Core()

    def infer(model, batches):
        # Compiled as the artifact will run (the plugin's default precision), FP32 reference at f32.
        config = {"INFERENCE_PRECISION_HINT": "f32"} if model is None else {}
        compiled = core.compile_model(model if model is not None else fp32_model, "CPU", config)
        return np.concatenate([compiled(b)[0] for b in batches]).astype(np.float64)

    # OpenVINO keeps the ONNX node name, sometimes with a suffix ("node_conv2d/WithoutBiases").
    return Backend(quantized_ops=openvino_quantized_ops, bypass=openvino_bypass, infer=infer,
                   requantize=requantize, onnx_name=lambda name: name.split("/")[0])
