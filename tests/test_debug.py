"""``vit-edge debug``: where an INT8/FP16 artifact drifts from FP32, which operation is to blame, what fixes it.

The acceptance cases plant the faults debug must find: one MLP channel of the trained ReLU encoder scaled
x1000 before the ReLU and /1000 after it (SmoothQuant off, on all three INT8 targets), a residual stream
that overflows FP16, and LayerNorm inputs forced into INT8 on a model whose residual stream carries
massive-activation channels (as real ViTs do). The unit tests at the end run in milliseconds.
"""

from __future__ import annotations

import json
import math
import shlex
import shutil
import textwrap

import numpy as np
import pytest

from conftest import MODELS, assert_one_line_error, run_cli

ENCODER = f"{MODELS}/encoder_vit.py:make_model"
WEIGHTS = MODELS / "encoder_vit_digits.safetensors"
PLANTED_MODULE, PLANTED_NODE = "encoder.layers.1.linear2", "node_MatMul_182"


# ---------------------------------------------------------------- fixtures (each converts once per module)


def _edit_weights(path, edit):
    from safetensors.torch import load_file, save_file

    state = load_file(str(WEIGHTS))
    edit(state)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _plant(state):
    """One hidden channel of block 1's MLP x1000 before the ReLU, /1000 after: the same function, but a
    per-tensor INT8 scale for linear2's input ruined by that channel."""
    fc1, fc2 = "encoder.layers.1.linear1", "encoder.layers.1.linear2"
    channel = int(state[fc2 + ".weight"].abs().sum(0).argmax())
    state[fc1 + ".weight"][channel] *= 1000
    state[fc1 + ".bias"][channel] *= 1000
    state[fc2 + ".weight"][:, channel] /= 1000


def _massive_activations(state):
    """Two residual-stream channels at +-60 from the patch embedding on, ignored by every LayerNorm's gain:
    the massive activations of real ViTs, harmless in float, ruinous for a per-tensor INT8 LayerNorm input."""
    for channel, offset in ((3, 60.0), (17, -60.0)):
        state["patch_embed.bias"][channel] += offset
        for name in state:
            if name.endswith(("norm1.weight", "norm2.weight")) or name == "norm.weight":
                state[name][channel] = 0.0


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("debug")


@pytest.fixture(scope="module")
def planted(work):
    weights = _edit_weights(work / "planted.safetensors", _plant)
    built = {}

    def get(target):
        if target not in built:
            out = work / f"planted-{target}"
            result = run_cli("convert", ENCODER, "--checkpoint", weights, "--target", target, "--precision", "int8",
                             "--calib", "digits:train", "--smooth-quant-alpha", "-1", "--min-agreement", "0",
                             "--out", out)
            assert result.code == 0, result.err
            built[target] = out
        return built[target]

    return get


def _debug(candidate, tmp_path, *extra):
    path = tmp_path / f"{candidate.name}.json"
    spec = json.loads((candidate / "manifest.json").read_text())["source"].get("spec") or ""
    named = ("--reference", spec) if ".py:" in spec else ()  # a model's code runs only when the user names it
    result = run_cli("debug", candidate, "--data", "digits:test", "--json", path, *named, *extra)
    assert result.code == 0, result.err
    return result, json.loads(path.read_text())


