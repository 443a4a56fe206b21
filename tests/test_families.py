"""One representative per ViT family through FP32 ONNX with parity on real photos; features, other input
sizes and a dynamic height x width; the clear errors where a family cannot do what is asked.

The full set (every model, OpenVINO, INT8) is ``python scripts/compat_matrix.py`` -> docs/COMPATIBILITY.md;
these are the CI slice of the same registry (tests/families.py, ``ci=True``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import families
from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not

PHOTOS = 8
CI_CASES = [c for c in families.CASES if c.ci]


@pytest.fixture(scope="session")
def photos(samples, tmp_path_factory) -> Path:
    """A few real photos (some grayscale among them) in their own folder."""
    folder = tmp_path_factory.mktemp("photos")
    chosen = sorted(p for p in samples.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:PHOTOS]
    for photo in chosen:
        (folder / photo.name).symlink_to(photo)
    return folder


@pytest.fixture(scope="session")
def hf_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hf")


def _load(case, hf_root):
    from vit_edge.sources import load_model

    kwargs = case.convert_kwargs(ci=True)
    return load_model(families.resolve_spec(case, hf_root), task=case.task, dynamic_size=case.dynamic_size,
                      model_kwargs=kwargs.get("model_kwargs"), **kwargs.get("preprocess", {}))


def _parity(out: Path, loaded, photos: Path, size=None):
    from vit_edge import runtimes
    from vit_edge.data import load_images
    from vit_edge.validate import compare

    pre = loaded.preprocess if size is None else loaded.preprocess.replace(input_size=tuple(size))
    candidate = runtimes.load(out, preprocess=pre)
    reference = runtimes.reference(loaded, preprocess=pre)
    report = compare(candidate, reference, load_images(photos), batch_size=PHOTOS, progress=False)
    return report, reference.predict(sorted(photos.iterdir()))


@pytest.mark.parametrize("case", CI_CASES, ids=[c.id for c in CI_CASES])
def test_family_fp32_onnx_parity(case, photos, hf_root, tmp_path):
    """The exported ONNX matches torch on real photos: relative max error <= 1e-4 and every top-1 the same
    (features: cosine >= 0.9999), at every size the artifact must run at."""
    from vit_edge.convert import convert
    from vit_edge.convert.stages.export import other_sizes

    loaded = _load(case, hf_root)
    result = convert(loaded, target="onnx", out=tmp_path / "onnx", dynamic_size=case.dynamic_size,
                     parity_data=str(photos))
    export = result.manifest.export
    assert export.exporter in ("dynamo", "torchscript")
    assert result.manifest.task == case.task
    extra = other_sizes(loaded.preprocess, loaded.module) if case.dynamic_size else []
    sizes = [loaded.preprocess.input_size] + extra
    for size in sizes:
        report, reference_out = _parity(result.out, loaded, photos, size)
        assert report.samples == PHOTOS
        # The random-weight model must tell the photos apart, and the export error must be far below how much
        # its output moves from photo to photo, or the parity check would prove nothing.
        spread = float(np.abs(reference_out - reference_out.mean(0)).max())
        assert report.max_abs_error < 0.01 * spread, (report.max_abs_error, spread)
        assert report.max_rel_error <= 1e-4, (size, report.summary())
        if case.task == "features":
            assert report.mean_cosine >= 0.9999, report.summary()
        else:
            assert report.top1_agreement == 1.0, report.summary()
    if case.input_size:
        import onnx

        dims = onnx.load(str(result.out / "model.onnx")).graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims[2:]] == list(case.input_size)
    if case.dynamic_size:
        assert [o.input_size for o in export.parity_other_sizes] == [list(s) for s in sizes[1:]]
        assert result.manifest.source.build["dynamic_size"] is True


def test_distilled_deit_exports_the_mean_of_its_two_heads():
    """timm's distilled DeiT averages its class and distillation heads at eval time; so must the export."""
    import torch

    from vit_edge.sources import load_model

    loaded = load_model("timm:deit_tiny_distilled_patch16_224")
    model = loaded.module
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens = model.forward_features(x)
        expected = (model.head(tokens[:, 0]) + model.head_dist(tokens[:, 1])) / 2
        out = model(x)
    assert not torch.allclose(model.head(tokens[:, 0]), model.head_dist(tokens[:, 1]))  # heads differ
    torch.testing.assert_close(out, expected)


