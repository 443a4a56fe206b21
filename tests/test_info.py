"""vit-edge info: a short summary of what an artifact is, read from its manifest; --json for the whole manifest."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import assert_one_line_error, run_cli
from vit_edge import runtimes


def _summary(artifact) -> dict:
    result = run_cli("info", artifact)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert all(": " in line for line in lines), result.out  # one "key: value" line each
    keys = [line.split(": ", 1)[0] for line in lines]
    assert len(keys) == len(set(keys)), result.out
    return dict(line.split(": ", 1) for line in lines)


def _disk(out) -> str:
    """What the size line should say: every file of the folder (the artifact's files and its manifest)."""
    files = [p for p in out.iterdir() if p.is_file()]
    return f"{sum(p.stat().st_size for p in files) / 1000:.1f} kB on disk ({len(files)} files)"


@pytest.fixture(scope="module")
def validated_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("info") / "demo-openvino-int8"
    result = run_cli("convert", "--target", "openvino", "--precision", "int8", "--calib", "digits:train",
                     "--calib-size", "64", "--validate", "digits:test", "--validate-limit", "60", "--out", out)
    assert result.code == 0, result.err
    return out


@pytest.mark.slow
def test_summary_of_a_validated_int8_artifact(validated_int8):
    out = validated_int8
    m = json.loads((out / "manifest.json").read_text())
    info = _summary(out)
    assert 10 <= len(info) <= 15, info
    assert info["artifact"] == str(out)
    assert info["model"] == "digits-vit (demo, checkpoint vit_edge/demo/digits_vit.safetensors)"
    assert info["target"] == "openvino int8"
    with runtimes.load(out) as runtime:  # the runs line names what loading the folder really runs
        assert runtime.target == "openvino" and runtime.name == out.name
        assert info["runs"].startswith(f"model.xml + model.bin in OpenVINO {m['versions']['openvino']}")
    assert info["input"] == "pixel_values [N,3,32,32] float32"
    assert info["output"] == "logits [N,10] float32"
    assert info["preprocess"] == ("squash to 32x32 (aspect ratio not kept), bilinear, RGB; mean 0.5,0.5,0.5 "
                                  "std 0.5,0.5,0.5 (0..1 scale)")
    assert info["task"] == "classify, 10 labels"
    assert info["size"] == _disk(out)
    v = m["validation"]
    assert v["passed"] and v["samples"] == 60
    drop = v["top1_drop"]["value"]
    assert info["validation"] == (f"passed on 60 images of digits:test: top-1 agreement "
                                  f"{100 * v['top1_agreement']:.2f}%, top-1 drop {100 * drop:.2f} pts")
    q = m["quantization"]
    chosen = q["recipe_search"]["chosen"]
    assert f"preset {q['preset']}" in info["quantization"] and f"recipe {chosen} (best of 5)" in info["quantization"]
    assert f"{100 * q['int8_mac_share']:.1f}% of MACs in INT8" in info["quantization"]
    # SmoothQuant: the recipe that won says whether it ran (+sq with NNCF's alpha, +no-sq off)
    assert ("SmoothQuant alpha default" if chosen.split("+")[1] == "sq" else "SmoothQuant off") in info["quantization"]
    assert info["calibration"] == "64 images of digits:train"
    assert info["created"].startswith(m["created"]) and f"vit-edge {m['versions']['vit-edge']}" in info["created"]


@pytest.mark.slow
def test_reports_name_the_artifact_by_its_folder(validated_int8, tmp_path):
    """Every folder holds a model.xml: validate's table names the folder, given the folder or the file."""
    for candidate in (validated_int8, validated_int8 / "model.xml"):
        report = tmp_path / "r.json"
        result = run_cli("validate", candidate, "--data", "digits:test", "--limit", "20", "--json", report)
        assert result.code == 0, result.err
        assert json.loads(report.read_text())["candidate"]["name"] == "demo-openvino-int8"
        model_row = next(line for line in result.out.splitlines() if line.startswith("model "))
        assert model_row.split()[-1] == "demo-openvino-int8", result.out
        assert "model.xml" not in result.out
    # convert's own report.json stays independent of where --out is (same inputs, same bytes)
    assert json.loads((validated_int8 / "report.json").read_text())["candidate"]["name"] == "model.xml"


def test_json_is_the_whole_manifest(demo_onnx):
    result = run_cli("info", demo_onnx, "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out) == json.loads((demo_onnx / "manifest.json").read_text())


def test_a_file_in_the_artifact_reads_as_its_folder(demo_onnx):
    assert _summary(demo_onnx / "model.onnx") == _summary(demo_onnx)


def test_an_unvalidated_fp32_artifact(demo_onnx):
    info = _summary(demo_onnx)
    assert info["target"] == "onnx fp32"
    assert info["runs"] == "model.onnx in ONNX Runtime"
    assert info["input"] == "pixel_values [N,3,32,32] float32"
    assert info["validation"] == f"not recorded (check it: vit-edge validate {demo_onnx} --data DATA)"
    assert "quantization" not in info and "calibration" not in info
    assert info["size"] == _disk(demo_onnx)
    parity = json.loads((demo_onnx / "manifest.json").read_text())["export"]["parity"]
    assert info["export"] == (f"dynamo, opset 18; parity vs torch: max abs error {parity['max_abs_error']:.1e} "
                              f"on {parity['images']} images")


def test_a_partial_manifest_loses_lines_not_the_command(demo_onnx, tmp_path):
    """The fields an older or hand-written manifest may lack (source, export, files, validation, labels)."""
    out = tmp_path / "partial"
    out.mkdir()
    shutil.copy(demo_onnx / "model.onnx", out / "model.onnx")
    (out / "manifest.json").write_text(json.dumps({
        "target": "onnx", "artifact": "model.onnx", "seed": 0, "labels": None,
        "preprocess": {"input_size": [28, 28], "channels": 1, "mean": [0.5], "std": [0.5],
                       "interpolation": "bilinear", "crop_pct": 0.875}}))
    info = _summary(out)
    assert info["model"] == "not recorded"
    assert info["input"] == "[?,1,28,28] float32 (batch axis not recorded)"
    # floor(28 / 0.875) = 32: the shorter side vit_edge.preprocess resizes to before the centre crop
    assert info["preprocess"] == ("resize the shorter side to 32, centre-crop 28x28 (crop_pct 0.875), bilinear, "
                                  "grayscale; mean 0.5 std 0.5 (0..1 scale)")
    assert info["task"] == "classify, no label names (class indices)"
    assert info["size"] == _disk(out)  # no files record: every file in the folder
    assert info["validation"].startswith("not recorded")
    assert not {"output", "export", "created", "quantization"} & set(info)
    (out / "model.onnx").unlink()
    assert _summary(out)["runs"] == "model.onnx in ONNX Runtime; model.onnx is missing"


@pytest.mark.slow
def test_tensorrt_folder_says_whether_an_engine_runs(tmp_path):
    out = tmp_path / "demo-trt"
    result = run_cli("convert", "--target", "tensorrt", "--out", out)
    assert result.code == 0, result.err
    engine = json.loads((out / "manifest.json").read_text())["tensorrt"]["engine"]
    info = _summary(out)
    with runtimes.load(out, warn_no_engine=False) as runtime:
        if engine is None:  # no TensorRT here: the TensorRT-ready ONNX runs in ONNX Runtime
            assert runtime.name == "demo-trt (no engine)"
            assert info["runs"] == ("model.onnx in ONNX Runtime (the TensorRT-ready ONNX; no engine built yet: "
                                    f"build it on the target with vit-edge build-engine {out})")
        else:
            assert runtime.target == "tensorrt"
            assert info["runs"].startswith(f"model.engine in TensorRT {engine['tensorrt_version']} (")
            assert f"batch {engine['profile']['min'][0]}..{engine['profile']['max'][0]}" in info["runs"]


@pytest.mark.parametrize("make,needle", [(lambda d: d / "nothere", "no such artifact"),
                                         (lambda d: d, "no manifest.json")])
def test_not_an_artifact_is_a_one_line_error(tmp_path, make, needle):
    assert_one_line_error(run_cli("info", make(tmp_path)), 2, needle)