# ---------------------------------------------------------------- (a) the planted outlier channel


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnx", "openvino", "tensorrt"])
def test_the_planted_channel_is_the_first_culprit(planted, target, tmp_path):
    result, report = _debug(planted(target), tmp_path, "--markdown", tmp_path / "r.md", "--plot", tmp_path / "r.png")
    first = report["culprits"][0]
    assert first["module"] == PLANTED_MODULE and first["stands_out"], report["culprits"][:3]
    assert first["name"].split("/")[0] == PLANTED_NODE
    assert first["recovered_cosine"] > report["ranked_on"]["cosine"]
    assert not any(c["stands_out"] for c in report["culprits"][1:])
    # the largest jump is at linear2: at its quantized input, or at its output where the tap reads the input
    # before its quantizer (TensorRT, global min/max ranges: the planted channel's range crushes the others)
    assert report["largest_jump"]["module"] == PLANTED_MODULE
    assert report["largest_jump"]["kind"] in ("gemm_input", "gemm_output")
    assert report["first_divergence"]["position"] <= report["largest_jump"]["position"]
    assert report["suggestion"]["action"] == "ignore" and report["suggestion"]["ignore"] == [first["name"]]
    assert report["suggestion"]["reached"]["cosine"] > report["output"]["cosine"]
    # points in graph order, named after torch modules
    assert [p["position"] for p in report["points"]] == list(range(len(report["points"])))
    assert {f"encoder.layers.{i}.linear2" for i in range(4)} <= {p["module"] for p in report["points"]}
    assert f"fix: vit-edge convert {ENCODER}" in result.out and f"--ignore {first['name']}" in result.out
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert PLANTED_MODULE in (tmp_path / "r.md").read_text()
    if target == "openvino":  # run at the precision the artifact runs and at f32
        assert set(report["candidate"]["runs"]) == {"as_run", "f32"}
        assert all("f32" in p for p in report["points"])


@pytest.mark.slow
def test_the_printed_fix_passes_the_gate(planted, tmp_path):
    result, report = _debug(planted("onnx"), tmp_path)
    line = next(line for line in result.out.splitlines() if line.startswith("fix: vit-edge convert "))
    args = shlex.split(line[len("fix: "):])[2:]
    args[args.index("--out") + 1] = str(tmp_path / "fixed")
    fixed = run_cli("convert", *args)
    assert fixed.code == 0, fixed.err
    validation = json.loads((tmp_path / "fixed" / "manifest.json").read_text())["validation"]
    assert validation["data"] == "digits:test" and validation["passed"]
    assert validation["mean_cosine"] >= 0.99 and validation["top1_agreement"] >= 0.98
    assert validation["mean_cosine"] > report["output"]["cosine"]  # better than the artifact debugged
    manifest = json.loads((tmp_path / "fixed" / "manifest.json").read_text())
    assert manifest["quantization"]["ignored_names"] == [PLANTED_NODE]


# ---------------------------------------------------------------- (b) FP16 overflow


OVERFLOW_MODEL = '''
import torch
from torch import nn


class Overflow(nn.Module):
    pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                      "interpolation": "bilinear", "crop_pct": 1.0}
    labels = [str(d) for d in range(10)]

    def __init__(self, dim=32):
        super().__init__()
        torch.manual_seed(0)
        self.patch_embed = nn.Conv2d(3, dim, 4, 4)
        self.fc = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)
        with torch.no_grad():
            self.patch_embed.weight[:8] = 900.0  # 8 channels near 43000 on the digits' dark background
            self.patch_embed.bias[:8] = 0.0
            self.fc.weight.copy_(torch.eye(dim) + 0.01 * torch.randn(dim, dim))
            self.fc.bias.zero_()

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = x + self.fc(x)  # the residual stream: 43000 + 43000 is beyond FP16's 65504
        return self.head(self.norm(x).mean(1))


def make_model():
    return Overflow()
'''


@pytest.mark.slow
def test_fp16_overflow_names_the_residual_and_counts_it(tmp_path):
    (tmp_path / "overflow_vit.py").write_text(textwrap.dedent(OVERFLOW_MODEL))
    out = tmp_path / "fp16"
    result = run_cli("convert", f"{tmp_path}/overflow_vit.py:make_model", "--target", "onnx", "--precision", "fp16",
                     "--out", out)
    assert result.code in (0, 1), result.err
    result, report = _debug(out, tmp_path)
    first = report["first_divergence"]
    assert first["kind"] == "residual" and first["node"].startswith("node_add"), first
    assert first["module"] == "after fc"
    assert first["snr_db"] is None and first["non_finite"] > 0
    assert abs(first["non_finite"] - first["ref_beyond_fp16"]) <= 0.01 * first["ref_beyond_fp16"]
    before = [p for p in report["points"] if p["position"] < first["position"]]
    assert before and all(p["non_finite"] == 0 for p in before)  # nothing overflowed earlier
    assert report["suggestion"]["action"] == "keep_in_fp32"
    assert "FP16 overflows at residual add after fc" in result.out and f"{first['non_finite']} non-finite" in result.out


