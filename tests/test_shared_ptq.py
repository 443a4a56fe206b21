"""The recipe search's shared statistics passes (vit_edge/convert/stages/shared_ptq.py) and the budget's
graph edits, on the demo model with real NNCF, ONNX Runtime and OpenVINO.

Random calibration images: these tests check that models are identical and graphs well formed, not accuracy.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from vit_edge.convert.stages import shared_ptq
from vit_edge.convert.stages.budget_backends import onnx_bypass, onnx_prune, onnx_quantized_ops

RNG = np.random.default_rng(0)
IMAGES = [RNG.normal(0, 1, (1, 3, 32, 32)).astype(np.float32) for _ in range(24)]


def _fp32(demo_onnx, backend):
    model = onnx.load(str(demo_onnx / "model.onnx"))
    assert model.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3  # the demo reads 3 x 32 x 32
    if backend == "onnx":
        return model
    import openvino as ov

    return ov.convert_model(str(demo_onnx / "model.onnx"))


def _dataset(nncf, model, backend):
    name = model.graph.input[0].name if backend == "onnx" else None
    return nncf.Dataset(IMAGES, (lambda x: {name: x}) if backend == "onnx" else None)


def _arguments(nncf, preset, alpha, ranges):
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    advanced = AdvancedQuantizationParameters(smooth_quant_alphas=AdvancedSmoothQuantParameters(matmul=alpha))
    if ranges == "minmax":
        advanced.activations_range_estimator_params = RangeEstimatorParametersSet.MINMAX
    shared_ptq.keep_float_weights(advanced)
    return {"preset": getattr(nncf.QuantizationPreset, preset), "model_type": nncf.ModelType.TRANSFORMER,
            "subset_size": len(IMAGES), "fast_bias_correction": True, "ignored_scope": None,
            "advanced_parameters": advanced}


def _outputs(model, backend, x):
    if backend == "onnx":
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {model.graph.input[0].name: x})[0]
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x)[0]


@pytest.mark.slow  # 8 NNCF quantizations: ~30 s
@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_shared_statistics_give_the_models_nncf_quantize_gives_in_two_passes(demo_onnx, backend, monkeypatch):
    from vit_edge.convert.stages.quantize import _nncf

    nncf = _nncf()
    model = _fp32(demo_onnx, backend)
    recipes = {("MIXED", 0.95, "minmax"): None, ("PERFORMANCE", -1.0, "minmax"): None,
               ("PERFORMANCE", 0.95, "mean-minmax"): None, ("MIXED", -1.0, "mean-minmax"): None}
    passes = []
    real_collect = shared_ptq._collect
    monkeypatch.setattr(shared_ptq, "_collect", lambda *a: passes.append(1) or real_collect(*a))
    shared = shared_ptq.SharedQuantizer(nncf, model, _dataset(nncf, model, backend),
                                        {key: _arguments(nncf, *key) for key in recipes})
    # SmoothQuant's statistics and the no-SmoothQuant ranges in one pass over the FP32 model; every
    # SmoothQuant candidate's ranges in one pass over the smoothed model.
    assert len(passes) == 2
    x = np.concatenate(IMAGES[:8])
    for key in recipes:
        arguments = _arguments(nncf, *key)
        advanced = arguments.pop("advanced_parameters")
        alone = nncf.quantize(copy.deepcopy(model) if backend == "onnx" else model.clone(),
                              _dataset(nncf, model, backend), advanced_parameters=advanced, **arguments)
        together = shared.quantize(key)
        np.testing.assert_array_equal(_outputs(together, backend, x), _outputs(alone, backend, x), err_msg=str(key))
        assert shared.quantize(key) is not together  # each call a new model: the budget may edit it


def test_the_budget_returns_an_operation_wholly_to_float_and_leaves_no_dead_quantizer(demo_onnx):
    from vit_edge.convert.stages.quantize import _nncf

    nncf = _nncf()
    model = _fp32(demo_onnx, "onnx")
    key = ("PERFORMANCE", -1.0, "minmax")
    quantized = shared_ptq.SharedQuantizer(nncf, model, _dataset(nncf, model, "onnx"),
                                           {key: _arguments(nncf, *key)}).quantize(key)
    gemms = onnx_quantized_ops(quantized)
    assert len(gemms) >= 4
    edited = onnx_prune(onnx_bypass(quantized, gemms[:1], weights=True))
    node = next(n for n in edited.graph.node if n.name == gemms[0])
    floats = {i.name: i for i in edited.graph.initializer}
    assert node.input[1] in floats and floats[node.input[1]].data_type == onnx.TensorProto.FLOAT  # the float weight
    producers = {out: n for n in edited.graph.node for out in n.output}
    assert producers.get(node.input[0]) is None or producers[node.input[0]].op_type != "DequantizeLinear"
    assert onnx_quantized_ops(edited) == gemms[1:]
    read = {name for n in edited.graph.node for name in n.input} | {o.name for o in edited.graph.output}
    assert all(any(out in read for out in n.output) for n in edited.graph.node)  # nothing left dangling
    assert len(edited.graph.node) < len(quantized.graph.node)
    onnx.checker.check_model(edited)
    x = np.concatenate(IMAGES[:8])
    compressed = shared_ptq.compress_weights(copy.deepcopy(edited))
    np.testing.assert_allclose(_outputs(compressed, "onnx", x), _outputs(edited, "onnx", x), atol=1e-5)
    assert not [n for n in compressed.graph.node if n.op_type == "QuantizeLinear" and n.input[0] in
                {i.name for i in compressed.graph.initializer}]  # every remaining weight stored INT8
    # Without weights=True only the activation goes back to float: the weight still reads its Q/DQ.
    activation_only = onnx_bypass(quantized, gemms[:1])
    node = next(n for n in activation_only.graph.node if n.name == gemms[0])
    assert node.input[1] not in {i.name for i in activation_only.graph.initializer}
