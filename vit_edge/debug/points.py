"""Where debug looks: the comparison points of a graph, chosen on the FP32 ONNX, and the names a user knows.

A point is one value both graphs compute: an input of a node as that node sees it (after its quantizer,
after the Cast into an FP32 island) or an output of a node. Points are named by the FP32 ONNX node and
port, so the same point can be found in a Q/DQ ONNX (NNCF keeps node and tensor names), an FP16 ONNX
(onnxconverter-common keeps them too) and an OpenVINO IR (OpenVINO keeps the ONNX names as friendly and
tensor names); :mod:`.taps` finds each point in each graph.

Which points: every GEMM's activation inputs and output, every LayerNorm's input and output, every
residual ``Add`` (a transformer block's output), every input a candidate quantizes and every tensor it
quantizes, every FP32-island boundary of an FP16 candidate, and the graph output.
"""

from __future__ import annotations

from dataclasses import dataclass

from vit_edge.convert.stages.opmap import GEMM_OPS

FLOAT_TYPES = (1, 10, 11, 16)  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16
SHAPE_ONLY = ("Shape", "Size")  # read a tensor's shape, not its values


@dataclass(frozen=True)
class PointSpec:
    node: str  # the FP32 ONNX node
    port: str  # "in" or "out"
    index: int  # which input or output of the node
    tensor: str  # the FP32 ONNX tensor there
    kind: str  # gemm_input, gemm_output, norm_input, norm_output, residual, quantized_input, ...
    position: int  # the node's place in the FP32 graph's (topological) order
    op_type: str

    @property
    def name(self) -> str:
        return f"{self.node}:{self.port}{self.index}"


@dataclass(frozen=True)
class CandidateFacts:
    """What the candidate graph adds to the choice of points, in FP32 ONNX names."""

    quantized_nodes: frozenset = frozenset()  # nodes that read a quantized (Q/DQ, FakeQuantize) input
    quantized_tensors: frozenset = frozenset()  # tensors a quantizer reads
    cast_readers: frozenset = frozenset()  # (node, input index) reading a Cast (FP16 -> FP32 island)
    cast_tensors: frozenset = frozenset()  # tensors a Cast reads (an island's output going back to FP16)


def _activations(model) -> tuple[set, dict]:
    """Tensors that are not weights or constants, and the element type of every typed tensor."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info)
             + list(inferred.graph.input) + list(inferred.graph.output)}
    constant = {i.name for i in model.graph.initializer}
    constant |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    produced = {o for n in model.graph.node for o in n.output} | {i.name for i in model.graph.input}
    return {t for t in produced - constant if types.get(t, 1) in FLOAT_TYPES}, types


def select(fp32_model, facts: CandidateFacts = CandidateFacts()) -> list:
    """The points of ``fp32_model`` worth comparing, in graph order (inputs of a node before its outputs)."""
    activations, _types = _activations(fp32_model)
    outputs = {o.name for o in fp32_model.graph.output}
    specs = []
    for position, node in enumerate(fp32_model.graph.node):
        def add(port, index, kind):
            tensor = (node.input if port == "in" else node.output)[index]
            if tensor in activations:
                specs.append(PointSpec(node.name, port, index, tensor, kind, position, node.op_type))

        live = [i for i, t in enumerate(node.input) if t in activations]
        for i in live:
            if node.op_type in GEMM_OPS:
                add("in", i, "gemm_input")
            elif node.op_type == "LayerNormalization" and i == 0:
                add("in", i, "norm_input")
            elif node.name in facts.quantized_nodes and node.op_type not in SHAPE_ONLY:
                add("in", i, "quantized_input")
            elif (node.name, i) in facts.cast_readers:
                add("in", i, "fp32_island_input")
        for k, tensor in enumerate(node.output):
            if tensor in outputs:
                add("out", k, "output")
            elif node.op_type in GEMM_OPS:
                add("out", k, "gemm_output")
            elif node.op_type == "LayerNormalization":
                add("out", k, "norm_output")
            elif node.op_type == "Add" and len(live) == 2:
                add("out", k, "residual")
            elif tensor in facts.quantized_tensors:
                add("out", k, "quantizer_input")
            elif tensor in facts.cast_tensors:
                add("out", k, "fp32_island_output")
            elif node.name in facts.quantized_nodes:
                add("out", k, "quantized_output")
    return specs


# ---------------------------------------------------------------- names a user knows


def module_names(torch_module) -> dict:
    """Every module path of the torch model (as :mod:`opmap` writes them) -> its class name, in definition
    order."""
    if torch_module is None:
        return {}
    return {_clean(path): type(sub).__name__ for path, sub in torch_module.named_modules() if path}


def naming(fp32_model, torch_module) -> dict:
    """What :func:`describe_points` needs from the torch model, as JSON (kept in the export cache):
    ``gemm_modules`` (every GEMM node -> its torch module or None) and ``modules`` (:func:`module_names`)."""
    from vit_edge.convert.stages.opmap import graph_ops

    return {"gemm_modules": {name: op.module for name, op in graph_ops(fp32_model, torch_module).items()},
            "modules": module_names(torch_module)}


def _clean(path: str) -> str:
    return path[len("model."):] if path.startswith("model.") else path  # HFImageModel's wrapper


def _parameter_modules(fp32_model, modules: dict) -> dict:
    """Node name -> the module its parameters belong to, from the initializer names the exporter keeps
    (``encoder.layers.1.norm1.weight`` -> ``encoder.layers.1.norm1``), where only that node reads them;
    LayerNorms whose parameters are shared (deduplicated: untrained ones are all ones and zeros) are matched
    to the model's LayerNorm modules in order when the counts agree."""
    readers = {}
    for node in fp32_model.graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.name)
    initializers = {i.name for i in fp32_model.graph.initializer}
    found = {}
    for node in fp32_model.graph.node:
        for name in node.input:
            path = _clean(name.rsplit(".", 1)[0])
            if name in initializers and name.endswith((".weight", ".bias")) and len(readers[name]) == 1 \
                    and path in modules:
                found[node.name] = path
                break
    norms = [n.name for n in fp32_model.graph.node if n.op_type == "LayerNormalization"]
    torch_norms = [path for path, kind in modules.items() if kind == "LayerNorm"]
    if len(norms) == len(torch_norms) and any(n not in found for n in norms):
        found.update(zip(norms, torch_norms))
    return found


