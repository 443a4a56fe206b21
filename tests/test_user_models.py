"""Real users' own models (issue 17): N-channel inputs read from the model, a model file that imports its
own package, and MODEL specs taking --checkpoint (and the other source options) wherever they are accepted.

The acceptance test trains two 1-channel ViTs on 28x28 grayscale digits for a few seconds (a user's own
``nn.Module`` importing ``vision.vit_model`` from beside its file, and a timm ViT with ``in_chans=1``), then
converts both from the CLI to ONNX, OpenVINO INT8 and the TensorRT target with one-value ``--mean/--std``
and validates them on grayscale PNGs from another working directory.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli

VIT_MODEL = '''
import torch
from torch import nn


class ViTEncoder(nn.Module):
    """A tiny ViT for 1-channel 28x28 digits: patch 7, 2 pre-norm blocks, CLS head."""

    def __init__(self, in_chans=1, size=28, patch=7, dim=32, depth=2, classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(in_chans, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, 2, dim * 2, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.head(self.norm(self.encoder(x))[:, 0])
'''
MY_MODEL = '''
from vision.vit_model import ViTEncoder


def build():
    return ViTEncoder()
'''
TIMM_MODEL = '''
import timm


def build():
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, in_chans=1, img_size=28, patch_size=7,
                             depth=2, embed_dim=64, num_heads=2, num_classes=10)
'''
GRAY = ("--input-size", "28", "--mean", "0.5", "--std", "0.5")  # one value each: the model has one channel


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A training repository's layout: ``my_model.py`` beside its ``vision`` package, a timm model file, and
    the digits as 28x28 grayscale PNGs in class folders (``data/train``, ``data/test``)."""
    from PIL import Image

    from vit_edge.data import load_images, write_image_folder

    root = tmp_path_factory.mktemp("repo")
    (root / "vision").mkdir()
    (root / "vision" / "__init__.py").write_text("")
    (root / "vision" / "vit_model.py").write_text(VIT_MODEL)
    (root / "my_model.py").write_text(MY_MODEL)
    (root / "tiny_timm.py").write_text(TIMM_MODEL)
    for split in ("train", "test"):
        images = load_images(f"digits:{split}")
        images.items = [im.resize((28, 28), Image.Resampling.BILINEAR) for im in images.items]
        write_image_folder(images, root / "data" / split)
    return root


# ---------------------------------------------------------------- a model file importing its own package


def test_a_model_file_imports_the_package_beside_it_from_any_directory(project, tmp_path, monkeypatch):
    from vit_edge.sources import load_model

    monkeypatch.chdir(tmp_path)  # not the repository: only the file's folder on sys.path makes this work
    first = load_model(f"{project}/my_model.py:build", input_size=(28, 28), mean=(0.5,), std=(0.5,))
    again = load_model(f"{project}/my_model.py:build", input_size=(28, 28), mean=(0.5,), std=(0.5,))
    assert str(project) not in sys.path  # only while importing: its packages cannot shadow later imports
    expected = {name: hashlib.sha256((project / name).read_bytes()).hexdigest()
                for name in ("vision/__init__.py", "vision/vit_model.py")}
    for loaded in (first, again):  # the second load finds vision in sys.modules, and still records it
        assert loaded.source["import_root"] == str(project)
        assert loaded.source["modules"] == expected
    assert first.preprocess.channels == 1 and first.preprocess.mean == (0.5,) and first.preprocess.std == (0.5,)
    assert any("RANDOM" in w for w in first.warnings)  # no --checkpoint: said, not silently run


def test_the_reference_cache_key_follows_the_modules_beside_the_file(project, tmp_path):
    import os

    from vit_edge.artifact import Manifest
    from vit_edge.reference_cache import reference_identity

    manifest = Manifest.from_dict({"target": "onnx", "artifact": "model.onnx", "source": {
        "kind": "python", "spec": f"{project}/my_model.py:build", "file": str(project / "my_model.py"),
        "import_root": str(project), "modules": {"vision/vit_model.py": "0" * 64}}})
    before = reference_identity(manifest)
    module = project / "vision" / "vit_model.py"
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert reference_identity(manifest) != before  # an edited ViTEncoder is another reference
    finally:
        os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns))


# ---------------------------------------------------------------- channels read from the model


def test_a_pretrained_cfg_with_one_channel_is_kept(tmp_path):
    from vit_edge.sources import load_model

    (tmp_path / "m.py").write_text(
        "import torch\n"
        "class M(torch.nn.Module):\n"
        "    pretrained_cfg = {'input_size': (1, 28, 28), 'mean': (0.1307,), 'std': (0.3081,)}\n"
        "    def __init__(self):\n"
        "        super().__init__(); self.conv = torch.nn.Conv2d(1, 4, 7, 7); self.fc = torch.nn.Linear(64, 10)\n"
        "    def forward(self, x):\n"
        "        return self.fc(self.conv(x).flatten(1))\n")
    loaded = load_model(f"{tmp_path}/m.py:M")
    pre = loaded.preprocess
    assert (pre.channels, pre.input_size, pre.mean, pre.std) == (1, (28, 28), (0.1307,), (0.3081,))


