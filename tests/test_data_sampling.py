"""Which images a run looks at (issue 17): ``--limit`` / ``--validate-limit`` draw a seeded sample stratified
by class (the first N files of a folder are the first classes only), a calibration folder whose class names
are not the model's is warned about once, and validating on images calibration used is flagged (the
manifest keeps the content hashes of the calibration images)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli


def _class_folder(root: Path, sizes) -> Path:
    """Class folders ``0``..``9`` (the demo's labels), class k holding ``sizes[k]`` small random RGB PNGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, n in enumerate(sizes):
        (root / str(k)).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / str(k) / f"{i:03d}.png")
    return root


def test_limit_picks_every_class_in_proportion(demo_onnx, tmp_path):
    # 220 images, class k holding 4 (k + 1): the first 55 in folder order are classes 0-4 only.
    folder = _class_folder(tmp_path / "data", [4 * (k + 1) for k in range(10)])
    report = tmp_path / "r.json"
    result = run_cli("validate", demo_onnx, "--data", folder, "--limit", "55", "--json", report)
    assert result.code == 0, result.err
    data = json.loads(report.read_text())
    assert data["samples"] == 55
    assert [c["samples"] for c in data["per_class"]] == [k + 1 for k in range(10)]  # a quarter of each class
    assert "limited to 55 of 220 images, stratified, seed 0" in data["notes"]
    assert "note: limited to 55 of 220 images, stratified, seed 0" in result.out
    again = tmp_path / "again.json"
    assert run_cli("validate", demo_onnx, "--data", folder, "--limit", "55", "--json", again).code == 0
    assert json.loads(again.read_text())["per_class"] == data["per_class"]  # seeded: the same images


def test_debug_and_compare_limits_sample_every_class_too(demo_onnx, tmp_path):
    from vit_edge import runtimes
    from vit_edge.data import load_images
    from vit_edge.validate import compare

    folder = _class_folder(tmp_path / "data", [4 * (k + 1) for k in range(10)])
    report = tmp_path / "debug.json"
    result = run_cli("debug", demo_onnx, "--data", folder, "--limit", "55", "--json", report)
    assert result.code == 0, result.err
    debug = json.loads(report.read_text())
    assert debug["images"] == 55 and debug["data"].endswith("(55 of 220 images, stratified, seed 0)"), debug["data"]
    with runtimes.load(demo_onnx) as candidate, runtimes.load(demo_onnx) as reference:
        parity = compare(candidate, reference, load_images(folder, candidate.labels), limit=55, progress=False)
    assert [c["samples"] for c in parity.per_class] == [k + 1 for k in range(10)]


def test_stratified_rounding_and_unlabelled_samples():
    from vit_edge.data import ImageSet, stratified_indices

    labels = [0] * 5 + [1] * 3 + [2] * 2  # quotas for 5: 2.5, 1.5, 1.0; the spare goes to the larger class
    chosen = stratified_indices(labels, 5, np.random.default_rng(0))
    assert Counter(labels[i] for i in chosen) == {0: 3, 1: 1, 2: 1} and list(chosen) == sorted(chosen)
    flat = ImageSet(list(range(100)), None, None, "flat")
    sample = flat.sample(10, seed=0)
    assert len(sample) == 10 and sample.selection == "10 of 100 images, random, seed 0"
    assert sample.items != list(range(10)) and sample.items == flat.sample(10, seed=0).items
    assert flat.sample(100) is flat and flat.sample(None) is flat
    memory = ImageSet(list(range(20)), [i % 2 for i in range(20)], None, "digits:test")  # items held in memory
    drawn = memory.sample(4)
    assert Counter(drawn.labels) == {0: 2, 1: 2}
    assert [drawn.item_id(i) for i in range(4)] == [f"digits:test[{item}]" for item in drawn.items]  # as drawn


def test_digests_find_the_same_image_under_another_name(tmp_path):
    from PIL import Image

    from vit_edge.data import load_images

    for name in ("a.png", "b.png"):
        Image.new("L", (5, 5), 7).save(tmp_path / name)
    Image.new("L", (5, 5), 8).save(tmp_path / "c.png")
    images = load_images(tmp_path)
    digests = [images.digest(i) for i in range(3)]
    assert digests[0] == digests[1] != digests[2]
    assert digests[0] == hashlib.sha256((tmp_path / "a.png").read_bytes()).hexdigest()[:16]


def test_class_folders_that_are_not_the_models_labels_are_warned_about_once(tmp_path, caplog):
    from vit_edge.data import load_images

    folder = tmp_path / "cifar"
    for name in ("airplane", "cat"):
        (folder / name).mkdir(parents=True)
        (folder / name / "x.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="vit_edge"):
        for _ in range(3):  # calibration, parity and validation read the same folder
            load_images(folder, [str(d) for d in range(10)])
    warned = [r.getMessage() for r in caplog.records if "class folders" in r.getMessage()]
    assert len(warned) == 1 and "2 of the 2 class folders" in warned[0] and "airplane, cat" in warned[0]


@pytest.mark.slow
def test_calibration_is_recorded_and_validating_on_it_is_flagged(tmp_path):
    """Calibrate the demo on its training digits written under folder names that are not its labels: one
    warning; the manifest keeps the hashes of the 16 + 64 images INT8 used; validating on that folder says
    exactly those 80 were calibration images, on the test digits it says nothing."""
    from vit_edge.data import load_images, write_image_folder

    train = load_images("digits:train")
    train.class_names = [f"d{k}" for k in range(10)]  # not the demo's labels "0".."9"
    calib = tmp_path / "calib"
    write_image_folder(train, calib)
    out = tmp_path / "int8"
    result = run_cli("convert", "--target", "onnx", "--precision", "int8", "--calib", calib, "--calib-size", "16",
                     "--preset", "performance", "--smooth-quant-alpha", "-1", "--out", out)
    assert result.code == 0, result.err
    assert sum("match none of the model's" in line for line in result.err.splitlines()) == 1, result.err
    recorded = json.loads((out / "manifest.json").read_text())["quantization"]["calibration"]["images_sha256"]
    files = {hashlib.sha256(p.read_bytes()).hexdigest()[:16] for p in calib.rglob("*.png")}
    assert len(recorded) == 80 and set(recorded) <= files  # hashes of real files of the calibration folder
    report = tmp_path / "same.json"
    result = run_cli("validate", out, "--data", calib, "--json", report)
    notes = json.loads(report.read_text())["notes"]
    assert any(n.startswith("WARNING: 80 of the 1437 validation images are images INT8 calibration used")
               for n in notes), notes
    assert "80 of the 1437 validation images" in result.out
    report = tmp_path / "test.json"
    result = run_cli("validate", out, "--data", "digits:test", "--json", report)
    assert result.code == 0, result.err
    assert not any("calibration used" in n for n in json.loads(report.read_text())["notes"])
