"""Fast unit tests of ``vit_edge.sources``' pure parts: spec parsing, probe sizes, labels, the Hugging Face
preprocessor translation, patch-size detection and the family registry. No model is converted."""

from __future__ import annotations

import inspect
import json
import types

import pytest

from vit_edge.errors import ModelSpecError
from vit_edge.preprocess import IMAGENET_MEAN, IMAGENET_STD
from vit_edge.sources import FAMILIES, LoadRequest, build_options, load_model, parse_spec, probe_sizes, read_labels
from vit_edge.sources import hf, spec as spec_module
from vit_edge.sources.spec import absolute_spec

# ------------------------------------------------------------------------------------------- parse_spec


@pytest.mark.parametrize("text", [None, "", "demo"])
def test_parse_spec_demo(text):
    assert parse_spec(text) == ("demo", "demo")


@pytest.mark.parametrize("text, expected", [
    ("timm:vit_tiny_patch16_224", ("timm", "vit_tiny_patch16_224")),
    ("timm:vit_base_patch16_224.augreg_in21k", ("timm", "vit_base_patch16_224.augreg_in21k")),
    ("torchvision:vit_b_16", ("torchvision", "vit_b_16")),
    ("hf:some/dir", ("hf", "some/dir")),
])
def test_parse_spec_prefixes(text, expected):
    assert parse_spec(text) == expected


@pytest.mark.parametrize("prefix", ["timm", "torchvision", "hf"])
def test_parse_spec_empty_name(prefix):
    with pytest.raises(ModelSpecError, match=f"empty model name in '{prefix}:'") as info:
        parse_spec(prefix + ":")
    assert info.value.hint == f"use {prefix}:NAME"


def test_parse_spec_hf_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert parse_spec(str(tmp_path)) == ("hf", str(tmp_path))


def test_parse_spec_directory_without_config(tmp_path):
    with pytest.raises(ModelSpecError, match="is a directory without config.json"):
        parse_spec(str(tmp_path))


def test_parse_spec_python(tmp_path):
    text = f"{tmp_path}/model.py:make_model"
    assert parse_spec(text) == ("python", text)  # the file is only looked for when loading
    assert parse_spec("model.py:make") == ("python", "model.py:make")


def test_parse_spec_python_without_callable(tmp_path):
    path = tmp_path / "model.py"
    path.write_text("")
    with pytest.raises(ModelSpecError, match="names a Python file but no callable") as info:
        parse_spec(str(path))
    assert info.value.hint == f"use {path}:make_model"


def test_parse_spec_onnx(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"")
    assert parse_spec(str(path)) == ("onnx", str(path))
    upper = tmp_path / "MODEL.ONNX"
    upper.write_bytes(b"")
    assert parse_spec(str(upper)) == ("onnx", str(upper))


def test_parse_spec_missing_onnx(tmp_path):
    with pytest.raises(ModelSpecError, match="ONNX file .*missing.onnx not found"):
        parse_spec(str(tmp_path / "missing.onnx"))


def test_parse_spec_onnx_directory(tmp_path):
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ModelSpecError, match="is a directory, not an ONNX file"):
        parse_spec(str(tmp_path / "dir.onnx"))


def test_parse_spec_existing_file_of_unknown_kind(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"")
    with pytest.raises(ModelSpecError, match="cannot tell what kind of model"):
        parse_spec(str(path))


def test_parse_spec_missing_path(tmp_path):
    with pytest.raises(ModelSpecError, match="model .* not found"):
        parse_spec(str(tmp_path / "nothing" / "here"))


def test_parse_spec_unknown_word(monkeypatch):
    monkeypatch.setattr(spec_module, "timm_suggestion", lambda name: "")
    with pytest.raises(ModelSpecError, match=r"^unknown MODEL spec 'notamodel'$") as info:
        parse_spec("notamodel")
    assert "timm:NAME" in info.value.hint


def test_parse_spec_unknown_word_suggests_timm_name():
    with pytest.raises(ModelSpecError, match=r"did you mean .*timm:vit_tiny_patch16_224\b"):
        parse_spec("vit_tiny_patch16_22")


def test_absolute_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_spec("python", "m.py:make", "m.py:make") == f"{tmp_path.resolve()}/m.py:make"
    assert absolute_spec("hf", "d", "d") == str((tmp_path / "d").resolve())
    assert absolute_spec("onnx", "m.onnx", "m.onnx") == str((tmp_path / "m.onnx").resolve())
    assert absolute_spec("timm", "vit", "timm:vit") == "timm:vit"
    assert absolute_spec("demo", "demo", None) == "demo"


