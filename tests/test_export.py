"""FP32 ONNX export of every kind of model source, checked against torch on real images."""

from __future__ import annotations

import json
from importlib.metadata import version

import numpy as np
import onnx
import pytest
import torch

from conftest import MODELS, run_cli
from vit_edge import runtimes
from vit_edge.convert import convert
from vit_edge.data import load_images
from vit_edge.sources import load_model

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not


def _real_batch(loaded, samples, n=12):
    """n real photos (or digits for digit models) preprocessed the model's way."""
    spec = "digits:test" if loaded.preprocess.input_size == (32, 32) else str(samples)
    batch, _ = next(load_images(spec).batches(loaded.preprocess, batch_size=n))
    return batch


def _assert_onnx_matches_torch(out, loaded, samples):
    batch = _real_batch(loaded, samples)
    with torch.no_grad():
        reference = loaded.module(torch.from_numpy(batch)).numpy()
    candidate = runtimes.load(out).run(batch)
    assert float(np.abs(reference).max()) > 1e-3, "logits are all ~0: the parity check would be vacuous"
    assert np.array_equal(candidate.argmax(1), reference.argmax(1))
    assert float(np.abs(candidate - reference).max()) <= 1e-4
    model = onnx.load(str(out / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    return model


def test_demo_model_exports_with_metadata_and_manifest(tmp_path, samples):
    result = run_cli("convert", "--out", tmp_path / "demo")
    assert result.code == 0, result.err
    out = tmp_path / "demo"
    loaded = load_model(None)
    model = _assert_onnx_matches_torch(out, loaded, samples)
    manifest = json.loads((out / "manifest.json").read_text())
    meta = json.loads({p.key: p.value for p in model.metadata_props}["vit_edge"])
    for record in (manifest, meta):
        assert record["preprocess"]["input_size"] == [32, 32]
        assert record["labels"] == [str(d) for d in range(10)]
        assert record["source"]["spec"] == "demo"
        assert len(record["source"]["checkpoint_sha256"]) == 64
        assert record["versions"]["torch"] == version("torch")
        assert "onnxruntime" in record["versions"]
    assert manifest["export"]["parity"]["max_abs_error"] <= 1e-4
    assert manifest["files"]["model.onnx"]["bytes"] == (out / "model.onnx").stat().st_size
    assert not list(tmp_path.glob(".*"))  # no temporary directories left behind


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_distilled_patch16_224"])
def test_timm_models_export(tmp_path, samples, name):
    out = tmp_path / name
    result = convert(f"timm:{name}", out=out, parity_data=str(samples))
    assert any("RANDOMLY INITIALISED" in m for m in result.warnings)
    loaded = load_model(f"timm:{name}")  # same seed -> the same random weights as the artifact
    _assert_onnx_matches_torch(out, loaded, samples)
    assert result.manifest.preprocess.crop_pct == pytest.approx(loaded.preprocess.crop_pct)
    assert len(result.manifest.labels) == 1000


def test_hugging_face_vit_from_directory(tmp_path, samples):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=96, num_hidden_layers=3, num_attention_heads=3, intermediate_size=192,
                       image_size=224, patch_size=16, num_labels=5,
                       id2label={i: f"class{i}" for i in range(5)}, label2id={f"class{i}": i for i in range(5)})
    hf_dir = tmp_path / "hf-vit"
    ViTForImageClassification(config).save_pretrained(hf_dir)
    (hf_dir / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"height": 224, "width": 224}, "resample": 2, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_rescale": True}))
    out = tmp_path / "out"
    result = run_cli("convert", f"hf:{hf_dir}", "--out", out)
    assert result.code == 0, result.err
    loaded = load_model(f"hf:{hf_dir}")
    assert loaded.labels == [f"class{i}" for i in range(5)]
    assert loaded.preprocess.resize_mode == "squash"
    _assert_onnx_matches_torch(out, loaded, samples)


def test_torchvision_vit_b_16_with_checkpoint(tmp_path, samples):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None)
    torch.nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    checkpoint = tmp_path / "vit_b_16.pth"
    torch.save(model.state_dict(), checkpoint)
    out = tmp_path / "out"
    result = run_cli("convert", "torchvision:vit_b_16", "--checkpoint", checkpoint, "--out", out)
    assert result.code == 0, result.err
    loaded = load_model("torchvision:vit_b_16", checkpoint=checkpoint)
    assert loaded.preprocess.crop_pct == pytest.approx(224 / 256)
    assert loaded.labels[0] == "tench"
    _assert_onnx_matches_torch(out, loaded, samples)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["checkpoint_sha256"] == __import__("hashlib").sha256(checkpoint.read_bytes()).hexdigest()


def test_custom_transformer_encoder_vit_from_python_file(tmp_path, samples):
    spec = f"{MODELS / 'encoder_vit.py'}:make_model"
    checkpoint = MODELS / "encoder_vit_digits.safetensors"
    out = tmp_path / "out"
    result = run_cli("convert", spec, "--checkpoint", checkpoint, "--out", out)
    assert result.code == 0, result.err
    loaded = load_model(spec, checkpoint=checkpoint)
    assert loaded.preprocess.input_size == (32, 32)  # read from the module's pretrained_cfg
    _assert_onnx_matches_torch(out, loaded, samples)
    # and on real photos too (resized to its 32x32 input)
    batch, _ = next(load_images(samples).batches(loaded.preprocess, batch_size=16))
    with torch.no_grad():
        ref = loaded.module(torch.from_numpy(batch)).numpy()
    assert float(np.abs(runtimes.load(out).run(batch) - ref).max()) <= 1e-4


def test_existing_onnx_skips_export_and_keeps_metadata(tmp_path, demo_onnx):
    out = tmp_path / "again"
    result = run_cli("convert", demo_onnx / "model.onnx", "--out", out)
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["preprocess"]["input_size"] == [32, 32]
    assert manifest["labels"][3] == "3"
    assert manifest["source"]["kind"] == "onnx"


def test_labels_file_and_preprocessing_overrides_reach_the_artifact(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"digit {d}" for d in range(10)) + "\n")
    out = tmp_path / "out"
    result = run_cli("convert", "--labels", labels, "--mean", "0.4,0.4,0.4", "--std", "0.6,0.6,0.6",
                     "--interpolation", "bicubic", "--out", out, "--tolerance", "1e-4")
    assert result.code == 0, result.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels"][9] == "digit 9"
    assert manifest["preprocess"]["mean"] == [0.4, 0.4, 0.4]
    assert manifest["preprocess"]["interpolation"] == "bicubic"
    from vit_edge import runtimes

    assert runtimes.load(out).topk(load_images("digits:test").items[:1], k=1)[0][0][0].startswith("digit ")
    info = run_cli("info", out, "--json")
    assert info.code == 0 and json.loads(info.out)["preprocess"]["std"] == [0.6, 0.6, 0.6]
    assert "std 0.6,0.6,0.6" in run_cli("info", out).out