def test_timm_model_is_rebuilt_at_the_input_size():
    """--input-size rebuilds a timm ViT (position embedding resampled), not just the preprocessing."""
    from vit_edge.sources import load_model

    loaded = load_model("timm:vit_tiny_patch16_224", input_size=(288, 288))
    assert tuple(loaded.module.patch_embed.img_size) == (288, 288)
    assert loaded.module.pos_embed.shape[1] == 1 + (288 // 16) ** 2
    assert loaded.preprocess.input_size == (288, 288)
    assert loaded.source["build"] == {"input_size": [288, 288]}


def test_timm_checkpoint_is_resampled_to_the_input_size(tmp_path):
    """A checkpoint saved at 224 loads into the model built at 160 (timm's own filter resamples pos_embed)."""
    import timm
    import torch
    from safetensors.torch import save_file

    from vit_edge.sources import load_model

    trained = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    save_file(trained.state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(Exception):  # without resampling the shapes could not match
        timm.create_model("vit_tiny_patch16_224", img_size=160, num_classes=10).load_state_dict(trained.state_dict())
    loaded = load_model("timm:vit_tiny_patch16_224", checkpoint=tmp_path / "w.safetensors", input_size=(160, 160),
                        model_kwargs={"num_classes": 10})
    assert loaded.module.pos_embed.shape[1] == 1 + 10 * 10
    torch.testing.assert_close(loaded.module.cls_token, trained.cls_token)


def test_input_size_the_model_cannot_run_at_is_a_one_line_error(tmp_path):
    """timm builds most families at any size (Swin pads its windows); one smaller than a patch cannot work."""
    result = run_cli("convert", "timm:vit_tiny_patch16_224", "--input-size", "8", "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "vit_tiny_patch16_224", "8x8")
    assert not (tmp_path / "out").exists()


def test_feature_extractor_asked_to_classify_says_use_features(hf_root, tmp_path):
    directory = families.hf_dir("clip-vision-tiny", hf_root)
    result = run_cli("convert", f"hf:{directory}", "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "CLIPVisionModelWithProjection", "--task features")


def test_features_are_what_each_api_calls_features(hf_root):
    """timm: forward_head(pre_logits=True); HF CLIP: image_embeds (projected); HF DINOv2: CLS after LayerNorm."""
    import torch
    import transformers

    from vit_edge.sources import load_model

    x = torch.randn(1, 3, 224, 224)
    timm_loaded = load_model("timm:vit_tiny_patch16_224", task="features")
    inner = timm_loaded.module.model
    with torch.no_grad():
        torch.testing.assert_close(timm_loaded.module(x), inner.forward_head(inner.forward_features(x),
                                                                              pre_logits=True))
    assert timm_loaded.module(x).shape == (1, 192) and timm_loaded.labels is None

    clip_dir = families.hf_dir("clip-vision-tiny", hf_root)
    clip = transformers.CLIPVisionModelWithProjection.from_pretrained(clip_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(load_model(f"hf:{clip_dir}", task="features").module(x),
                                   clip(pixel_values=x).image_embeds)

    dino_dir = families.hf_dir("dinov2", hf_root)
    dino = transformers.Dinov2Model.from_pretrained(dino_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(load_model(f"hf:{dino_dir}", task="features").module(x),
                                   dino(pixel_values=x).last_hidden_state[:, 0])


def test_dynamic_size_where_the_graph_fixes_it_is_a_clear_error(tmp_path):
    """LeViT's attention biases are built for one resolution: --dynamic-size must refuse, in one line."""
    result = run_cli("convert", "timm:levit_128s", "--dynamic-size", "--out", tmp_path / "levit")
    assert_one_line_error(result, 2, "levit_128s")
    assert not (tmp_path / "levit").exists()


def test_validate_rebuilds_the_reference_at_the_artifact_size(photos, tmp_path):
    """The manifest records how the model was built, so `vit-edge validate` compares like with like."""
    out = tmp_path / "vit160"
    assert run_cli("convert", "timm:vit_tiny_patch16_224", "--input-size", "160", "--out", out).code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["build"]["input_size"] == [160, 160]
    result = run_cli("validate", out, "--data", photos, "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["top1_agreement"] == 1.0 and report["max_rel_error"] < 1e-4
    assert np.isclose(report["mean_cosine"], 1.0, atol=1e-6)
