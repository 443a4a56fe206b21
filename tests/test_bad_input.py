"""Bad input gets one clear line and exit 2, and nothing is left behind (the spine's item 7)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MODELS, assert_one_line_error, run_cli
from vit_edge.preprocess import PreprocessConfig, image_to_array, open_image

ENCODER = f"{MODELS / 'encoder_vit.py'}:make_model"


def _nothing_left(tmp_path, out):
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


@pytest.mark.parametrize("spec, needle", [
    ("vit_tiny_patch16_244", "unknown model spec"),
    ("timm:vit_tiny_patch16_244", "did you mean timm:vit_tiny_patch16_224"),
    ("torchvision:vit_b_61", "torchvision has no"),
    ("nowhere/model.onnx", "not found"),
    ("missing_file.py:make_model", "not found"),
    (f"{MODELS / 'encoder_vit.py'}:make_modle", "did you mean make_model"),
])
def test_unknown_or_missing_model(tmp_path, spec, needle):
    out = tmp_path / "out"
    result = run_cli("convert", spec, "--out", out)
    assert_one_line_error(result, 2, needle)
    _nothing_left(tmp_path, out)


def test_missing_checkpoint(tmp_path):
    out = tmp_path / "out"
    assert_one_line_error(run_cli("convert", ENCODER, "--checkpoint", tmp_path / "nope.pt", "--out", out),
                          2, "not found")
    _nothing_left(tmp_path, out)


def test_checkpoint_with_mismatched_keys_names_them(tmp_path):
    state = {"patch_embed.weight": torch.zeros(64, 3, 4, 4), "blocks.0.unknown": torch.zeros(3)}
    checkpoint = tmp_path / "wrong.pth"
    torch.save(state, checkpoint)
    out = tmp_path / "out"
    result = run_cli("convert", ENCODER, "--checkpoint", checkpoint, "--out", out)
    assert_one_line_error(result, 2, "missing keys", "unexpected keys", "blocks.0.unknown", "patch_embed.bias")
    _nothing_left(tmp_path, out)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_truncated_checkpoint(tmp_path, suffix):
    good = MODELS / "encoder_vit_digits.safetensors"
    checkpoint = tmp_path / f"truncated{suffix}"
    if suffix == ".pth":
        from safetensors.torch import load_file

        torch.save(load_file(str(good)), tmp_path / "full.pth")
        data = (tmp_path / "full.pth").read_bytes()
    else:
        data = good.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert_one_line_error(run_cli("convert", ENCODER, "--checkpoint", checkpoint, "--out", out), 2,
                          "corrupt or truncated")
    assert not out.exists()


class _RunsCode:
    """A pickle payload whose unpickling would create a file (a harmless stand-in for malware)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "evil.pth"
    with open(checkpoint, "wb") as f:
        pickle.dump({"patch_embed.weight": _RunsCode(marker)}, f)
    out = tmp_path / "out"
    result = run_cli("convert", ENCODER, "--checkpoint", checkpoint, "--out", out)
    assert_one_line_error(result, 2, "could run code", "--trust-checkpoint")
    assert not marker.exists(), "the pickle's code ran"
    assert not out.exists()


def test_empty_data_folder(demo_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    report = tmp_path / "r.json"
    result = run_cli("validate", demo_onnx, "--data", tmp_path / "empty", "--json", report)
    assert_one_line_error(result, 2, "holds no files")
    assert not report.exists()


def test_data_folder_without_any_image(demo_onnx, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("hello")
    (tmp_path / "d" / "b.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    result = run_cli("validate", demo_onnx, "--data", tmp_path / "d")
    assert_one_line_error(result, 2, "no decodable images", "2 files skipped")


def _mode_images():
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    gray16 = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257))
    return {"L": rgb.convert("L"), "RGBA": rgb.convert("RGBA"), "CMYK": rgb.convert("CMYK"), "I;16": gray16,
            "P": rgb.convert("P"), "LA": rgb.convert("LA"), "1": rgb.convert("1"), "RGB": rgb}


@pytest.mark.parametrize("mode", list(_mode_images()))
def test_every_image_mode_is_converted(tmp_path, mode):
    cfg = PreprocessConfig(input_size=(32, 32))
    image = _mode_images()[mode]
    path = tmp_path / f"img.{'tiff' if mode in ('I;16', 'CMYK') else 'png'}"
    image.save(path)
    arr = image_to_array(open_image(path), cfg)
    assert arr.shape == (3, 32, 32) and arr.dtype == np.float32 and np.isfinite(arr).all()
    if mode == "I;16":  # 16-bit gray must land on the same 8-bit scale as its 8-bit twin
        ref = image_to_array(_mode_images()["L"], cfg)
        assert float(np.abs(arr - ref).max()) < 0.05


def test_out_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    out = blocker / "sub" / "out"
    result = run_cli("convert", "--out", out)
    assert_one_line_error(result, 2, "cannot create")
    assert blocker.read_text() == "a file, not a folder"


def test_existing_out_without_force_is_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = run_cli("convert", "--out", out)
    assert_one_line_error(result, 2, "already exists", "--force")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("flag, value, needle", [
    ("--input-size", "224x", "--input-size"),
    ("--mean", "0.5,0.5", "3 comma-separated"),
    ("--std", "0.5,0,0.5", "positive"),
    ("--interpolation", "lanczos", "lanczos"),
])
def test_bad_preprocessing_flags(tmp_path, flag, value, needle):
    out = tmp_path / "out"
    assert_one_line_error(run_cli("convert", flag, value, "--out", out), 2, needle)
    assert not out.exists()
