"""TensorRT's Q/DQ rules and the UINT8 -> INT8 rewrite, on small hand-built graphs run in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from vit_edge.convert.stages import qdq
from vit_edge.convert.tensorrt import checks as trt_checks

RNG = np.random.default_rng(0)
ACT_SCALE = np.float32(0.02)


def _graph(*, act_zp=np.uint8(0), weight_axis=1, per_channel=True, dq_into_layernorm=False, opset=18,
           extra_nodes=()):
    """x -> Relu -> Q/DQ (activation) -> MatMul with an INT8 per-channel weight -> y (and the DQ output)."""
    w = RNG.integers(-127, 128, size=(4, 3)).astype(np.int8)
    w_scale = (np.full(3, 0.01, np.float32) if per_channel else np.float32(0.01))
    inits = [numpy_helper.from_array(np.asarray(ACT_SCALE), "act_scale"),
             numpy_helper.from_array(np.asarray(act_zp), "act_zp"),
             numpy_helper.from_array(w, "w_q"), numpy_helper.from_array(np.asarray(w_scale), "w_scale"),
             numpy_helper.from_array(np.zeros(np.shape(w_scale), np.int8), "w_zp")]
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("QuantizeLinear", ["r", "act_scale", "act_zp"], ["rq"], name="q_act"),
             helper.make_node("DequantizeLinear", ["rq", "act_scale", "act_zp"], ["rdq"], name="dq_act"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], name="dq_w",
                              axis=weight_axis),
             helper.make_node("MatMul", ["rdq", "w"], ["y"], name="matmul")]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3]),
               helper.make_tensor_value_info("rdq", TensorProto.FLOAT, ["n", 4])]
    if dq_into_layernorm:
        inits += [numpy_helper.from_array(np.ones(4, np.float32), "g"),
                  numpy_helper.from_array(np.zeros(4, np.float32), "b")]
        nodes.append(helper.make_node("LayerNormalization", ["rdq", "g", "b"], ["ln"], name="ln", axis=-1))
        outputs.append(helper.make_tensor_value_info("ln", TensorProto.FLOAT, ["n", 4]))
    nodes += list(extra_nodes)
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})


def test_uint8_after_relu_is_rewritten_to_int8_with_the_same_range():
    model = _graph()
    onnx.checker.check_model(model)
    before = qdq.check_rules(model)
    assert len(before) == 2 and all("UINT8" in p for p in before), before
    x = RNG.normal(0, 2, size=(64, 4)).astype(np.float32)
    x[0, 0] = 255 * ACT_SCALE  # the top of the UINT8 range must survive the rewrite
    y0, act0 = _run(model, x)

    assert qdq.signed_count(model) == 0
    assert qdq.make_signed(model) == 2
    assert qdq.signed_count(model) == 2 and qdq.make_signed(model) == 0  # done once; counted after
    onnx.checker.check_model(model)
    assert qdq.check_rules(model) == []
    zps = [numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("zero_point")]
    assert zps and all(z.dtype == np.int8 and not z.any() for z in zps)
    y1, act1 = _run(model, x)
    new_step = ACT_SCALE * 255 / 127
    # Same range [0, 255*scale], coarser step: every activation within half a new step plus half an old one.
    assert np.abs(act1 - act0).max() <= new_step / 2 + ACT_SCALE / 2 + 1e-6
    assert act1.max() == pytest.approx(255 * ACT_SCALE, rel=1e-5)
    assert act1.min() == 0.0
    assert np.abs(y1 - y0).max() < 0.2  # 4-term dot product with |w| <= 1.27


def test_rewrite_leaves_asymmetric_uint8_alone_and_the_rules_say_why():
    model = _graph(act_zp=np.uint8(12))
    assert qdq.make_signed(model) == 0
    problems = qdq.check_rules(model)
    assert any("zero point 12" in p for p in problems), problems
    assert any("UINT8" in p for p in problems), problems


def test_signed_but_asymmetric_int8_is_flagged():
    problems = qdq.check_rules(_graph(act_zp=np.int8(-3)))
    assert [p for p in problems if "zero point -3" in p and "asymmetric" in p], problems
    assert not [p for p in problems if "UINT8" in p]


def test_per_tensor_or_wrong_axis_weights_are_flagged():
    per_tensor = qdq.check_rules(_graph(act_zp=np.int8(0), per_channel=False))
    assert len(per_tensor) == 1 and "per-channel" in per_tensor[0] and "1 scale(s)" in per_tensor[0]
    assert qdq.check_rules(_graph(act_zp=np.int8(0))) == []


def test_quantized_layernorm_is_flagged():
    problems = qdq.check_rules(_graph(act_zp=np.int8(0), dq_into_layernorm=True))
    assert problems == ["LayerNormalization ln is quantized (reads DequantizeLinear dq_act)"]


def test_operator_and_opset_checks():
    good = _graph(act_zp=np.int8(0))
    assert trt_checks.check_tensorrt_ready(good, "int8") == []
    old = _graph(act_zp=np.int8(0), opset=16)
    assert any("opset 16 < 17" in p for p in trt_checks.check_operators(old))
    strange = _graph(act_zp=np.int8(0), extra_nodes=[
        helper.make_node("MatMulInteger", ["rq", "w_q"], ["mi"], name="mi"),
        helper.make_node("Foo", ["x"], ["foo"], name="foo", domain="com.example")])
    problems = trt_checks.check_operators(strange)
    assert len(problems) == 1 and "MatMulInteger" in problems[0] and "com.example.Foo" in problems[0]
    # Q/DQ in a model that claims to be FP32 is a mistake too.
    assert any("holds Q/DQ" in p for p in trt_checks.check_tensorrt_ready(good, "fp32"))


def test_summary_counts_int8_gemms():
    model = _graph()
    qdq.make_signed(model)
    s = qdq.summary(model)
    assert s["qdq_nodes"] == {"DequantizeLinear:int8": 2, "QuantizeLinear:int8": 1}
    assert s["int8_weight_gemms"] == "1/1" and s["int8_attention_matmuls"] == "0/0"
