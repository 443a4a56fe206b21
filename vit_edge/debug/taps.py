"""Intermediate taps per backend: find a :class:`~.points.PointSpec` in a graph, make it an extra output,
run the graph, and say which points feed which.

- ONNX (plain, Q/DQ, FP16, TensorRT-ready): the point's tensor becomes a graph output (typed from
  ``onnx.shape_inference``) and ONNX Runtime runs the graph. NNCF and onnxconverter-common keep node and
  tensor names, so a node's input *as the node sees it* is ``dq_output_<tensor>`` in a Q/DQ graph and the
  FP32 tensor in the reference. A per-tensor Q/DQ output is computed exactly from the tensor before it
  (fetching it would keep ONNX Runtime from fusing the Q/DQ into its integer kernels: 3x slower on ViT-S),
  and an input NNCF's SmoothQuant scaled is divided by its scale (derived handles, ``TENSOR#derived``).
- OpenVINO: the point's ``ov.Output`` is added with ``model.add_outputs``; outputs are found by the ONNX
  tensor names OpenVINO keeps, inputs through the op of the same friendly name (a Gemm/Conv's MatMul or
  Convolution is ``NAME/WithoutBiases``; a LayerNorm is decomposed into MVN, Multiply, Add).

A handle is what a backend uses for a point: a tensor name (ONNX) or ``"op:port"`` (OpenVINO). A handle that
is the graph input is fed, not fetched.
"""

from __future__ import annotations

import copy

import numpy as np

from vit_edge.convert.stages.budget_backends import LAYOUT_OPS, onnx_quantized_ops, openvino_quantized_ops
from vit_edge.debug.points import FLOAT_TYPES, CandidateFacts

OPENVINO_LAYOUT = ("Transpose", "Reshape", "Squeeze", "Unsqueeze")
OPENVINO_TYPES = {"Gemm": "MatMul", "Conv": "Convolution", "LayerNormalization": "MVN"}
UPSTREAM_SEARCH = 400  # producers visited at most when looking for the points that feed a point