# ---------------------------------------------------------------------------------------- probe_sizes


@pytest.mark.parametrize("size, patch, expected", [
    # step = 2 * patch = 32: 224 * 0.75 / 32 = 5.25 -> 5 * 32; 224 * 1.25 / 32 = 8.75 -> 9 * 32
    ((224, 224), 16, [(160, 160), (288, 288)]),
    # step 28: 168 / 28 = 6, 120 / 28 = 4.29 -> 4; 280 / 28 = 10, 200 / 28 = 7.14 -> 7
    ((224, 160), 14, [(168, 112), (280, 196)]),
    # too small for the grid: never below one step
    ((16, 16), 16, [(32, 32), (32, 32)]),
    # no patch: the largest of 32, 28, 16, 14 dividing both sides; 224 -> 32
    ((224, 224), None, [(160, 160), (288, 288)]),
    # 196 -> 28: 147 / 28 = 5.25 -> 5; 245 / 28 = 8.75 -> 9
    ((196, 196), None, [(140, 140), (252, 252)]),
    # none divides 100 -> 8: 75 / 8 = 9.375 -> 9; 125 / 8 = 15.6 -> 16
    ((100, 100), None, [(72, 72), (128, 128)]),
])
def test_probe_sizes(size, patch, expected):
    assert probe_sizes(size, patch) == expected


def test_patch_size():
    import torch

    from vit_edge.sources import patch_size

    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1),  # kernel != stride: not a patch embed
                                 torch.nn.Conv2d(8, 8, 4, stride=4), torch.nn.Flatten())
    assert patch_size(module) == 4
    assert patch_size(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 1), torch.nn.Linear(8, 2))) is None


# ---------------------------------------------------------------------------------------- read_labels


def test_read_labels_text(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\n\n  dog  \nbird\n")
    assert read_labels(path) == ["cat", "dog", "bird"]


def test_read_labels_json_list(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(["cat", "dog", 3]))
    assert read_labels(path) == ["cat", "dog", "3"]


def test_read_labels_json_dict_sorted_by_index(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({str(i): f"c{i}" for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)}))
    assert read_labels(path) == [f"c{i}" for i in range(11)]  # numeric order, not string order ("10" < "2")
    path.write_text(json.dumps({"10": "ten", "2": "two", "0": "zero"}))  # gaps would shift names onto classes
    with pytest.raises(ModelSpecError, match=r"keys are not 0..2 \(missing \[1\], out of range \[10\]\)"):
        read_labels(path)