# ---------------------------------------------------------------- (c) LayerNorm forced into INT8


def _force_layernorm_int8(src, dst, images: int = 32):
    """Put a per-tensor INT8 Q/DQ (scale from the calibration max, as a quantizer would) before every
    LayerNormalization of an INT8 ONNX artifact: what NNCF's transformer recipe never does."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from vit_edge.artifact import read_manifest
    from vit_edge.data import load_images

    shutil.copytree(src, dst)
    model = onnx.load(str(dst / "model.onnx"))
    norms = [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    probe = onnx.load(str(dst / "model.onnx"))
    probe.graph.output.extend(helper.make_tensor_value_info(n.input[0], TensorProto.FLOAT, None) for n in norms)
    batch = np.concatenate([b for b, _ in load_images("digits:train").batches(read_manifest(dst).preprocess,
                                                                             limit=images)])
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    peaks = [float(np.abs(v).max()) for v in session.run([n.input[0] for n in norms], {"pixel_values": batch})]
    for node, peak in zip(norms, peaks):
        base = f"{node.name}_forced"
        model.graph.initializer.extend([numpy_helper.from_array(np.array(peak / 127, np.float32), base + "_scale"),
                                        numpy_helper.from_array(np.array(0, np.int8), base + "_zero")])
        at = list(model.graph.node).index(node)
        model.graph.node.insert(at, helper.make_node("DequantizeLinear", [base + "_q", base + "_scale", base + "_zero"],
                                                     [base + "_dq"], name=base + "_DQ"))
        model.graph.node.insert(at, helper.make_node("QuantizeLinear", [node.input[0], base + "_scale", base + "_zero"],
                                                     [base + "_q"], name=base + "_Q"))
        node.input[0] = base + "_dq"
    onnx.save(model, str(dst / "model.onnx"))
    return len(norms)


@pytest.mark.slow
def test_layernorm_forced_into_int8_tops_the_report(work, tmp_path):
    weights = _edit_weights(work / "massive.safetensors", _massive_activations)
    out = work / "massive-int8"
    result = run_cli("convert", ENCODER, "--checkpoint", weights, "--target", "onnx", "--precision", "int8",
                     "--calib", "digits:train", "--out", out)
    assert result.code == 0, result.err
    assert _force_layernorm_int8(out, tmp_path / "forced") == 9
    result, report = _debug(tmp_path / "forced", tmp_path)
    norms = {f"encoder.layers.{i}.norm{j}" for i in range(4) for j in (1, 2)} | {"norm"}
    culprit = report["culprits"][0]
    assert culprit["module"] in norms and culprit["stands_out"] and culprit["name"].startswith("node_layer_norm")
    assert report["first_divergence"]["module"] in norms
    worst = sorted((p for p in report["points"] if p["injects"]), key=lambda p: -p["excess_db"])[:8]
    assert all(p["module"] in norms for p in worst), [p["label"] for p in worst]
    top = [line for line in result.out.split("worst points")[1].splitlines()[2:7]]
    assert all(".norm" in line or line.lstrip().startswith("norm ") for line in top), top


# ---------------------------------------------------------------- a healthy artifact


@pytest.mark.slow
def test_a_healthy_artifact_has_no_culprit(work, tmp_path):
    out = work / "demo-int8"
    result = run_cli("convert", "--target", "onnx", "--precision", "int8", "--calib", "digits:train", "--out", out)
    assert result.code == 0, result.err
    result, report = _debug(out, tmp_path)
    assert report["first_divergence"] is None
    assert report["culprits"] and not any(c["stands_out"] for c in report["culprits"])
    assert report["suggestion"] == {"action": "none", "command": None, "ignore": [], "reached": None,
                                    "text": report["suggestion"]["text"]}
    assert "no culprit above the measured noise" in result.out
    assert report["output"]["passes"]
    # the noise floor is an INT8 one: tens of dB, and no injecting point is far below it
    assert 25 < report["noise_floor_db"] < 60
    # errors: the demo INT8 as the reference of itself is no FP32 reference
    bad = run_cli("debug", out, "--reference", out, "--data", "digits:test")
    assert_one_line_error(bad, 2, "not fp32")


# ---------------------------------------------------------------- errors


def test_a_path_that_is_no_artifact_is_one_line(tmp_path):
    assert_one_line_error(run_cli("debug", tmp_path / "missing", "--data", "digits:test"), 2, "no such artifact")
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(run_cli("debug", tmp_path / "notes.txt", "--data", "digits:test"), 2, "not an artifact")
    assert_one_line_error(run_cli("debug", tmp_path, "--data", "digits:test"), 2, "manifest.json")


def _tiny_artifact(folder):
    """An artifact folder debug can open (a manifest and a small ONNX), made in milliseconds."""
    import onnx

    from vit_edge.artifact import Manifest
    from vit_edge.preprocess import PreprocessConfig

    folder.mkdir()
    onnx.save(_qdq_graph(), str(folder / "model.onnx"))
    Manifest(target="onnx", artifact="model.onnx", precision="int8", preprocess=PreprocessConfig()).write(folder)
    return folder


def test_data_that_does_not_decode_is_one_line(tmp_path):
    artifact = _tiny_artifact(tmp_path / "artifact")
    junk = tmp_path / "junk"
    junk.mkdir()
    for name in ("a.jpg", "b.png"):
        (junk / name).write_text("not an image")
    assert_one_line_error(run_cli("debug", artifact, "--data", junk), 2, "no decodable images")
    assert_one_line_error(run_cli("debug", artifact, "--data", tmp_path / "nowhere"), 2, "no such file")


def test_a_plot_must_be_a_png(tmp_path):
    result = run_cli("debug", tmp_path / "x", "--data", "digits:test", "--plot", tmp_path / "p.jpg")
    assert_one_line_error(result, 2, "png")


@pytest.mark.slow
def test_a_reference_it_was_not_made_from_shares_no_points(planted, demo_onnx):
    result = run_cli("debug", planted("onnx"), "--reference", demo_onnx, "--data", "digits:test")
    assert_one_line_error(result, 2, "comparison points", "not converted from this model")


# ---------------------------------------------------------------- units (no conversion)


def _point(snr, injects=True):
    return {"snr_db": snr, "injects": injects}


def test_analyse_finds_the_first_jump_beyond_the_floor():
    from vit_edge.debug import measure

    snrs = [45, 38, 36, 39, 37, 38, 36, 37, 35, 8, 9, 9]
    points = [_point(s) for s in snrs]
    upstream = {i: [i - 1] for i in range(1, len(points))}
    result = measure.analyse(points, upstream)
    assert 38 < result["noise_floor_db"] < 48 and result["first_divergence"] == 9
    assert points[9]["drop_db"] == pytest.approx(27) and points[9]["local_snr_db"] < 9
    assert points[10]["local_snr_db"] == measure.CAP_DB  # only carries the damage


def test_analyse_ignores_points_that_only_carry_noise_and_flags_non_finite_values():
    from vit_edge.debug import measure

    points = [_point(40), _point(39), _point(20, injects=False), _point(38), _point(None), _point(None)]
    upstream = {1: [0], 2: [1], 3: [2], 4: [3], 5: [4]}
    result = measure.analyse(points, upstream)
    assert result["first_divergence"] == 4 and not measure.diverges(points[2], result["noise_floor_db"])
    assert points[5]["inherited_non_finite"] and not measure.diverges(points[5], result["noise_floor_db"])


def test_the_accumulator_measures_snr_cosine_and_fp16_range():
    from vit_edge.debug.measure import Accumulator

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 100)).astype(np.float32)
    noise = 0.01 * rng.standard_normal((4, 100)).astype(np.float32)
    acc = Accumulator()
    acc.add(ref + noise, ref)
    m = acc.metrics()
    assert m["snr_db"] == pytest.approx(10 * math.log10((ref ** 2).sum() / (noise ** 2).sum()), abs=1e-3)
    assert m["cosine"] > 0.999 and m["non_finite"] == 0
    big = Accumulator()
    big.add(np.array([np.inf, 1.0, 70000.0], np.float32), np.array([70000.0, 1.0, 70000.0], np.float32))
    m = big.metrics()
    assert m["snr_db"] is None and m["non_finite"] == 1 and m["beyond_fp16"] == 1 and m["ref_beyond_fp16"] == 2


def _qdq_graph():
    """x -> Q/DQ -> Transpose -> MatMul(W), and x -> Q/DQ -> MatMul(W) directly."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"], name="dq"),
             helper.make_node("Transpose", ["xd"], ["xt"], name="t", perm=[1, 0]),
             helper.make_node("MatMul", ["xt", "w"], ["a"], name="through"),
             helper.make_node("MatMul", ["xd", "w"], ["b"], name="direct"),
             helper.make_node("Add", ["a", "b"], ["y"], name="sum")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 4])], inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_the_widened_bypass_keeps_the_budget_default():
    from vit_edge.convert.stages.budget_backends import LAYOUT_OPS, onnx_bypass, onnx_quantized_ops

    model = _qdq_graph()
    assert onnx_quantized_ops(model) == ["direct"]  # the budget's view: unchanged
    assert onnx_quantized_ops(model, through=LAYOUT_OPS) == ["through", "direct"]
    edited = onnx_bypass(model, ["through"], through=LAYOUT_OPS)
    assert [n.input[0] for n in edited.graph.node if n.name in ("t", "direct")] == ["x", "xd"]
    assert [n.input[0] for n in onnx_bypass(model, ["direct"]).graph.node if n.name == "direct"] == ["x"]


