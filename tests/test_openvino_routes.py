"""The two routes to an OpenVINO IR (``--route``): OpenVINO's PyTorch frontend on the torch module vs the FP32 ONNX.

On the trained imagenette ViT in its Hugging Face form the routes really differ: under torch.export transformers
materialises an all-true boolean attention mask, whose ONNX lowering guards the softmax with
``Where(IsNaN(p), 0, p)``; OpenVINO cannot fuse that into ``ScaledDotProductAttention``, so the ONNX route's
attention is plain MatMul/Softmax (and INT8 quantizes those MatMuls), while the frontend's stays one fused op.
benchmarks/openvino_routes.py measures what that is worth (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import collections
import json
import sys

import pytest

from conftest import MODELS
from shared_data import shared_data

pytestmark = pytest.mark.slow  # converts trained models with both routes

pytest.importorskip("openvino")
pytest.importorskip("transformers")

IMAGENETTE = shared_data("imagenette-64")
DEPTH = 6  # tests/models/imagenette_fixtures.json: the fixture's blocks, one attention each
RECIPE = {"preset": "mixed", "smooth_quant_alpha": -1.0}  # one recipe on both routes: the routes are what differs


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    sys.path.insert(0, str(MODELS))
    try:
        import imagenette_hf
    finally:
        sys.path.remove(str(MODELS))
    return imagenette_hf.write(tmp_path_factory.mktemp("hf") / "imagenette-hf")


def _convert(hf_dir, out, precision="fp32", **options):
    from vit_edge.convert import convert

    if precision == "int8":
        options = {"calib": str(IMAGENETTE / "train"), "calib_size": 200, "validate": str(IMAGENETTE / "val"),
                   "validate_limit": 300, **RECIPE, **options}
    else:
        options = {"parity_data": str(IMAGENETTE / "val"), **options}
    convert(f"hf:{hf_dir}", target="openvino", precision=precision, out=out, **options)
    return json.loads((out / "manifest.json").read_text())


def _ops(out) -> collections.Counter:
    import openvino as ov

    return collections.Counter(op.get_type_name() for op in ov.Core().read_model(str(out / "model.xml")).get_ops())


@pytest.fixture(scope="module")
def fp32_routes(hf_dir, tmp_path_factory):
    """The FP32 IR by the default route (no --route) and by --route onnx."""
    base = tmp_path_factory.mktemp("routes")
    return {"default": (base / "default", _convert(hf_dir, base / "default")),
            "onnx": (base / "onnx", _convert(hf_dir, base / "onnx", route="onnx"))}


def test_the_default_route_is_the_frontend_and_is_recorded(fp32_routes):
    out, manifest = fp32_routes["default"]
    assert manifest["openvino"]["route"] == "pytorch" and manifest["openvino"].get("route_reason") is None
    assert manifest["export"]["exporter"] == "openvino-pytorch-frontend"
    assert fp32_routes["onnx"][1]["openvino"]["route"] == "onnx"
    assert fp32_routes["onnx"][1]["openvino"]["route_reason"] == "--route onnx"
    assert not list(out.glob("*.onnx")) and not list(out.glob(".*.onnx"))  # no ONNX was made


def test_the_frontend_ir_holds_fp32_parity_with_a_dynamic_batch(fp32_routes):
    import numpy as np
    import openvino as ov
    import torch

    from vit_edge import runtimes
    from vit_edge.data import load_images
    from vit_edge.sources import load_model

    out, manifest = fp32_routes["default"]
    export = manifest["export"]
    assert export["dynamic_batch"] is True
    assert export["parity"]["max_abs_error"] <= export["parity"]["tolerance"]
    parity = manifest["openvino"]["parity"]
    assert parity["inference_precision"] == "f32" and parity["max_abs_error_vs_torch"] <= parity["tolerance"]
    model = ov.Core().read_model(str(out / "model.xml"))
    assert model.inputs[0].get_partial_shape()[0].is_dynamic
    assert model.inputs[0].get_any_name() == "pixel_values" and model.outputs[0].get_any_name() == "logits"
    # The class-token tail: the last block's MLP runs on one token, the others' on all 65.
    assert export["class_token_tail"] is True and fp32_routes["onnx"][1]["export"].get("class_token_tail") is None
    fc2 = {op.get_friendly_name().split("/")[0]: op.get_output_partial_shape(0) for op in model.get_ordered_ops()
           if op.get_type_name() == "MatMul" and ".mlp.fc2" in op.get_friendly_name()}
    assert fc2[f"__module.inner.vit.layers.{DEPTH - 1}.mlp.fc2"][1] == 1
    assert fc2[f"__module.inner.vit.layers.{DEPTH - 2}.mlp.fc2"][1] == 1 + (64 // 8) ** 2
    # Beyond convert's own check: batches of 3 and 5 (neither compiled at load) against torch.
    runtime = runtimes.load(out, inference_precision="f32")
    batch, _ = next(load_images(str(IMAGENETTE / "val")).batches(runtime.preprocess, batch_size=8))
    with torch.no_grad():
        reference = load_model(manifest["source"]["spec"]).module(torch.from_numpy(batch)).numpy()
    got = np.concatenate([runtime.run(batch[:3]), runtime.run(batch[3:])])
    assert float(np.abs(got - reference).max()) <= parity["tolerance"]


def test_the_frontend_keeps_attention_fused_where_the_onnx_route_splits_it(fp32_routes):
    frontend, onnx_route = _ops(fp32_routes["default"][0]), _ops(fp32_routes["onnx"][0])
    assert frontend["ScaledDotProductAttention"] == DEPTH
    assert frontend["Softmax"] == 0 and frontend["IsNaN"] == 0
    # What the route avoids (item 2 of issue 18): the ONNX export's NaN guard keeps OpenVINO from fusing.
    assert onnx_route["ScaledDotProductAttention"] < DEPTH and onnx_route["IsNaN"] == DEPTH, onnx_route


def test_int8_by_the_frontend_agrees_with_fp32_at_least_as_well_as_the_onnx_route(hf_dir, tmp_path):
    """A few hundred validation photos, one recipe: the frontend's INT8 (attention fused, NNCF quantizing the
    fused op's query and key inputs) stays within a point of the ONNX route's agreement with FP32."""
    frontend = _convert(hf_dir, tmp_path / "pytorch", "int8", route="pytorch")
    onnx_route = _convert(hf_dir, tmp_path / "onnx", "int8", route="onnx")
    assert frontend["openvino"]["route"] == "pytorch" and onnx_route["openvino"]["route"] == "onnx"
    assert _ops(tmp_path / "pytorch")["ScaledDotProductAttention"] == DEPTH
    ours, theirs = frontend["validation"], onnx_route["validation"]
    assert ours["samples"] == theirs["samples"] == 300
    assert ours["top1_agreement"] >= theirs["top1_agreement"] - 0.01, (ours, theirs)
    assert ours["mean_cosine"] >= theirs["mean_cosine"] - 0.002, (ours, theirs)
    assert ours["top1_agreement"] >= 0.97


def test_an_onnx_input_takes_the_onnx_route_and_says_why(demo_onnx, tmp_path):
    from vit_edge.convert import convert
    from vit_edge.errors import ExportError

    convert(str(demo_onnx / "model.onnx"), target="openvino", precision="fp32", out=tmp_path / "auto")
    record = json.loads((tmp_path / "auto" / "manifest.json").read_text())["openvino"]
    assert record["route"] == "onnx" and record["route_reason"] == "the model is an ONNX file"
    with pytest.raises(ExportError, match="--route pytorch cannot be used: the model is an ONNX file"):
        convert(str(demo_onnx / "model.onnx"), target="openvino", precision="fp32", out=tmp_path / "forced",
                route="pytorch")


def test_auto_keeps_the_onnx_route_for_other_models_and_debug_refuses_a_frontend_ir(tmp_path):
    """Outside Hugging Face both routes give the same graph, so auto keeps the ONNX route, whose node names debug
    matches; an IR forced through the frontend is refused by debug in one line that names the fix."""
    from conftest import assert_one_line_error, run_cli

    assert run_cli("convert", "--target", "openvino", "--out", tmp_path / "auto").code == 0
    record = json.loads((tmp_path / "auto" / "manifest.json").read_text())["openvino"]
    assert record["route"] == "onnx" and "same graph" in record["route_reason"], record
    forced = tmp_path / "forced"
    result = run_cli("convert", "--target", "openvino", "--route", "pytorch", "--out", forced)
    assert result.code == 0, result.err
    assert json.loads((forced / "manifest.json").read_text())["openvino"]["route"] == "pytorch"
    result = run_cli("debug", forced, "--data", "digits:test", "--limit", "16")
    assert_one_line_error(result, 2, "PyTorch frontend", "--route onnx")