def test_read_labels_empty(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("\n  \n")
    with pytest.raises(ModelSpecError, match="labels file .* is empty"):
        read_labels(path)


def test_read_labels_invalid_json(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text("[cat, dog")
    with pytest.raises(ModelSpecError, match="is not valid JSON"):
        read_labels(path)


def test_read_labels_missing(tmp_path):
    with pytest.raises(ModelSpecError, match=r"cannot read labels file .* \(FileNotFoundError\)"):
        read_labels(tmp_path / "nope.txt")


# ------------------------------------------------------------------ Hugging Face preprocessor translation


def _processor(tmp_path, **config):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    return tmp_path


def test_hf_preprocess_center_crop(tmp_path):
    directory = _processor(tmp_path, do_center_crop=True, crop_size={"height": 224, "width": 224},
                           size={"shortest_edge": 256}, resample=3, image_mean=[0.48, 0.45, 0.40],
                           image_std=[0.26, 0.26, 0.27])
    pre = hf.preprocess_config(directory, types.SimpleNamespace(image_size=224))
    assert pre.input_size == (224, 224)
    assert pre.crop_pct == pytest.approx(224 / 256)
    assert pre.interpolation == "bicubic"
    assert pre.resize_mode == "shorter"
    assert pre.mean == (0.48, 0.45, 0.40) and pre.std == (0.26, 0.26, 0.27)


def test_hf_preprocess_int_crop_and_height_width_size(tmp_path):
    directory = _processor(tmp_path, do_center_crop=True, crop_size=224, size={"height": 256, "width": 288})
    pre = hf.preprocess_config(directory, types.SimpleNamespace(image_size=224))
    assert pre.input_size == (224, 224)
    assert pre.crop_pct == pytest.approx(224 / 256)  # the shorter of height/width


@pytest.mark.parametrize("size", [{"shortest_edge": 384}, 384])
def test_hf_preprocess_shortest_edge(tmp_path, size):
    directory = _processor(tmp_path, size=size, resample=2)
    pre = hf.preprocess_config(directory, types.SimpleNamespace(image_size=224))
    assert pre.input_size == (384, 384)
    assert pre.crop_pct == 1.0
    assert pre.interpolation == "bilinear"
    assert pre.resize_mode == "shorter"
    assert pre.mean == IMAGENET_MEAN and pre.std == IMAGENET_STD  # the processor's defaults


def test_hf_preprocess_height_width_squash(tmp_path):
    directory = _processor(tmp_path, size={"height": 256, "width": 192}, resample=0,
                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    pre = hf.preprocess_config(directory, types.SimpleNamespace(image_size=224))
    assert pre.input_size == (256, 192)
    assert pre.resize_mode == "squash"
    assert pre.crop_pct == 1.0
    assert pre.interpolation == "nearest"


def test_hf_preprocess_without_file(tmp_path):
    pre = hf.preprocess_config(tmp_path, types.SimpleNamespace(image_size=160))
    assert pre.input_size == (160, 160)
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert pre.interpolation == "bilinear"
    assert pre.resize_mode == "squash"
    assert pre.crop_pct == 1.0


def test_hf_preprocess_vision_config_size(tmp_path):
    config = types.SimpleNamespace(vision_config=types.SimpleNamespace(image_size=(336, 320)))
    assert hf.image_size(config) == (336, 320)
    assert hf.preprocess_config(tmp_path, config).input_size == (336, 320)
    assert hf.image_size(types.SimpleNamespace()) == (224, 224)


def test_hf_preprocess_without_normalize(tmp_path):
    directory = _processor(tmp_path, do_normalize=False, size={"shortest_edge": 224},
                           image_mean=[0.48, 0.45, 0.40], image_std=[0.26, 0.26, 0.27])
    pre = hf.preprocess_config(directory, types.SimpleNamespace(image_size=224))
    assert pre.mean == (0.0, 0.0, 0.0) and pre.std == (1.0, 1.0, 1.0)


def test_hf_model_class():
    fake = types.SimpleNamespace(Dinov2Model="Dinov2Model-class", AutoModelForImageClassification="auto")
    assert hf.model_class(fake, types.SimpleNamespace(architectures=["Unknown", "Dinov2Model"])) == "Dinov2Model-class"
    assert hf.model_class(fake, types.SimpleNamespace(architectures=None)) == "auto"


# ------------------------------------------------------------------------------------ registry, options


def test_registry_covers_every_spec_kind(tmp_path):
    hf_dir = tmp_path / "hfmodel"
    hf_dir.mkdir()
    (hf_dir / "config.json").write_text("{}")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    specs = [None, "timm:vit", "torchvision:vit_b_16", "hf:d", str(hf_dir), "m.py:make", str(onnx)]
    kinds = {parse_spec(s)[0] for s in specs}
    assert kinds == {"demo", "timm", "torchvision", "hf", "python", "onnx"}
    assert set(FAMILIES) == kinds
    for kind, family in FAMILIES.items():
        params = list(inspect.signature(family.load).parameters.values())
        assert len(params) == 2 and params[1].annotation in ("LoadRequest", LoadRequest), kind
    assert [k for k, f in FAMILIES.items() if not f.takes_checkpoint] == ["demo", "onnx"]
    assert [k for k, f in FAMILIES.items() if f.takes_model_kwargs] == ["timm"]
    assert [k for k, f in FAMILIES.items() if not f.torch_module] == ["onnx"]


def test_load_request_is_frozen():
    request = LoadRequest(checkpoint="w.pt", input_size=(224, 224))
    with pytest.raises(AttributeError):
        request.checkpoint = None
    assert request.task is None and request.model_kwargs == {} and not request.dynamic_size


def test_load_model_refusals_before_loading():
    with pytest.raises(ModelSpecError, match="--checkpoint does not apply to a demo model"):
        load_model("demo", checkpoint="weights.pt")
    with pytest.raises(ModelSpecError, match="model keyword arguments only apply to timm models, not demo"):
        load_model(None, model_kwargs={"depth": 2})
    with pytest.raises(ModelSpecError, match="unknown task 'segment'"):
        load_model(None, task="segment")


def test_build_options():
    assert build_options({}) == {"dynamic_size": False, "model_kwargs": None}
    source = {"build": {"input_size": [256, 192], "dynamic_size": True, "model_kwargs": {"depth": 2}}}
    assert build_options(source) == {"dynamic_size": True, "model_kwargs": {"depth": 2}, "input_size": (256, 192)}