def test_timm_channels_builds_in_chans_and_is_recorded_for_the_rebuild():
    from vit_edge.sources import build_options, load_model

    loaded = load_model("timm:vit_tiny_patch16_224", channels=1, input_size=(32, 32), model_kwargs={"depth": 1})
    assert loaded.module.patch_embed.proj.in_channels == 1
    assert loaded.preprocess.channels == 1 and loaded.preprocess.mean == (0.5,)  # timm's RGB 0.5s averaged
    assert any("RGB mean/std" in w for w in loaded.warnings)
    assert loaded.source["build"]["channels"] == 1 and build_options(loaded.source)["channels"] == 1


def test_one_mean_value_serves_every_channel_and_a_wrong_count_is_refused():
    from vit_edge.errors import ModelSpecError
    from vit_edge.sources import load_model

    assert load_model("demo", mean=(0.5,), std=(0.25,)).preprocess.std == (0.25, 0.25, 0.25)
    with pytest.raises(ModelSpecError, match="--mean has 2 values but demo takes 3 input channels"):
        load_model("demo", mean=(0.5, 0.5))


def test_images_become_the_models_channels():
    from PIL import Image

    from vit_edge.errors import InputError
    from vit_edge.preprocess import PreprocessConfig, image_to_array

    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    gray = PreprocessConfig(input_size=(8, 8), crop_pct=1.0, channels=1, mean=(0.5,), std=(0.5,))
    arr = image_to_array(rgb, gray)
    luma = np.asarray(rgb.convert("L"), np.float32) / 255.0  # Pillow's ITU-R 601 luma, as L images hold
    assert arr.shape == (1, 8, 8)
    np.testing.assert_allclose(arr[0], (luma - 0.5) / 0.5, atol=1e-6)
    with pytest.raises(InputError, match="one value per input channel"):
        PreprocessConfig(channels=1)  # ImageNet's three values for one channel
    with pytest.raises(InputError, match="cannot read image files"):
        image_to_array(rgb, PreprocessConfig(input_size=(8, 8), channels=4, mean=(0.0,) * 4, std=(1.0,) * 4))


def test_a_bare_one_channel_onnx_converts_predicts_and_is_checked(tmp_path):
    """An ONNX without vit-edge metadata takes its channels and size from its input shape: it converts, and
    predict runs given its statistics (it exited 70 feeding RGB); a --channels that contradicts the graph is refused up front."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 7, 7), torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    bare = tmp_path / "bare.onnx"
    torch.onnx.export(net, torch.randn(2, 1, 28, 28), str(bare), input_names=["x"], dynamic_axes={"x": {0: "n"}},
                      dynamo=False)
    from PIL import Image

    image = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (28, 28), dtype=np.uint8)).save(image)
    result = run_cli("predict", bare, image, "-k", "1")  # nothing says how it was normalised: refused, not guessed
    assert_one_line_error(result, 2, "records no preprocessing", "mean, std", "--mean/--std")
    result = run_cli("predict", bare, image, "-k", "1", "--mean", "0.5", "--std", "0.5")
    assert result.code == 0, result.err
    out = tmp_path / "out"
    result = run_cli("convert", bare, "--mean", "0.5", "--std", "0.5", "--crop-pct", "1", "--out", out)
    assert result.code == 0, result.err
    pre = json.loads((out / "manifest.json").read_text())["preprocess"]
    assert (pre["channels"], pre["input_size"], pre["mean"]) == (1, [28, 28], [0.5])
    result = run_cli("predict", out, image, "-k", "1")
    assert result.code == 0, result.err
    x = (np.asarray(Image.open(image), np.float32)[None, None] / 255.0 - 0.5) / 0.5
    expected = int(net(torch.from_numpy(x)).argmax())
    assert result.out.strip().split(": ")[1].startswith(f"{expected} (")
    refused = tmp_path / "refused"
    assert_one_line_error(run_cli("convert", bare, "--channels", "3", "--out", refused), 2,
                          "takes 1-channel input", "--channels 1")
    assert not refused.exists()


# ---------------------------------------------------------------- MODEL specs with --checkpoint


def _weights(module, path: Path, seed: int) -> Path:
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    for p in module.parameters():
        torch.nn.init.normal_(p, std=0.3)
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    return path


def test_predict_a_model_spec_with_its_checkpoint(project, tmp_path):
    import torch

    from vit_edge.preprocess import image_to_array, open_image
    from vit_edge.sources import load_model

    spec = f"{project}/my_model.py:build"
    loaded = load_model(spec, input_size=(28, 28), mean=(0.5,), std=(0.5,))
    checkpoint = _weights(loaded.module, tmp_path / "w.safetensors", seed=3)
    image = next((project / "data" / "test" / "3").iterdir())
    with torch.no_grad():
        probs = torch.softmax(loaded.module(torch.from_numpy(image_to_array(open_image(image),
                                                                            loaded.preprocess)[None])), 1)[0]
    best = int(probs.argmax())
    result = run_cli("predict", spec, image, "-k", "1", "--checkpoint", checkpoint, *GRAY)
    assert result.code == 0, result.err
    assert result.out.strip() == f"{image}: {best} ({float(probs[best]):.3f})"
    assert "RANDOM" not in result.err
    unweighted = run_cli("predict", spec, image, "-k", "1", *GRAY)
    assert unweighted.code == 0 and "WARNING: no --checkpoint" in unweighted.err and "RANDOM" in unweighted.err
    assert unweighted.out != result.out


# ---------------------------------------------------------------- the acceptance test


def _train(spec: str, project: Path, out: Path, steps: int = 300) -> Path:
    """A few seconds of AdamW on the 28x28 training digits, decoded with the model's own preprocessing."""
    import torch
    from safetensors.torch import save_file

    from vit_edge.data import load_images
    from vit_edge.sources import load_model

    loaded = load_model(spec, input_size=(28, 28), mean=(0.5,), std=(0.5,))
    (x, y), = load_images(project / "data" / "train").batches(loaded.preprocess, batch_size=10_000)
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    net = loaded.module.train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=gen)
        loss = torch.nn.functional.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(out))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["my_model.py:build", "tiny_timm.py:build"])
