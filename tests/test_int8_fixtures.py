"""INT8 on really trained, imperfect models (tests/models/imagenette_vit.py, FP32 top-1 well below 100%):
the default recipe search must land close to FP32 on every target, a planted outlier channel must be
recovered, and the accuracy budget must work with unlabelled data and fail honestly when unreachable.

The digits demo cannot show any of this: every INT8 variant agrees 100% with FP32 there.
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import MODELS, assert_one_line_error, run_cli
from shared_data import shared_data

pytestmark = pytest.mark.slow  # converts trained models on real photos

IMAGENETTE = shared_data("imagenette-64")
FIXTURES = {"vit": f"{MODELS}/imagenette_vit.py:build", "encoder": f"{MODELS}/imagenette_vit.py:build_encoder"}


def _convert(out, model, target, *extra):
    result = run_cli("convert", model, "--target", target, "--precision", "int8", "--calib", IMAGENETTE / "train",
                     "--validate", IMAGENETTE / "val", "--out", out, *extra)
    return result, (json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else None)


# What default INT8 must reach on all 3,925 validation photos: agreement >= 99.0% and top-1 within 0.2 points.
# The ReLU twin needs the global min/max activation ranges for it (with NNCF's default, the mean of each
# image's min/max, it landed at 98.85-99.01% and 0.25-0.33 points on every target, whatever the recipe or
# 1,000 calibration images).
GOAL = {"vit": (0.99, 0.2), "encoder": (0.99, 0.2)}


@pytest.mark.parametrize("target", ["openvino", "onnx", "tensorrt"])
@pytest.mark.parametrize("fixture", sorted(FIXTURES))
def test_default_int8_is_close_to_fp32_on_a_trained_model(fixture, target, tmp_path):
    """Top-1 agreement and top-1 drop within GOAL, >= 90% of GEMM MACs in INT8, all 3,925 validation photos,
    default options."""
    result, manifest = _convert(tmp_path / "int8", FIXTURES[fixture], target)
    assert result.code == 0, result.err
    report = manifest["validation"]
    assert report["samples"] == 3925
    ref, cand = report["reference"]["top1"], report["candidate"]["top1"]
    assert 0.4 < ref < 0.95  # trained, and far from perfect: drift can show
    min_agreement, max_drop = GOAL[fixture]
    assert report["top1_agreement"] >= min_agreement, report
    assert abs(100 * (ref - cand)) <= max_drop, (ref, cand)
    q = manifest["quantization"]
    assert q["int8_mac_share"] >= 0.9, q["int8_mac_share"]
    # preset x SmoothQuant with global min/max ranges, then the best of those with NNCF's mean ranges
    assert len(q["recipe_search"]["candidates"]) == (3 if target == "tensorrt" else 5)
    if target == "tensorrt":  # only the recipes TensorRT can run: symmetric, signed
        assert {c["preset"] for c in q["recipe_search"]["candidates"]} == {"performance"}


def _planted(tmp_path):
    """The ReLU twin with one hidden channel of one MLP scaled x1000 before the ReLU and /1000 after it:
    the same function, but a per-tensor activation scale ruined by one channel."""
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(MODELS / "imagenette_encoder_vit.safetensors"))
    fc1, fc2 = "encoder.layers.3.linear1", "encoder.layers.3.linear2"
    channel = int(state[fc2 + ".weight"].abs().sum(0).argmax())
    state[fc1 + ".weight"][channel] *= 1000
    state[fc1 + ".bias"][channel] *= 1000
    state[fc2 + ".weight"][:, channel] /= 1000
    path = tmp_path / "planted.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert torch.isfinite(state[fc1 + ".weight"]).all()
    return path


def test_a_planted_outlier_is_recovered_by_default_and_named(tmp_path):
    weights = _planted(tmp_path)
    spec = f"{MODELS}/imagenette_vit.py:ImagenetteEncoderViT"
    off, off_manifest = _convert(tmp_path / "sq-off", spec, "onnx", "--checkpoint", weights,
                                 "--smooth-quant-alpha", "-1", "--min-agreement", "0", "--max-top1-drop", "100")
    assert off.code == 0, off.err
    ruined = off_manifest["validation"]["top1_agreement"]
    default, manifest = _convert(tmp_path / "default", spec, "onnx", "--checkpoint", weights)
    assert default.code == 0, default.err
    # Recovered to the twin's own level (measured 99.24% from 93.99%; the unplanted twin reaches 99.31-99.39%).
    assert manifest["validation"]["top1_agreement"] >= GOAL["encoder"][0] > ruined, (ruined, manifest["validation"])
    assert "+sq+" in manifest["quantization"]["recipe_search"]["chosen"]  # SmoothQuant is what recovers it
    assert "note: INT8 recipe: " in default.err and "+sq+" in default.err


@pytest.mark.parametrize("target", ["openvino", "onnx", "tensorrt"])
def test_a_budget_on_unlabelled_data_returns_the_planted_operation_to_float(target, tmp_path):
    """The planted model without SmoothQuant sits at ~94% agreement; a 98% budget on unlabelled photos must
    be met by returning the planted block's fc2 to float, named by its torch module."""
    weights = _planted(tmp_path)
    unlabelled = _unlabelled(tmp_path)
    out = tmp_path / "budget"
    result = run_cli("convert", f"{MODELS}/imagenette_vit.py:ImagenetteEncoderViT", "--checkpoint", weights,
                     "--target", target, "--precision", "int8", "--calib", IMAGENETTE / "train",
                     "--validate", unlabelled, "--budget", "--min-agreement", "0.98", "--smooth-quant-alpha", "-1",
                     "--out", out)
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    budget = manifest["quantization"]["budget"]
    assert budget["before"]["top1_agreement"] < 0.97  # the outlier really hurt
    assert budget["reached"]["top1_agreement"] >= 0.98 and "top1_drop_points" not in budget["reached"]
    assert budget["int8_mac_share"] >= 0.5
    assert manifest["validation"]["top1_agreement"] >= 0.98
    assert budget["returned_to_float"][0]["module"] == "encoder.layers.3.linear2", budget
    assert "INT8 budget (agreement >= 0.98) met" in result.err and "encoder.layers.3.linear2" in result.err
    if target == "tensorrt":
        import onnx

        from vit_edge.convert.tensorrt import checks

        assert checks.check_tensorrt_ready(onnx.load(str(out / "model.onnx")), "int8") == []


