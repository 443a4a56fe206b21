"""TensorRT target: TensorRT-ready ONNX checked and run everywhere; engines built and run where TensorRT is.

Without TensorRT (CPU CI) the TensorRT-ready ONNX is the thing under test: TensorRT's static rules, and
its parity in ONNX Runtime as a numerical proxy. Tests marked ``tensorrt`` build and run real engines and
are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import MODELS, assert_one_line_error, run_cli
from onnx import TensorProto

from vit_edge.convert.tensorrt import checks as trt_checks
from vit_edge.convert.tensorrt.engine import unavailable_reason
from vit_edge.errors import ArtifactError

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not

NO_TENSORRT = unavailable_reason()
requires_tensorrt = pytest.mark.skipif(NO_TENSORRT is not None,
                                       reason=f"needs TensorRT >= 10 and a CUDA GPU: {NO_TENSORRT}")
ENCODER = f"{MODELS / 'encoder_vit.py'}:make_model"
ENCODER_WEIGHTS = MODELS / "encoder_vit_digits.safetensors"


def _convert(out: Path, *args) -> tuple:
    result = run_cli("convert", *args, "--target", "tensorrt", "--out", out)
    assert result.code == 0, result.err
    return result, out, json.loads((out / "manifest.json").read_text())


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory):
    return _convert(tmp_path_factory.mktemp("trt") / "demo-int8", "--precision", "int8", "--calib", "digits:train",
                    "--calib-size", "64", "--validate", "digits:test")


@pytest.fixture(scope="module")
def demo_fp16(tmp_path_factory):
    return _convert(tmp_path_factory.mktemp("trt") / "demo-fp16", "--precision", "fp16", "--validate", "digits:test",
                    "--min-agreement", "0.995")


@pytest.fixture(scope="module")
def encoder_int8(tmp_path_factory):
    return _convert(tmp_path_factory.mktemp("trt") / "encoder-int8", ENCODER, "--checkpoint", ENCODER_WEIGHTS,
                    "--precision", "int8", "--calib", "digits:train", "--calib-size", "64", "--validate", "digits:test")


def _copy_files(src: Path, out: Path, *names) -> Path:
    out.mkdir()
    for name in names:
        (out / name).write_bytes((src / name).read_bytes())
    return out


def _validate(out: Path, tmp_path: Path, *extra) -> tuple:
    report = tmp_path / "report.json"
    result = run_cli("validate", out, "--data", "digits:test", "--json", report, *extra)
    return result, json.loads(report.read_text())


def _qdq_zero_points(model) -> list:
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    return [inits[n.input[2]] for n in model.graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")]


# ------------------------------------------------------------------ INT8, everywhere


def test_int8_demo_writes_tensorrt_ready_onnx_manifest_and_trtexec_line(demo_int8):
    result, out, manifest = demo_int8
    assert manifest["target"] == "tensorrt" and manifest["precision"] == "int8"
    assert manifest["artifacts"]["onnx"] == "model.onnx"
    trt = manifest["tensorrt"]
    assert trt["settings"]["batch"] == [1, 8, 32] and trt["strongly_typed"] is True
    assert trt["trtexec"] == ("trtexec --onnx=model.onnx --saveEngine=model.engine --stronglyTyped "
                              "--minShapes=pixel_values:1x3x32x32 --optShapes=pixel_values:8x3x32x32 "
                              "--maxShapes=pixel_values:32x3x32x32")
    # Without DLA the strongly typed line builds on both majors (--stronglyTyped: required on 10, no-op on 11).
    assert trt["trtexec_by_version"] == {"10.x": trt["trtexec"], "11.x": trt["trtexec"]}
    assert trt["settings"]["trt_version"] == "10.3"  # checked against JetPack 6's parser by default
    if NO_TENSORRT:
        assert manifest["artifact"] == "model.onnx" and trt["engine"] is None
        assert not (out / "model.engine").exists()
        notes = [line for line in result.err_lines if line.startswith("note: no TensorRT engine")]
        assert len(notes) == 1 and f"vit-edge build-engine {out}" in notes[0], result.err
        assert result.err.count("no TensorRT engine") == 1, result.err  # not again from the validation run
    model = onnx.load(str(out / "model.onnx"))
    assert trt_checks.check_tensorrt_ready(model, "int8") == []
    assert trt_checks.opset_of(model) >= 17
    zps = _qdq_zero_points(model)
    assert len(zps) >= 60 and all(z.dtype == np.int8 and not z.any() for z in zps)
    assert manifest["quantization"]["qdq"]["int8_weight_gemms"] == "18/18"


def test_int8_demo_tensorrt_ready_onnx_meets_parity_in_onnx_runtime(demo_int8, tmp_path):
    _, out, manifest = demo_int8
    assert manifest["validation"]["passed"] and manifest["validation"]["samples"] == 360
    result, report = _validate(out, tmp_path)  # and the CLI on the finished directory
    assert result.code == 0, result.err
    assert "no TensorRT engine built yet" in result.err and f"build-engine {out}" in result.err or not NO_TENSORRT
    assert report["samples"] == 360
    assert report["top1_agreement"] >= 0.98
    assert 100 * (report["reference"]["top1"] - report["candidate"]["top1"]) <= 0.5
    assert report["candidate"]["precision"] == "int8"


def test_int8_relu_encoder_vit_gets_signed_qdq_and_parity(encoder_int8):
    _, out, manifest = encoder_int8
    # nn.TransformerEncoder's ReLU MLP: NNCF gives UINT8 after the 4 ReLUs; each Q and DQ is rewritten.
    assert manifest["quantization"]["uint8_qdq_rewritten_to_int8"] == 8
    model = onnx.load(str(out / "model.onnx"))
    assert trt_checks.check_tensorrt_ready(model, "int8") == []
    assert all(z.dtype == np.int8 and not z.any() for z in _qdq_zero_points(model))
    report = manifest["validation"]  # convert validated the TensorRT-ready ONNX on digits:test
    assert report["passed"] and report["samples"] == 360
    assert report["reference"]["top1"] >= 0.95  # the trained weights really loaded
    assert report["top1_agreement"] >= 0.98
    assert 100 * (report["reference"]["top1"] - report["candidate"]["top1"]) <= 0.5


def test_int8_timm_vit_small_on_real_photos(tmp_path, samples):
    _, out, manifest = _convert(tmp_path / "vits", "timm:vit_small_patch16_224", "--precision", "int8",
                                "--calib", samples, "--calib-size", "8", "--batch", "1:4:16", "--workspace", "2")
    assert "--minShapes=pixel_values:1x3x224x224" in manifest["tensorrt"]["trtexec"]
    assert "--maxShapes=pixel_values:16x3x224x224 --memPoolSize=workspace:2048" in manifest["tensorrt"]["trtexec"]
    model = onnx.load(str(out / "model.onnx"))
    assert trt_checks.check_tensorrt_ready(model, "int8") == []
    # 12 blocks x 4 + patch + head; without SmoothQuant NNCF leaves the 12 attention projections and the head
    # input in float (the recipe search keeps no-SmoothQuant for these random weights when it is closer to FP32)
    smooth = manifest["quantization"]["smooth_quant_alpha"] != -1.0
    assert manifest["quantization"]["qdq"]["int8_weight_gemms"] == ("50/50" if smooth else "37/50")


# ------------------------------------------------------------------ FP16, everywhere


def test_fp16_demo_keeps_fp32_islands_and_parity(demo_fp16):
    _, out, manifest = demo_fp16
    model = onnx.load(str(out / "model.onnx"))
    assert trt_checks.check_tensorrt_ready(model, "fp16") == []
    types = trt_checks._elem_types(model)
    islands = [n for n in model.graph.node if n.op_type in ("LayerNormalization", "Softmax")]
    assert len(islands) == 13  # 9 LayerNorms + 4 Softmax in the 4-layer demo
    assert all(types[n.input[0]] == TensorProto.FLOAT and types[n.output[0]] == TensorProto.FLOAT for n in islands)
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul"]
    assert matmuls and all(types[n.output[0]] == TensorProto.FLOAT16 for n in matmuls)
    report = manifest["validation"]  # convert validated it in ONNX Runtime on digits:test
    assert report["passed"] and report["samples"] == 360
    assert report["top1_agreement"] >= 0.995


def test_fp32_island_check_catches_a_plain_fp16_conversion(demo_onnx, tmp_path):
    from onnxconverter_common import float16

    plain = float16.convert_float_to_float16(onnx.load(str(demo_onnx / "model.onnx")), keep_io_types=True)
    problems = trt_checks.check_fp32_islands(plain)
    assert sum("LayerNormalization" in p for p in problems) == 9, problems
    assert sum("Softmax" in p for p in problems) == 4, problems


# ------------------------------------------------------------------ engine checks without TensorRT


RECORDED = {"file": "model.engine", "tensorrt_version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}


def test_engine_mismatch_is_a_pure_check():
    from vit_edge.runtimes.tensorrt import engine_mismatch

    orin = {"name": "Orin", "compute_capability": "8.7"}
    assert engine_mismatch(RECORDED, "10.3.0", orin) is None
    assert "TensorRT 10.3.0" in engine_mismatch(RECORDED, "11.1.0", orin)
    assert "TensorRT 11.1.0" in engine_mismatch(RECORDED, "11.1.0", orin)
    h100 = {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    message = engine_mismatch(RECORDED, "10.3.0", h100)
    assert "sm 8.7" in message and "sm 9.0" in message and "H100" in message


def test_foreign_engine_error_is_one_line_with_the_rebuild_command(caplog):
    from vit_edge.runtimes.tensorrt import check_engine

    with pytest.raises(ArtifactError) as info:
        check_engine(RECORDED, "10.8.0", {"name": "NVIDIA L4", "compute_capability": "8.9"}, "out/vit-trt")
    line = info.value.one_line()
    assert "\n" not in line and "stale or foreign TensorRT engine" in line
    assert line.endswith("rebuild it on this machine: vit-edge build-engine out/vit-trt")
    with caplog.at_level(logging.WARNING, logger="vit_edge"):  # same architecture, other board: allowed
        check_engine(RECORDED, "10.3.0", {"name": "Jetson AGX Orin", "compute_capability": "8.7"}, "d")
    assert "same architecture sm 8.7" in caplog.text


def test_engine_dir_on_a_machine_without_tensorrt_fails_in_one_line(demo_int8, tmp_path):
    _, src, manifest = demo_int8
    out = tmp_path / "engine-dir"
    out.mkdir()
    (out / "model.onnx").write_bytes((src / "model.onnx").read_bytes())
    (out / "model.engine").write_bytes(b"not really an engine")
    engine = {"sha256": hashlib.sha256(b"not really an engine").hexdigest(), "bytes": 20}  # passes the hash check
    manifest = {**manifest, "artifact": "model.engine", "artifacts": {"onnx": "model.onnx", "tensorrt": "model.engine"},
                "tensorrt": {**manifest["tensorrt"], "engine": RECORDED},
                "files": {**manifest["files"], "model.engine": engine}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("validate", out, "--data", "digits:test")
    if NO_TENSORRT:
        assert_one_line_error(result, 2, "tensorrt")
    else:
        assert_one_line_error(result, 2, "build-engine")


def test_trtexec_line_carries_workspace_dla_and_timing_cache():
    import os

    from vit_edge.convert.tensorrt import trtexec_command
    from vit_edge.preprocess import PreprocessConfig

    line = trtexec_command(PreprocessConfig(input_size=(224, 224)), input_name="pixel_values", batch=(4, 4, 4),
                           precision="fp16", workspace_gb=1.5, dla_core=1, timing_cache="cache dir/vit.cache")
    cache = os.path.abspath("cache dir/vit.cache")  # the line runs inside the --out folder
    assert line == ("trtexec --onnx=model.onnx --saveEngine=model.engine "
                    "--minShapes=pixel_values:4x3x224x224 --optShapes=pixel_values:4x3x224x224 "
                    "--maxShapes=pixel_values:4x3x224x224 --memPoolSize=workspace:1536 --useDLACore=1 "
                    f"--allowGPUFallback --fp16 '--timingCacheFile={cache}'")


def test_dla_convert_records_a_line_per_tensorrt_major(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, out, manifest = _convert(tmp_path / "dla", "--precision", "fp16", "--dla-core", "0", "--batch", "8",
                                "--timing-cache", "vit.cache")
    trt = manifest["tensorrt"]
    cache = str(tmp_path / "vit.cache")
    assert trt["settings"]["timing_cache"] == cache and trt["settings"]["dla_core"] == 0
    lines = trt["trtexec_by_version"]
    assert trt["trtexec"] == lines["10.x"]
    assert "--stronglyTyped" not in lines["10.x"] and lines["10.x"].endswith(
        f"--useDLACore=0 --allowGPUFallback --fp16 --timingCacheFile={cache}")
    assert "--stronglyTyped" in lines["11.x"] and "--fp16" not in lines["11.x"]
    assert "--minShapes=pixel_values:8x3x32x32" in lines["10.x"]
    assert "--maxShapes=pixel_values:8x3x32x32" in lines["10.x"]


@pytest.mark.skipif(NO_TENSORRT is None, reason="TensorRT is installed here: an engine can be built")
def test_require_engine_fails_fast_without_tensorrt(tmp_path):
    out = tmp_path / "never"
    result = run_cli("convert", "--target", "tensorrt", "--precision", "fp16", "--require-engine", "--out", out)
    assert_one_line_error(result, 2, "--require-engine", NO_TENSORRT)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.skipif(NO_TENSORRT is None, reason="TensorRT is installed here: an engine can be built")
def test_build_engine_without_tensorrt_fails_in_one_line(demo_fp16, demo_onnx):
    _, out, _ = demo_fp16
    before = (out / "manifest.json").read_text()
    assert_one_line_error(run_cli("build-engine", out), 2, "cannot build a TensorRT engine here")
    assert (out / "manifest.json").read_text() == before
    assert_one_line_error(run_cli("build-engine", demo_onnx), 2, "not a TensorRT one")


def test_int8_without_calibration_data_fails_before_exporting(tmp_path):
    result = run_cli("convert", "--target", "tensorrt", "--precision", "int8", "--out", tmp_path / "x")
    assert_one_line_error(result, 2, "--calib")
    assert not (tmp_path / "x").exists()


# ------------------------------------------------------------------ real TensorRT engines


@pytest.mark.tensorrt
@requires_tensorrt
@pytest.mark.parametrize("precision,agreement", [("fp16", 0.995), ("int8", 0.98)])
def test_engine_parity_and_dynamic_batch(precision, agreement, request, tmp_path):
    from vit_edge import runtimes
    from vit_edge.runtimes.tensorrt import TensorRTRuntime

    _, out, manifest = request.getfixturevalue(f"demo_{precision}")
    assert manifest["artifact"] == "model.engine" and (out / "model.engine").is_file()
    engine = manifest["tensorrt"]["engine"]
    assert engine["profile"]["max"][0] == 32 and engine["sha256"]
    runtime = runtimes.load(out)
    assert isinstance(runtime, TensorRTRuntime)
    result, report = _validate(out, tmp_path, "--min-agreement", str(agreement))
    assert result.code == 0, result.err
    assert report["top1_agreement"] >= agreement
    assert 100 * (report["reference"]["top1"] - report["candidate"]["top1"]) <= 0.5
    batch = np.random.default_rng(0).normal(size=(40, 3, 32, 32)).astype(np.float32)  # > profile max: split
    together = runtime.run(batch)
    one = runtime.run(batch[:1])
    assert together.shape == (40, 10)
    np.testing.assert_allclose(one, together[:1], atol=0.05)


@pytest.mark.tensorrt
@requires_tensorrt
def test_build_engine_command_rebuilds_with_a_new_profile(demo_fp16, tmp_path):
    _, src, _ = demo_fp16
    out = _copy_files(src, tmp_path / "copy", "model.onnx", "manifest.json")
    cache = tmp_path / "timing.cache"
    result = run_cli("build-engine", out, "--batch", "1:2:4", "--timing-cache", cache)
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    engine = manifest["tensorrt"]["engine"]
    assert engine["profile"]["max"][0] == 4 and cache.stat().st_size > 0
    from vit_edge.artifact import sha256_file

    assert engine["sha256"] == sha256_file(out / "model.engine") == manifest["files"]["model.engine"]["sha256"]


@pytest.mark.tensorrt
@requires_tensorrt
def test_runtime_refuses_an_engine_recorded_for_another_tensorrt(demo_fp16, tmp_path):
    from vit_edge import runtimes

    _, src, manifest = demo_fp16
    out = _copy_files(src, tmp_path / "stale", "model.onnx", "model.engine")
    manifest["tensorrt"]["engine"]["tensorrt_version"] = "9.9.9"
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="vit-edge build-engine"):
        runtimes.load(out)


# ------------------------------------------------------------------ what the engines really run (inspector)


def _layers(out: Path) -> list:
    from vit_edge import runtimes
    from vit_edge.convert.tensorrt.layers import inspect_engine

    manifest = json.loads((out / "manifest.json").read_text())
    with runtimes.load(out) as runtime:
        return inspect_engine(runtime.engine, runtime.input_name, manifest["tensorrt"]["engine"]["profile"]["opt"])


@pytest.mark.tensorrt
@requires_tensorrt
def test_int8_engine_runs_its_gemms_in_int8(demo_int8):
    from vit_edge.convert.tensorrt.layers import is_gemm

    _, out, manifest = demo_int8
    gemms = [layer for layer in _layers(out) if is_gemm(layer) and any(layer["inputs"])]
    if not gemms:
        pytest.skip("the inspector shows no GEMM with tensor formats (all fused into one Myelin node)")
    int8 = [layer["name"] for layer in gemms if "INT8" in layer["inputs"]]
    assert int8, [(layer["name"], layer["inputs"]) for layer in gemms]  # a strongly typed FP32 engine fails here
    assert manifest["tensorrt"]["engine"]["layers"]["int8_gemms"] >= 1


@pytest.mark.tensorrt
@requires_tensorrt
def test_fp16_engine_keeps_layernorm_and_softmax_in_fp32(demo_fp16):
    _, out, _ = demo_fp16
    layers = _layers(out)
    islands = [layer for layer in layers if any(op in layer["name"] for op in ("LayerNormalization", "Softmax"))
               and "+" not in layer["name"] and "ForeignNode" not in layer["name"] and any(layer["outputs"])]
    if not islands:
        pytest.skip("LayerNorm/Softmax are fused into other kernels: their own precision is not observable")
    assert all(set(layer["outputs"]) == {"FP32"} for layer in islands), [(x["name"], x["outputs"]) for x in islands]
    assert any("FP16" in layer["outputs"] for layer in layers)  # and the engine is FP16 elsewhere