def test_one_channel_vits_convert_to_every_target_and_keep_parity(model, project, tmp_path, monkeypatch):
    spec = f"{project}/{model}"
    checkpoint = _train(spec, project, tmp_path / "trained.safetensors")
    test_data = project / "data" / "test"
    builds = {"onnx-fp32": ("--target", "onnx", "--precision", "fp32"),
              "openvino-int8": ("--target", "openvino", "--precision", "int8"),
              "tensorrt-int8": ("--target", "tensorrt", "--precision", "int8")}
    int8 = ("--calib", project / "data" / "train", "--calib-size", "64", "--preset", "performance",
            "--smooth-quant-alpha", "-1")  # one recipe: the recipe search has its own tests
    monkeypatch.chdir(tmp_path)  # neither the repository nor the model's folder
    for name, target in builds.items():
        out = tmp_path / name
        result = run_cli("convert", spec, *target, *GRAY, "--checkpoint", checkpoint,
                         *(int8 if name.endswith("int8") else ()), "--out", out)
        assert result.code == 0, result.err
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["preprocess"]["channels"] == 1 and manifest["preprocess"]["mean"] == [0.5]
        assert set(manifest["source"]["modules"]) == ({"vision/__init__.py", "vision/vit_model.py"}
                                                      if model.startswith("my_model") else set())
        report = tmp_path / f"{name}.json"
        # Naming the model's file is consent to run its code (a manifest alone never makes it run). INT8 of a
        # 30k-parameter model calibrated on 64 images may lose a digit or two of 360: a 2-point top-1 budget.
        result = run_cli("validate", out, "--reference", spec, "--data", test_data, "--json", report,
                         *(("--max-top1-drop", "2") if name.endswith("int8") else ()))
        assert result.code == 0, result.out + result.err
        data = json.loads(report.read_text())
        assert data["samples"] == 360 and data["reference"]["top1"] >= 0.8  # trained: real parity is measured
        if name == "onnx-fp32":
            assert data["top1_agreement"] == 1.0 and data["max_abs_error"] < 1e-4
        else:
            assert data["top1_agreement"] >= 0.98 and data["top1_drop"]["value"] <= 0.02
    # --reference MODEL --checkpoint: the weights named reach the reference (other weights: no parity)
    fp32 = tmp_path / "onnx-fp32"
    weighted = run_cli("validate", fp32, "--reference", spec, "--checkpoint", checkpoint, "--data", test_data)
    assert weighted.code == 0 and "agreement 100.00%" in weighted.out, weighted.err
    from vit_edge.sources import load_model

    other = _weights(load_model(spec, **dict(zip(("input_size", "mean", "std"), ((28, 28), (0.5,), (0.5,))))).module,
                     tmp_path / "other.safetensors", seed=5)
    assert run_cli("validate", fp32, "--reference", spec, "--checkpoint", other, "--data", test_data).code == 1
