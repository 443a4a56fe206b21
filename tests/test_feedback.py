"""What convert and validate print while they run, outside a terminal (a CI log, a pipe): one timed line per
phase, the notes telling the truth, and none of the libraries' own chatter unless -v."""

from __future__ import annotations

import json
import re

import pytest

from conftest import MODELS, run_cli, run_cli_subprocess

PHASE = re.compile(r"^\[\s*(\d+\.\d)s\] (.+)$")

# What the libraries print on their own, found by converting models that trigger it (vit_edge/quiet.py).
LIBRARY_LINES = ("Skipping constant folding", "always_classified", "INFO:nncf", "Loading weights", "[transformers]",
                 "symbolic_shapes", "def forward(", "UserWarning")


def _phases(err: str) -> list:
    """(seconds, message) of each phase line, in order."""
    return [(float(m.group(1)), m.group(2)) for m in map(PHASE.match, err.splitlines()) if m]


@pytest.mark.slow  # an INT8 OpenVINO convert with five recipes and a validation: about 25 s on 2 cores
def test_a_captured_int8_convert_prints_each_phase_once_and_no_library_lines(tmp_path):
    out = tmp_path / "out"
    # A subprocess with stderr piped is exactly a CI log: stderr is no terminal, so no bars.
    result = run_cli_subprocess("convert", "demo", "--target", "openvino", "--precision", "int8", "--calib",
                                "digits:train", "--calib-size", "32", "--out", out)
    assert result.code == 0, result.err
    samples = json.loads((out / "report.json").read_text())["samples"]
    candidates = json.loads((out / "manifest.json").read_text())["quantization"]["recipe_search"]["candidates"]
    second_stage, = (c["recipe"] for c in candidates if c["activation_range"] == "mean-minmax")
    phases = _phases(result.err)
    assert [message for _, message in phases] == [
        "loading demo",
        "exporting to ONNX (opset 18)",
        "converting the ONNX to OpenVINO IR",
        "loading 32 calibration images from digits:train",
        "collecting calibration statistics for 8 INT8 recipes",  # both stages' recipes, in shared passes
        "quantizing: recipe 1 of 5 (mixed+sq+minmax)",
        "quantizing: recipe 2 of 5 (mixed+no-sq+minmax)",
        "quantizing: recipe 3 of 5 (performance+sq+minmax)",
        "quantizing: recipe 4 of 5 (performance+no-sq+minmax)",
        f"quantizing: recipe 5 of 5 ({second_stage})",  # the best of those with mean ranges
        f"validating on {samples} images of digits:train (held out from calibration)",
    ], result.err
    seconds = [s for s, _ in phases]
    assert seconds == sorted(seconds) and seconds[-1] > seconds[0], seconds  # time since the command started
    assert "\r" not in result.err, "a progress bar redrawn in place leaked into the log"
    for line in LIBRARY_LINES:
        assert line not in result.err + result.out, (line, result.err)
    # The note counts what validation really ran on: the report's sample count.
    assert f"note: validated on {samples} labelled images of digits:train" in result.err
    lines = result.out.splitlines()
    parity = next(i for i, line in enumerate(lines) if line.startswith("export parity vs torch:"))
    assert lines[-1] == f"wrote {out}/model.xml (openvino int8)" and parity < len(lines) - 1, result.out
    # "openvino/int8 (bf16)" is explained once, on CPUs where the plugin picks bf16 (this one: AVX-512).
    ran = json.loads((out / "report.json").read_text())["candidate"].get("inference_precision")
    explained = [line for line in lines if line.startswith(f"({ran}): OpenVINO ran the layers INT8 leaves")]
    assert len(explained) == (0 if ran in (None, "f32") else 1), result.out