def test_onnx_taps_compute_a_quantized_input_from_the_tensor_before_it():
    from vit_edge.debug.points import PointSpec
    from vit_edge.debug.taps import OnnxTaps

    taps = OnnxTaps(_qdq_graph())
    spec = PointSpec("direct", "in", 0, "x", "gemm_input", 4, "MatMul")
    handle = taps.resolve(spec)
    assert handle == "xd#derived" and taps.upstream(handle, {"x", handle}) == {"x"}
    x = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    got = next(taps.run([handle, "xd"], [x]))
    assert np.array_equal(got[handle], got["xd"])  # the same values ONNX Runtime's Q/DQ gives


def test_the_fix_command_rebuilds_the_recorded_conversion():
    from vit_edge.artifact import Manifest
    from vit_edge.debug.sensitivity import convert_command

    manifest = Manifest.from_dict({
        "target": "openvino", "artifact": "model.xml", "precision": "int8", "seed": 3,
        "source": {"kind": "python", "spec": "/m/model.py:make", "checkpoint": "/m/w 1.safetensors",
                   "build": {"input_size": [64, 64]}},
        "quantization": {"calibration": {"source": "digits:train", "requested": 100}, "smooth_quant_alpha": -1.0,
                         "ignore": ["Softmax"], "bias_correction": "off"}})
    command = convert_command(manifest, ignore=["node_MatMul_7"], validate="digits:test", out="/o/fixed")
    assert shlex.split(command) == [
        "vit-edge", "convert", "/m/model.py:make", "--checkpoint", "/m/w 1.safetensors", "--target", "openvino",
        "--precision", "int8", "--input-size", "64,64", "--calib", "digits:train", "--calib-size", "100", "--seed", "3",
        "--smooth-quant-alpha", "-1", "--no-bias-correction", "--ignore", "Softmax", "--ignore", "node_MatMul_7",
        "--validate", "digits:test", "--out", "/o/fixed"]
    assert "--budget" in convert_command(manifest, use_budget=True)
