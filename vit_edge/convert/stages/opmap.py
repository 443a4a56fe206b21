"""The quantizable operations of an exported graph: their GEMM MACs, and the torch module each one came from.

Names a user knows: the dynamo exporter names nodes ``node_MatMul_12`` and folds the Linear weight into an
anonymous transposed constant, so the torch module is found by its weight instead (the FP32 ONNX initializer
equals the module's weight, transposed for a Linear). An operation without a weight (attention's q @ k^T)
cannot be traced that way and is reported as untraced rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GEMM_OPS = ("MatMul", "Gemm", "Conv")


@dataclass(frozen=True)
class GraphOp:
    name: str  # the ONNX node name (OpenVINO keeps it as the friendly name, maybe with a suffix)
    op_type: str
    macs: int  # multiply-accumulates per image
    module: str | None  # torch module path, None when it cannot be traced


def _dims(value_info) -> list:
    """A tensor's shape with symbolic axes (the batch) as 1: MACs per image."""
    return [d.dim_value if d.HasField("dim_value") else 1 for d in value_info.type.tensor_type.shape.dim]


def graph_ops(fp32_model, torch_module=None) -> dict:
    """ONNX node name -> :class:`GraphOp` for every MatMul/Gemm/Conv of an FP32 ONNX model."""
    import onnx
    from onnx import numpy_helper

    inferred = onnx.shape_inference.infer_shapes(fp32_model, strict_mode=False)
    shapes = {vi.name: _dims(vi) for vi in list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output)}
    inits = {i.name: i for i in fp32_model.graph.initializer}
    for i in fp32_model.graph.initializer:
        shapes.setdefault(i.name, list(i.dims))
    weights = _torch_weights(torch_module) if torch_module is not None else []
    ops = {}
    for node in fp32_model.graph.node:
        if node.op_type not in GEMM_OPS:
            continue
        out = shapes.get(node.output[0])
        a = shapes.get(node.input[0])
        b = shapes.get(node.input[1]) if len(node.input) > 1 else None
        macs = 0
        if out and a and b:
            if node.op_type == "Conv":
                macs = int(np.prod(out)) * int(np.prod(b[1:]))
            else:
                trans_a = any(att.name == "transA" and att.i for att in node.attribute)
                macs = int(np.prod(out)) * int(a[-2] if trans_a else a[-1])
        weight = numpy_helper.to_array(inits[node.input[1]]) if len(node.input) > 1 and node.input[1] in inits \
            else None
        ops[node.name] = GraphOp(node.name, node.op_type, macs, _match(weight, node, weights))
    return ops


def _torch_weights(module) -> list:
    import torch

    found = []
    for path, sub in module.named_modules():
        weight = getattr(sub, "weight", None)
        if isinstance(sub, (torch.nn.Linear, torch.nn.Conv2d)) and isinstance(weight, torch.Tensor):
            found.append((_clean(path), weight.detach().float().numpy()))
        elif isinstance(sub, torch.nn.MultiheadAttention) and getattr(sub, "in_proj_weight", None) is not None:
            found.append((_clean(path) + ".in_proj", sub.in_proj_weight.detach().float().numpy()))
    return found


def _clean(path: str) -> str:
    """Module paths as the user wrote them: without the wrappers vit-edge adds (``model.`` in the ONNX
    route's names, ``inner.`` in the PyTorch frontend's, both HFImageModel's)."""
    for wrapper in ("model.", "inner."):
        if path.startswith(wrapper):
            return path[len(wrapper):]
    return path


def _match(weight, node, torch_weights) -> str | None:
    if weight is None:
        return None
    transposed = any(att.name == "transB" and att.i for att in node.attribute)
    candidates = [weight] if node.op_type == "Conv" or transposed else [weight.T]
    if node.op_type == "MatMul" and weight.ndim == 2:
        candidates.append(weight)
    for path, tensor in torch_weights:
        for cand in candidates:
            if tensor.shape == cand.shape and _close(tensor, cand):
                return path
    # An in-projection split into q, k, v by the exporter: the weight is one third of the packed one.
    for path, tensor in torch_weights:
        for cand in candidates:
            if tensor.ndim == 2 and cand.ndim == 2 and tensor.shape[1] == cand.shape[1] \
                    and tensor.shape[0] == 3 * cand.shape[0]:
                for part, name in zip(np.split(tensor, 3), ("q", "k", "v")):
                    if _close(part, cand):
                        return f"{path}[{name}]"
    return None


def _close(a, b, rtol=1e-5, atol=1e-7) -> bool:
    """``np.allclose``, answered from a few elements first when they already differ (most candidates do:
    a ViT holds dozens of weights of the same shape)."""
    flat_a, flat_b = a.reshape(-1), b.reshape(-1)
    probe = slice(None, None, max(1, flat_a.size // 64))
    if not np.allclose(flat_a[probe], flat_b[probe], rtol=rtol, atol=atol):
        return False
    return bool(np.allclose(a, b, rtol=rtol, atol=atol))


def describe(op: GraphOp | None, name: str) -> str:
    """``blocks.3.mlp.fc2 (node_MatMul_59)``, or the node name alone when untraced."""
    if op is None or op.module is None:
        return f"{name} (no torch module traced)"
    return f"{op.module} ({name})"


def openvino_graph_ops(fp32_model) -> dict:
    """Friendly name -> :class:`GraphOp` for every MatMul/Convolution of an FP32 ``ov.Model`` that OpenVINO's
    PyTorch frontend converted. That frontend names each op after the module that ran it
    (``__module.blocks.0.mlp.fc2/aten::linear/MatMul``), so the module path is read from the name; an op
    named otherwise (a functional matmul outside any submodule) is left untraced."""
    import re

    ops = {}
    for op in fp32_model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("MatMul", "Convolution"):
            continue
        out = [d.get_length() if d.is_static else 1 for d in op.get_output_partial_shape(0)]
        a = [d.get_length() if d.is_static else 1 for d in op.get_input_partial_shape(0)]
        b = [d.get_length() if d.is_static else 1 for d in op.get_input_partial_shape(1)]
        if kind == "Convolution":
            macs = int(np.prod(out)) * int(np.prod(b[1:]))
        else:
            macs = int(np.prod(out)) * int(a[-2] if op.get_attributes().get("transpose_a") else a[-1])
        name = op.get_friendly_name()
        found = re.match(r"__module\.([^/]+)/", name)
        module = _clean(found.group(1)) if found else None
        ops[name] = GraphOp(name, {"Convolution": "Conv"}.get(kind, kind), macs, module)
    return ops