def _hf_dir(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("imagenette_hf", MODELS / "imagenette_hf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write(tmp_path / "hf")


@pytest.mark.slow  # six small exports in fresh processes (about 40 s on 2 cores)
@pytest.mark.parametrize("model, chatter", [
    ("{models}/noisy.py:split_constant", "Skipping constant folding for op Split"),  # onnxscript's optimizer
    ("{models}/noisy.py:data_dependent_branch", "def forward("),  # torch.export's partial graph, then TorchScript
    ("hf:{hf}", "Loading weights"),  # transformers' bar, drawn even outside a terminal
], ids=["onnxscript", "torch.export", "transformers"])
def test_library_chatter_shows_only_with_verbose(tmp_path, model, chatter):
    spec = model.format(models=MODELS, hf=_hf_dir(tmp_path) if "{hf}" in model else "")
    quiet = run_cli_subprocess("convert", spec, "--target", "onnx", "--out", tmp_path / "quiet")
    assert quiet.code == 0, quiet.err
    assert [m for _, m in _phases(quiet.err)] == [f"loading {spec}", "exporting to ONNX (opset 18)"], quiet.err
    for line in LIBRARY_LINES:
        assert line not in quiet.err + quiet.out, (line, quiet.err)
    # The same convert with -v shows it: the model really triggers what the quiet run kept out.
    verbose = run_cli_subprocess("-v", "convert", spec, "--target", "onnx", "--out", tmp_path / "verbose")
    assert verbose.code == 0, verbose.err
    assert chatter in verbose.err, verbose.err


BARE_MODEL = """
import torch

def make_model():  # no pretrained_cfg: vit-edge has to assume its preprocessing
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 8, stride=8), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten(), torch.nn.Linear(8, 4))
"""


@pytest.mark.parametrize("flags, assumed, not_assumed", [
    (["--input-size", "32", "--mean", "0.5", "--std", "0.5"], None, None),
    (["--input-size", "32"], "assuming ImageNet mean, ImageNet std, bicubic, crop 0.875 "
                             "(set --mean/--std/--interpolation/--crop-pct", "224x224"),
    (["--mean", "0.5", "--std", "0.5"], "assuming 224x224, bicubic, crop 0.875 "
                                        "(set --input-size/--interpolation/--crop-pct", "ImageNet"),
], ids=["all-given", "size-given", "stats-given"])
def test_the_no_preprocessing_note_names_only_what_was_assumed(tmp_path, flags, assumed, not_assumed):
    (tmp_path / "bare.py").write_text(BARE_MODEL)
    result = run_cli("convert", tmp_path / "bare.py:make_model", "--target", "onnx", *flags, "--out", tmp_path / "o")
    assert result.code == 0, result.err
    notes = [line for line in result.err_lines if "declares no preprocessing" in line]
    if assumed is None:  # size, mean and std all given: nothing that decides the numbers was assumed
        assert notes == [], result.err
        return
    assert len(notes) == 1, result.err  # said once: as the WARNING when loading, not again as an end note
    assert assumed in notes[0] and not_assumed not in notes[0], result.err


def test_the_random_weights_warning_is_said_once(tmp_path):
    result = run_cli("convert", f"{MODELS}/encoder_vit.py:make_model",
                     "--target", "onnx", "--out", tmp_path / "o")
    assert result.code == 0, result.err
    said = [line for line in result.err_lines if "RANDOM unless" in line]
    assert len(said) == 1 and said[0].startswith("WARNING"), result.err


def test_the_validated_on_note_counts_the_images_really_validated(demo_onnx, tmp_path):
    """--validate-limit samples the held-out images: the note says how many were validated, not how many were
    held out (it used to say 1,341 above a report of 50 samples)."""
    out = tmp_path / "out"
    result = run_cli("convert", demo_onnx / "model.onnx", "--target", "onnx", "--precision", "int8", "--calib",
                     "digits:train", "--calib-size", "32", "--preset", "performance", "--smooth-quant-alpha", "-1",
                     "--validate-limit", "50", "--out", out)
    assert result.code == 0, result.err
    assert json.loads((out / "report.json").read_text())["samples"] == 50
    notes = [line for line in result.err_lines if line.startswith("note: validated on")]
    assert len(notes) == 1 and notes[0].startswith("note: validated on 50 labelled images of digits:train"), \
        result.err
    assert "samples 50 " in result.out


def test_validate_prints_its_phase_line(demo_onnx):
    """validate outside a terminal: one line before the pass over the data (no bar, no per-batch lines)."""
    result = run_cli_subprocess("validate", demo_onnx, "--data", "digits:test", "--limit", "40")
    assert result.code == 0, result.err
    assert [m for _, m in _phases(result.err)] == ["validating on 40 images of digits:test"], result.err
    assert "\r" not in result.err