def _unlabelled(tmp_path):
    """Every fourth validation photo (982) in a flat folder: no labels."""
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for i, path in enumerate(sorted((IMAGENETTE / "val").rglob("*.jpg"))[::4]):
        shutil.copy(path, unlabelled / f"{i:05d}.jpg")
    return unlabelled


@pytest.mark.parametrize("target", ["openvino", "onnx", "tensorrt"])
def test_a_99_5_percent_budget_on_unlabelled_photos_is_met_on_every_target(target, tmp_path):
    """The ReLU twin's default INT8 agrees 99.3-99.5% with FP32 on these 982 photos; a 99.5% budget returns a
    few operations wholly (activation and weight) to float, and the gate that follows, on the same photos
    through the saved artifact, passes it. Measured: 3 operations, 91.8% of GEMM MACs left INT8 (ONNX)."""
    out = tmp_path / "budget"
    result = run_cli("convert", FIXTURES["encoder"], "--target", target, "--precision", "int8",
                     "--calib", IMAGENETTE / "train", "--validate", _unlabelled(tmp_path), "--budget",
                     "--min-agreement", "0.995", "--out", out)
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    budget = manifest["quantization"]["budget"]
    assert budget["images"] == 982 and "top1_drop_points" not in budget["reached"]
    assert budget["reached"]["top1_agreement"] >= 0.995 and manifest["validation"]["top1_agreement"] >= 0.995
    assert budget["int8_mac_share"] >= 0.75 and manifest["quantization"]["int8_mac_share"] == budget["int8_mac_share"]
    returned = [r["module"] for r in budget["returned_to_float"]]
    assert returned and all(m is None or m.startswith(("encoder.layers.", "patch_embed", "head")) for m in returned)
    assert f"returned {len(returned)} operation(s) to float" in result.err
    if target == "tensorrt":
        import onnx

        from vit_edge.convert.tensorrt import checks

        assert checks.check_tensorrt_ready(onnx.load(str(out / "model.onnx")), "int8") == []


def test_an_unreachable_budget_exits_1_with_what_was_reached(tmp_path):
    out = tmp_path / "impossible"
    result = run_cli("convert", FIXTURES["vit"], "--target", "onnx", "--precision", "int8", "--calib",
                     IMAGENETTE / "train", "--validate", IMAGENETTE / "val",
                     "--budget", "--min-agreement", "1.0", "--max-top1-drop", "0", "--out", out)
    assert_one_line_error(result, 1, "budget cannot be met", "best reached", "agreement")
    assert not out.exists()