class OnnxTaps:
    backend = "onnx"

    def __init__(self, model):
        import onnx

        self.model = model
        self.nodes = {n.name: n for n in model.graph.node}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self._initializers = {i.name: i for i in model.graph.initializer}
        self.inits = set(self._initializers)
        self.inputs = {i.name for i in model.graph.input}
        self.input_name = model.graph.input[0].name
        self.output_name = model.graph.output[0].name
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        self.types = {vi.name: vi.type.tensor_type.elem_type for vi in list(inferred.graph.value_info)
                      + list(inferred.graph.input) + list(inferred.graph.output)}
        self.transforms = {}  # derived handle -> (the tensor fetched, the functions that give its values)
        self.facts_cache = CandidateFacts()

    def facts(self, fp32_nodes: set) -> CandidateFacts:
        """What this graph quantizes or casts, in the names of the FP32 graph (kept as ``facts_cache``)."""
        consumers = {}
        nodes = self.model.graph.node
        for node in nodes:
            for i, name in enumerate(node.input):
                consumers.setdefault(name, []).append((node.name, i))
        casts = [n for n in nodes if n.op_type == "Cast"]
        self.facts_cache = CandidateFacts(
            quantized_nodes=frozenset(onnx_quantized_ops(self.model, op_types=None, through=LAYOUT_OPS,
                                                         every_input=True)) & fp32_nodes,
            quantized_tensors=frozenset(n.input[0] for n in nodes if n.op_type == "QuantizeLinear"
                                        and n.input[0] not in self.inits),
            cast_readers=frozenset(c for n in casts for c in consumers.get(n.output[0], [])),
            cast_tensors=frozenset(n.input[0] for n in casts))
        return self.facts_cache

    def resolve(self, spec) -> str | None:
        node = self.nodes.get(spec.node)
        if node is None or node.op_type != spec.op_type:
            return None
        names = node.input if spec.port == "in" else node.output
        if spec.index >= len(names):
            return None
        tensor = names[spec.index]
        if not tensor or tensor in self.inits or self.types.get(tensor, 1) not in FLOAT_TYPES:
            return None
        base, steps = tensor, []
        quantized = self._fake_quant(tensor)
        if quantized is not None:  # computed from the tensor before Q/DQ: fetching it would undo ORT's fusions
            base, steps = quantized[0], [quantized[1]]
        scale = self._smoothing(tensor) if spec.port == "in" else None
        if scale is not None:
            steps.append(lambda a, s=scale: a / s)
        if not steps:
            return tensor
        handle = f"{tensor}#derived"
        self.transforms[handle] = (base, steps)
        return handle

    def _array(self, name):
        from onnx import numpy_helper

        init = self._initializers.get(name)
        return None if init is None else numpy_helper.to_array(init)

    def _fake_quant(self, tensor: str):
        """(the tensor before Q/DQ, a function giving the dequantized values from it) when ``tensor`` is a
        per-tensor activation QuantizeLinear -> DequantizeLinear output, else None."""
        dq = self.producer.get(tensor)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = self.producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear" or q.input[0] in self.inits:
            return None
        arrays = []
        for node in (q, dq):
            scale = self._array(node.input[1])
            zero = self._array(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros((), np.uint8)
            if scale is None or zero is None or scale.size != 1 or zero.size != 1:
                return None
            arrays.append((np.float32(scale.reshape(())), zero.reshape(())))
        (q_scale, q_zero), (dq_scale, dq_zero) = arrays
        if q_zero.dtype.kind not in "iu":
            return None
        low, high = np.iinfo(q_zero.dtype).min, np.iinfo(q_zero.dtype).max

        def dequantized(a):
            levels = np.divide(np.asarray(a, np.float32), q_scale)  # in place from here: ViT-S tensors are large
            np.rint(levels, out=levels)
            levels += np.float32(q_zero)
            np.clip(levels, low, high, out=levels)
            levels -= np.float32(dq_zero)
            levels *= dq_scale
            return levels

        return q.input[0], dequantized

    def _smoothing(self, tensor: str):
        """The scale NNCF's SmoothQuant multiplied this input by (its Mul, maybe behind Q/DQ), else None:
        such an input is compared after dividing the scale back out."""
        node = self.producer.get(tensor)
        for step in ("DequantizeLinear", "QuantizeLinear"):
            if node is not None and node.op_type == step:
                node = self.producer.get(node.input[0])
        if node is None or node.op_type != "Mul" or "smooth_quant" not in node.name:
            return None
        inits = [name for name in node.input if name in self._initializers]
        return self._array(inits[0]).astype(np.float32) if len(inits) == 1 else None

    def upstream(self, handle: str, targets: set) -> set:
        """The handles in ``targets`` whose values reach ``handle`` with no other target in between."""
        base = self.transforms.get(handle, (handle,))[0]
        if base != handle and base in targets:
            return {base}
        def parents(name):
            node = self.producer.get(name)
            for parent in node.input if node is not None and node.op_type not in ("Shape", "Size") else ():
                if parent and parent not in self.inits:
                    yield parent, parent

        return _walk_up(base, parents, _aliases(self.transforms, targets), targets)

    def run(self, handles: list, batches, config=None):
        """Yield, per batch, ``{handle: array}`` for ``handles`` and ``None`` for the graph output."""
        import onnx
        import onnxruntime as ort

        edited = copy.deepcopy(self.model)
        present = {o.name for o in edited.graph.output}
        fetched = [self.transforms.get(h, (h,))[0] for h in handles]
        for h in fetched:
            if h not in present and h not in self.inputs:
                edited.graph.output.append(onnx.helper.make_tensor_value_info(h, self.types.get(h, 1), None))
                present.add(h)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(edited.SerializeToString(), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for batch in batches:
            got = dict(zip(names, session.run(names, {self.input_name: batch})))
            got[self.input_name] = batch
            got[None] = got[self.output_name]
            yield _transformed(got, self.transforms)


class OpenVINOTaps:
    backend = "openvino"

    def __init__(self, model):
        self.model = model  # an ov.Model this object owns: run() adds outputs to it
        self.ops = list(model.get_ordered_ops())
        self.by_name = {op.get_friendly_name(): op for op in self.ops}
        self.by_tensor, self.outputs = {}, {}
        for op in self.ops:
            for k in range(op.get_output_size()):
                out = op.output(k)
                self.outputs[self._key(out)] = out
                for name in out.get_names():
                    self.by_tensor.setdefault(name, out)
        self.final = self._key(model.outputs[0].get_node().input_value(0))
        self._added = []
        self.transforms = {}
        self.facts_cache = CandidateFacts()
        self.ran_at = {}  # config -> the inference precision the plugin reported

    @staticmethod
    def _key(output) -> str:
        return f"{output.get_node().get_friendly_name()}:{output.get_index()}"

    def facts(self, fp32_nodes: set) -> CandidateFacts:
        """What this model quantizes, in the names of the FP32 ONNX (kept as ``facts_cache``)."""
        quantized = {name.split("/")[0] for name in openvino_quantized_ops(
            self.model, op_types=None, through=OPENVINO_LAYOUT, every_input=True)}
        tensors = set()
        for op in self.ops:
            if op.get_type_name() == "FakeQuantize":
                source = op.input_value(0)
                if source.get_node().get_type_name() != "Constant":
                    tensors |= set(source.get_names())
        self.facts_cache = CandidateFacts(quantized_nodes=frozenset(quantized & fp32_nodes),
                                          quantized_tensors=frozenset(tensors))
        return self.facts_cache

    def resolve(self, spec) -> str | None:
        if spec.port == "out":
            out = self.by_tensor.get(spec.tensor)
        else:
            op = self.by_name.get(spec.node + "/WithoutBiases") or self.by_name.get(spec.node)
            if op is None:
                return None
            if spec.op_type == "LayerNormalization":  # Add(Multiply(MVN(x), gamma), beta): x is the input
                for _ in range(4):
                    if op.get_type_name() == "MVN" or op.get_input_size() == 0:
                        break
                    op = op.input_value(0).get_node()
            want = OPENVINO_TYPES.get(spec.op_type, spec.op_type)
            if op.get_type_name().lower() != want.lower() or spec.index >= op.get_input_size():
                return None
            out = op.input_value(spec.index)
        if out is None or not out.get_element_type().is_real():
            return None
        scale = self._smoothing(out) if spec.port == "in" else None
        if scale is not None:
            handle = f"{self._key(out)}#unsmoothed"
            self.transforms[handle] = (self._key(out), [lambda a, s=scale: a / s])
            return handle
        return self._key(out)

    @staticmethod
    def _smoothing(out):
        node = out.get_node()
        if node.get_type_name() == "FakeQuantize":
            node = node.input_value(0).get_node()
        if node.get_type_name() != "Multiply" or "smooth_quant" not in node.get_friendly_name():
            return None
        constants = [node.input_value(k).get_node() for k in range(2)
                     if node.input_value(k).get_node().get_type_name() == "Constant"]
        return np.asarray(constants[0].get_data(), np.float32) if len(constants) == 1 else None

    def upstream(self, handle: str, targets: set) -> set:
        base = self.transforms.get(handle, (handle,))[0]
        if base != handle and base in targets:
            return {base}
        def parents(output):
            node = output.get_node()
            for k in range(node.get_input_size() if node.get_type_name() not in ("ShapeOf",) else 0):
                source = node.input_value(k)
                if source.get_node().get_type_name() != "Constant":
                    yield self._key(source), source

        return _walk_up(self.outputs[base], parents, _aliases(self.transforms, targets), targets)

    def run(self, handles: list, batches, config=None):
        import openvino as ov

        fetched = list(dict.fromkeys(self.transforms.get(h, (h,))[0] for h in handles))
        wanted = [h for h in fetched if h != self.final and h not in self._added
                  and self.outputs[h].get_node().get_type_name() != "Parameter"]
        if wanted:
            self.model.add_outputs([self.outputs[h] for h in wanted])
            self._added += wanted
        compiled = ov.Core().compile_model(self.model, "CPU", dict(config or {}))
        try:  # the precision the plugin really runs (bf16 on CPUs that have it, unless asked for f32)
            value = compiled.get_property("INFERENCE_PRECISION_HINT")
            self.ran_at[str(sorted((config or {}).items()))] = getattr(value, "to_string", lambda: str(value))()
        except Exception:  # noqa: BLE001 - a plugin without the property: unknown
            pass
        order = [self.final] + self._added
        params = [self._key(p.output(0)) for p in self.model.get_parameters()]
        for batch in batches:
            result = compiled(batch)
            got = {h: np.asarray(result[i]) for i, h in enumerate(order)}
            got[params[0]] = batch
            got[None] = got[self.final]
            yield _transformed(got, self.transforms)


def _walk_up(start, parents, alias: dict, targets: set) -> set:
    """Walk producers up from ``start`` (``parents(item)`` yields ``(key, item)`` per input) and return the
    targets reached with no other target in between; one walk for both graph kinds."""
    found, seen, stack = set(), set(), [start]
    while stack and len(seen) < UPSTREAM_SEARCH:
        for key, item in parents(stack.pop()):
            if key in seen:
                continue
            seen.add(key)
            if key in alias or key in targets:
                found.add(alias.get(key, key))
            else:
                stack.append(item)
    return found


def _aliases(transforms: dict, targets: set) -> dict:
    """Graph tensor -> the derived handle among ``targets`` that stands for it (``TENSOR#how``)."""
    return {handle.rsplit("#", 1)[0]: handle for handle in transforms if handle in targets}


def _transformed(got: dict, transforms: dict) -> dict:
    """Add the derived handles: a quantized input computed from the tensor before its Q/DQ, a smoothed input
    divided by its SmoothQuant scale."""
    for handle, (base, steps) in transforms.items():
        if base in got:
            value = got[base]
            for step in steps:
                value = step(value)
            got[handle] = value
    return got