def describe_points(specs: list, fp32_model, gemm_modules: dict, modules: dict) -> dict:
    """PointSpec.name -> {"module": what a user calls the place, "traced": bool, "after": str | None}.

    A traced GEMM is its torch module (``encoder.layers.1.linear2``); a node whose parameters are a
    module's (a LayerNorm) is that module; anything else is "after" the nearest traced GEMM before it in
    graph order; a GEMM whose weight matches no module is untraced (``after`` still says where it sits).
    ``gemm_modules``: every GEMM node -> its torch module or None (:func:`naming`)."""
    own = _parameter_modules(fp32_model, modules)
    nodes = list(fp32_model.graph.node)
    last, after = None, []
    for node in nodes:  # the nearest traced GEMM at or before each position
        if gemm_modules.get(node.name) is not None:
            last = gemm_modules[node.name]
        after.append(last)
    named = {}
    for spec in specs:
        node = nodes[spec.position]
        before = after[spec.position - 1] if spec.position > 0 else None
        if node.name in gemm_modules:
            module = gemm_modules[node.name]
            named[spec.name] = {"module": module, "traced": module is not None, "after": None if module else before}
        elif node.name in own:
            named[spec.name] = {"module": own[node.name], "traced": True, "after": None}
        else:
            named[spec.name] = {"module": f"after {before}" if before else None, "traced": before is not None,
                                "after": None}
    return named


def label(point: dict) -> str:
    """What the terminal and Markdown call a point: ``encoder.layers.1.linear2 output``, ``residual add after
    encoder.layers.1.linear2``, ``MatMul input 1 after encoder.layers.0.self_attn.in_proj (untraced)``."""
    port = "input" if point["port"] == "in" else "output"
    port += f" {point['index']}" if point["index"] else ""
    module = point.get("module")
    if point["kind"] == "residual":
        return f"residual add {module}" if module else f"residual add {point['node']} (no torch module traced)"
    if point["kind"] == "output":
        return "final output"
    if module is None:
        if point.get("after"):
            return f"{point['op_type']} {port} after {point['after']} (untraced)"
        return f"{point['node']} {port} (no torch module traced)"
    if module.startswith("after "):
        return f"{point['op_type']} {port} {module}"
    return f"{module} {port}"
