"""vit-edge validate: parity reports, thresholds and exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import MODELS, run_cli
from vit_edge.demo import WEIGHTS

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not


@pytest.fixture(autouse=True)
def _private_reference_cache(tmp_path, monkeypatch):
    """validate caches reference outputs; tests keep theirs out of the user's ~/.cache."""
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(tmp_path / "cache"))


def test_demo_onnx_passes_against_its_torch_reference(demo_onnx, tmp_path):
    report = tmp_path / "report.json"
    result = run_cli("validate", demo_onnx, "--data", "digits:test", "--json", report,
                     "--markdown", tmp_path / "report.md", "--junit", tmp_path / "junit.xml")
    assert result.code == 0, result.err
    data = json.loads(report.read_text())
    assert data["passed"] is True
    assert data["samples"] == 360
    assert data["top1_agreement"] == 1.0
    assert data["reference"]["top1"] >= 0.97  # the demo model's held-out accuracy
    assert data["candidate"]["top1"] == data["reference"]["top1"]
    assert data["reference"]["target"] == "torch" and data["candidate"]["target"] == "onnx"
    assert data["max_abs_error"] <= 1e-4 and data["mean_cosine"] > 0.99999
    assert data["top1_drop"]["value"] == 0 and data["top1_drop"]["mcnemar_p"] == 1.0
    assert data["flip_count"] == 0 and data["flips"] == [] and data["agreement_ci95"][1] == 1.0
    assert data["reference"]["source"] == "computed" and data["reference"]["runtime"] == "torch"
    assert "PASSED" in (tmp_path / "report.md").read_text()
    suite = ET.parse(tmp_path / "junit.xml").getroot()
    assert suite.get("tests") == "1" and suite.get("failures") == "0"
    assert "PASSED" in result.out


def test_candidate_with_different_weights_fails_with_exit_1(tmp_path, demo_onnx):
    torch.manual_seed(1)
    state = load_file(str(WEIGHTS))
    perturbed = {k: v + 0.5 * v.std() * torch.randn_like(v) if v.numel() > 1 else v for k, v in state.items()}
    checkpoint = tmp_path / "perturbed.safetensors"
    save_file(perturbed, str(checkpoint))
    out = tmp_path / "perturbed"
    assert run_cli("convert", f"{MODELS / 'demo_arch.py'}:make_model", "--checkpoint", checkpoint,
                   "--out", out).code == 0
    report = tmp_path / "r.json"
    result = run_cli("validate", out, "--reference", "demo", "--data", "digits:test", "--json", report,
                     "--junit", tmp_path / "junit.xml")
    assert result.code == 1, result.err
    data = json.loads(report.read_text())
    assert data["passed"] is False and data["top1_agreement"] < 0.98
    assert any("agreement" in f for f in data["failures"])
    assert ET.parse(tmp_path / "junit.xml").getroot().get("failures") == "1"
    assert [line for line in result.err.splitlines() if line.startswith("error:")][0].startswith("error: parity")


def test_limit_and_thresholds_are_applied(demo_onnx, tmp_path):
    report = tmp_path / "r.json"
    result = run_cli("validate", demo_onnx, "--data", "digits:test", "--limit", "50", "--min-agreement", "1.0",
                     "--max-top1-drop", "0", "--json", report)
    assert result.code == 0, result.err
    data = json.loads(report.read_text())
    assert data["samples"] == 50
    assert data["thresholds"]["min_agreement"] == 1.0


def test_class_folders_are_matched_to_the_model_labels(demo_onnx, tmp_path):
    # folders named after labels, in an order that differs from sorted order of indices
    from vit_edge.data import load_images

    images = load_images("digits:test")
    for i in range(40):
        folder = tmp_path / "data" / images.class_names[images.labels[i]]
        folder.mkdir(parents=True, exist_ok=True)
        images.items[i].save(folder / f"{i}.png")
    (tmp_path / "data" / "3").mkdir(exist_ok=True)
    (tmp_path / "data" / "3" / "notes.txt").write_text("not an image")
    report = tmp_path / "r.json"
    result = run_cli("validate", demo_onnx, "--data", tmp_path / "data", "--json", report)
    assert result.code == 0, result.err
    data = json.loads(report.read_text())
    assert data["samples"] == 40 and data["skipped_files"] == 1
    assert data["candidate"]["top1"] >= 0.95  # labels matched, not shuffled


def test_digits_split_written_as_a_folder_validates_like_the_builtin_spec(demo_onnx, tmp_path):
    folder = tmp_path / "digits-test"
    result = run_cli("data", "digits:test", "--out", folder)
    assert result.code == 0, result.err
    assert sorted(p.name for p in folder.iterdir()) == [str(d) for d in range(10)]
    assert sum(1 for _ in folder.rglob("*.png")) == 360
    report = tmp_path / "r.json"
    assert run_cli("validate", demo_onnx, "--data", folder, "--json", report).code == 0
    data = json.loads(report.read_text())
    builtin = tmp_path / "b.json"
    assert run_cli("validate", demo_onnx, "--data", "digits:test", "--json", builtin).code == 0
    assert data["candidate"]["top1"] == json.loads(builtin.read_text())["candidate"]["top1"]
