"""Direct tests of the small pure functions the pipeline is built from (fast: no model, no conversion)."""

from __future__ import annotations

import numpy as np
import pytest

from vit_edge import metrics
from vit_edge.errors import VitEdgeError, first_line


# ---------------------------------------------------------------- errors.first_line


@pytest.mark.parametrize("message, expected", [
    ("plain", "plain"),
    ("\n\n  second line is the first non-empty  \nthird", "second line is the first non-empty"),
    ("", "ValueError"),  # used to raise IndexError inside the error handler (exit 70 for a user error)
    ("   \n  ", "ValueError"),
])
def test_first_line(message, expected):
    assert first_line(ValueError(message)) == expected


def test_first_line_truncates():
    assert first_line(RuntimeError("x" * 500), limit=10) == "x" * 10


# ---------------------------------------------------------------- metrics


def test_row_cosines_by_hand():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = np.array([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    np.testing.assert_allclose(metrics.row_cosines(a, b), [0.0, 1.0, 0.0], atol=1e-12)


def test_errors_and_agreement_by_hand():
    reference = np.array([[0.0, 4.0], [3.0, 1.0]])
    candidate = np.array([[0.5, 4.0], [1.0, 2.0]])
    assert metrics.max_abs_error(candidate, reference) == 2.0
    assert metrics.output_scale(reference) == 4.0 and metrics.output_scale(reference / 100) == 1.0
    assert metrics.max_rel_error(candidate, reference) == 0.5
    assert metrics.agreement(candidate, reference) == 0.5


def test_thresholds_defaults_and_overrides():
    assert metrics.Thresholds() == metrics.Thresholds(0.5, 0.98, 0.99)
    th = metrics.Thresholds.from_options({"min_agreement": 0.9, "max_top1_drop": None})
    assert (th.min_agreement, th.max_top1_drop) == (0.9, 0.5)
    with pytest.raises(ValueError, match="min_agreemnt"):
        metrics.Thresholds.from_options({"min_agreemnt": 0.9})


# ---------------------------------------------------------------- convert options


def test_split_options_sorts_flat_options_into_groups():
    from vit_edge.convert.job import split_options
    from vit_edge.convert.tensorrt import TensorRTOptions

    groups = split_options({"calib": "digits:train", "ignore": ["Softmax"], "opset": 19, "validate": "d",
                            "validate_limit": 5, "thresholds": {"min_agreement": 0.9}, "batch": (1, 2, 4),
                            "preset": None}, TensorRTOptions)
    assert groups.int8.calib == "digits:train" and groups.int8.ignore == ("Softmax",)
    assert groups.int8.given_flags() == ["--calib", "--ignore"]
    assert groups.export.opset == 19 and groups.validation.data == "d" and groups.validation.limit == 5
    assert groups.validation.thresholds.min_agreement == 0.9 and groups.target.batch == (1, 2, 4)


def test_split_options_refuses_an_option_no_group_takes():
    from vit_edge.convert.job import split_options
    from vit_edge.convert.target import NoOptions

    with pytest.raises(VitEdgeError, match="unknown convert option 'batch'"):
        split_options({"batch": (1, 8, 32)}, NoOptions)  # a TensorRT flag for a target without it


def test_default_out():
    from pathlib import Path

    from vit_edge.convert import default_out

    assert default_out(None, "onnx", "fp32") == Path("out/demo-onnx-fp32")
    assert default_out("timm:vit_tiny_patch16_224", "openvino", "int8") == Path("out/vit_tiny_patch16_224-openvino-int8")


# ---------------------------------------------------------------- INT8 --ignore


def test_resolve_ignore_splits_names_and_types_and_suggests():
    from vit_edge.convert.stages.quantize import resolve_ignore

    names, types = resolve_ignore(["/blocks.0/Add", "Softmax"], {"/blocks.0/Add", "/head/Gemm"},
                                  {"Add", "Softmax", "Gemm"})
    assert (names, types) == (["/blocks.0/Add"], ["Softmax"])
    with pytest.raises(VitEdgeError, match="neither a node name nor an op type") as info:
        resolve_ignore(["Softmx"], {"/head/Gemm"}, {"Softmax", "Gemm"})
    assert "did you mean Softmax?" in info.value.one_line()
    assert "op types here: Gemm, Softmax" in info.value.one_line()


# ---------------------------------------------------------------- preprocessing geometry


@pytest.mark.parametrize("size, cfg, expected_resize", [
    ((640, 480), {"crop_pct": 0.875}, (365, 274)),  # shorter side 480 -> floor(240/0.875)=274, aspect kept
    ((480, 640), {"crop_pct": 1.0}, (240, 320)),
    ((300, 300), {"crop_pct": 1.0, "resize_mode": "squash"}, (240, 240)),
])
def test_resize_and_crop_follows_timm(size, cfg, expected_resize, monkeypatch):
    from PIL import Image

    from vit_edge.preprocess import PreprocessConfig, resize_and_crop

    resized = []
    original = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize", lambda im, new, *a, **k: resized.append(new) or original(im, new, *a, **k))
    gradient = np.tile(np.arange(size[0], dtype=np.uint8), (size[1], 1))
    out = resize_and_crop(Image.fromarray(gradient), PreprocessConfig(input_size=(240, 240), **cfg))
    assert out.size == (240, 240)
    assert resized == [expected_resize]


def test_centre_crop_keeps_the_centre():
    from PIL import Image

    from vit_edge.preprocess import PreprocessConfig, resize_and_crop

    im = np.zeros((100, 300), np.uint8)
    im[:, 100:200] = 255  # a white centre third
    out = np.asarray(resize_and_crop(Image.fromarray(im), PreprocessConfig(input_size=(100, 100), crop_pct=1.0,
                                                                           interpolation="nearest")))
    assert out.min() == 255


# ---------------------------------------------------------------- class folders vs labels


def test_class_folders_match_label_names_case_and_synonyms():
    from vit_edge.data import _match_classes

    mapping, names = _match_classes(["Tench", "goldfish"], ["tench, Tinca tinca", "goldfish, Carassius auratus"])
    assert mapping == {"Tench": 0, "goldfish": 1} and names[0] == "tench, Tinca tinca"


def test_unmatched_class_folders_fall_back_to_sorted_order():
    from vit_edge.data import _match_classes

    mapping, names = _match_classes(["b", "a", "c"], ["x", "y", "z"])
    assert mapping == {"a": 0, "b": 1, "c": 2} and names == ["a", "b", "c"]
