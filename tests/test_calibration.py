"""Calibration data: real images, deterministic sampling, no silent fallback, clear errors for bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from vit_edge.calibration import load_calibration
from vit_edge.errors import DataError
from vit_edge.preprocess import PreprocessConfig

DEMO_PRE = PreprocessConfig(input_size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0,
                            interpolation="bilinear")


@pytest.fixture
def photos_with_junk(tmp_path, samples):
    """Five real photos in two class folders, plus two files that are not images."""
    folder = tmp_path / "calib"
    for i, photo in enumerate(sorted(samples.glob("*.JPEG"))[:5]):
        sub = folder / ("cats" if i % 2 else "dogs")
        sub.mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, sub / photo.name)
    (folder / "dogs" / "notes.txt").write_text("not an image")
    (folder / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return folder


def test_sampling_is_deterministic_and_seeded():
    a = load_calibration("digits:train", DEMO_PRE, size=50, seed=3, progress=False)
    b = load_calibration("digits:train", DEMO_PRE, size=50, seed=3, progress=False)
    c = load_calibration("digits:train", DEMO_PRE, size=50, seed=4, progress=False)
    assert a.images.shape == (50, 3, 32, 32) and a.images.dtype == np.float32
    np.testing.assert_array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    # The model's own normalisation: digits are mostly black background, i.e. (0 - 0.5) / 0.5 = -1.
    assert a.images.min() == pytest.approx(-1.0) and a.images.max() <= 1.0
    # Labelled source: the images calibration did not use are held out for validation.
    assert len(a.holdout) == 1437 - 50 and a.holdout.labelled
    summary = a.summary()
    assert len(set(summary.pop("images_sha256"))) == 50  # content hashes, for validate's overlap check
    assert summary == {"source": "digits:train", "requested": 50, "used": 50, "skipped_files": 0, "holdout": 1387}


def test_folder_skips_and_counts_undecodable_files(photos_with_junk, caplog):
    import logging

    logging.getLogger("vit_edge").addHandler(caplog.handler)  # the CLI may have stopped propagation
    try:
        data = load_calibration(photos_with_junk, DEMO_PRE, size=300, seed=0, progress=False)
    finally:
        logging.getLogger("vit_edge").removeHandler(caplog.handler)
    assert len(data) == 5 and len(data.skipped) == 2
    assert {p.rsplit("/", 1)[-1] for p in data.skipped} == {"notes.txt", "broken.jpg"}
    assert "holds only 5 usable images (asked for 300); using all 5" in caplog.text
    assert data.holdout is None  # nothing left to hold out: every decodable image calibrated


def test_preprocessed_array_is_used_as_is(tmp_path):
    batch = np.random.default_rng(0).standard_normal((20, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "calib.npy", batch)
    data = load_calibration(tmp_path / "calib.npy", DEMO_PRE, size=8, seed=1, progress=False)
    assert len(data) == 8
    # every calibration row is one of the given rows, untouched
    assert all(any(np.array_equal(row, ref) for ref in batch) for row in data.images)
    with pytest.raises(Exception, match="batch shape does not match"):
        load_calibration(tmp_path / "calib.npy", PreprocessConfig(), size=8, progress=False)


def test_no_decodable_image_is_an_error(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="no decodable images"):
        load_calibration(tmp_path, DEMO_PRE, size=10, progress=False)


# ---------------------------------------------------------------- the CLI contract for bad calibration input
# These use the demo's FP32 ONNX as MODEL, so no torch export runs before the error.


def _convert_int8(demo_onnx, out, *args):
    return run_cli("convert", demo_onnx / "model.onnx", "--target", "onnx", "--precision", "int8", "--out", out,
                   *args)


def test_int8_without_calib_is_a_usage_error(demo_onnx, tmp_path):
    out = tmp_path / "out"
    result = _convert_int8(demo_onnx, out)
    assert_one_line_error(result, 2, "calibration", "--calib")
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_calib_with_fp32_is_a_usage_error(demo_onnx, tmp_path):
    result = run_cli("convert", demo_onnx / "model.onnx", "--precision", "fp32", "--calib", "digits:train",
                     "--out", tmp_path / "out")
    assert_one_line_error(result, 2, "--calib", "--precision int8")


def test_empty_calib_folder(demo_onnx, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _convert_int8(demo_onnx, tmp_path / "out", "--calib", tmp_path / "empty")
    assert_one_line_error(result, 2, "no files")
    assert not (tmp_path / "out").exists()


def test_calib_folder_without_decodable_images(demo_onnx, tmp_path):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.jpg").write_bytes(b"\x00" * 100)
    (junk / "b.txt").write_text("hello")
    result = _convert_int8(demo_onnx, tmp_path / "out", "--calib", junk)
    assert_one_line_error(result, 2, "decodable")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_calib_size_larger_than_available_warns_and_uses_all(demo_onnx, photos_with_junk, tmp_path):
    out = tmp_path / "out"
    result = _convert_int8(demo_onnx, out, "--calib", photos_with_junk, "--calib-size", "50")
    assert result.code == 0, result.err
    assert "using all 5" in result.err and "2 undecodable files skipped" in result.err
    import json

    calib = json.loads((out / "manifest.json").read_text())["quantization"]["calibration"]
    assert calib["used"] == 5 and calib["requested"] == 50 and calib["skipped_files"] == 2


def test_unknown_ignore_name(demo_onnx, tmp_path):
    out = tmp_path / "out"
    result = _convert_int8(demo_onnx, out, "--calib", "digits:train", "--calib-size", "20",
                           "--ignore", "NoSuchNode")
    assert_one_line_error(result, 2, "NoSuchNode", "op types here")
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_max_accuracy_drop_needs_labelled_validation_data(demo_onnx, samples, tmp_path):
    result = _convert_int8(demo_onnx, tmp_path / "out", "--calib", samples, "--max-accuracy-drop", "1")
    assert_one_line_error(result, 2, "--max-accuracy-drop", "labelled")
    result = _convert_int8(demo_onnx, tmp_path / "out", "--calib", "digits:train", "--max-accuracy-drop", "1",
                           "--validate", samples)
    assert_one_line_error(result, 2, "--max-accuracy-drop", "labelled")
    assert not (tmp_path / "out").exists()
