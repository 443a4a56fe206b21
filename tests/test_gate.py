"""The validate gate: paired statistics by hand, the top-1 decision, what flipped, the reference cache, Ray.

Fast tests work on constructed counts and arrays; those that run or convert models are marked slow.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import MODELS, run_cli
from vit_edge import gate, gate_stats, reference_cache
from vit_edge.data import load_images
from vit_edge.metrics import Thresholds

Z = 1.959963984540054  # the 97.5% normal quantile


@pytest.fixture(autouse=True)
def _private_reference_cache(tmp_path, monkeypatch):
    """validate caches reference outputs; tests keep theirs out of the user's ~/.cache."""
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(tmp_path / "cache"))


# ------------------------------------------------------------------ statistics, by hand


def test_mcnemar_exact_p_by_hand():
    # b = 7 lost, c = 0 gained: 2 * C(7, 0) / 2^7 = 2 / 128
    assert gate_stats.mcnemar_exact_p(7, 0) == 2 / 128 == 0.015625
    # b = 9, c = 2: 2 * (C(11,0) + C(11,1) + C(11,2)) / 2^11 = 2 * (1 + 11 + 55) / 2048 = 134 / 2048
    assert gate_stats.mcnemar_exact_p(9, 2) == pytest.approx(134 / 2048, abs=1e-15) == pytest.approx(0.0654296875)
    # b = 10, c = 2: 2 * (1 + 12 + 66) / 4096 = 158 / 4096
    assert gate_stats.mcnemar_exact_p(10, 2) == pytest.approx(0.03857421875, abs=1e-15)
    # symmetric in b and c; balanced or absent flips give 1 (2 * 638 / 1024 > 1 is capped)
    assert gate_stats.mcnemar_exact_p(2, 9) == gate_stats.mcnemar_exact_p(9, 2)
    assert gate_stats.mcnemar_exact_p(5, 5) == 1.0 and gate_stats.mcnemar_exact_p(0, 0) == 1.0
    # large counts stay exact-ish (no float overflow in 2^m): 600 vs 400 is far from balanced
    assert 0 < gate_stats.mcnemar_exact_p(600, 400) < 1e-9


def test_wilson_interval_by_hand():
    # k = 355 of n = 360, z^2 = 3.841459:
    #   centre = (355 + 1.920729) / (360 + 3.841459) = 356.920729 / 363.841459 = 0.980979
    #   half   = 1.959964 * sqrt(355 * 5 / 360 + 3.841459 / 4) / 363.841459
    #          = 1.959964 * sqrt(4.930556 + 0.960365) / 363.841459 = 1.959964 * 2.427122 / 363.841459 = 0.013075
    lo, hi = gate_stats.wilson_interval(355, 360)
    assert lo == pytest.approx(0.980979 - 0.013075, abs=2e-6) and hi == pytest.approx(0.980979 + 0.013075, abs=2e-6)
    # k = n: the upper end is 1, the lower end n / (n + z^2) = 360 / 363.841459 = 0.989442
    assert gate_stats.wilson_interval(360, 360) == pytest.approx((0.989442, 1.0), abs=2e-6)
    assert gate_stats.Z95 == pytest.approx(Z, abs=1e-15)


def test_newcombe_paired_interval_by_hand():
    # a = 80 both right, b = 10 reference only, c = 2 candidate only, d = 8 neither; n = 100.
    # p1 = 0.90, p2 = 0.82, drop = 0.08.
    # Wilson(90, 100) = (0.825634, 0.944771); Wilson(82, 100) = (0.733326, 0.882998).
    # ad - bc = 640 - 20 = 620 > n/2, so phi = (620 - 50) / sqrt(90 * 10 * 82 * 18) = 570 / 1152.5624 = 0.494549
    # lower: 0.08 - sqrt(0.074366^2 - 2 * 0.494549 * 0.074366 * 0.062998 + 0.062998^2)
    #      = 0.08 - sqrt(0.0055303 - 0.0046337 + 0.0039688) = 0.08 - sqrt(0.0048654) = 0.08 - 0.069751 = 0.010249
    # upper: 0.08 + sqrt(0.044771^2 - 2 * 0.494549 * 0.044771 * 0.086674 + 0.086674^2)
    #      = 0.08 + sqrt(0.0020044 - 0.0038382 + 0.0075124) = 0.08 + sqrt(0.0056786) = 0.08 + 0.075356 = 0.155356
    lo, hi = gate_stats.paired_difference_ci(80, 10, 2, 8)
    assert lo == pytest.approx(0.010249, abs=2e-6) and hi == pytest.approx(0.155356, abs=2e-6)
    # The paired examples of Fagerland, Lydersen & Laake's book (R package contingencytables): Bentur 2009
    # (1, 1, 7, 12) and Cavo 2012 (59, 6, 16, 80); values computed with the formula above.
    assert gate_stats.paired_difference_ci(1, 1, 7, 12) == pytest.approx((-0.5069, -0.0256), abs=1e-4)
    assert gate_stats.paired_difference_ci(59, 6, 16, 80) == pytest.approx((-0.1186, -0.0046), abs=1e-4)
    # no discordant pairs: a zero drop with a width (Wald would give [0, 0]), symmetric
    lo, hi = gate_stats.paired_difference_ci(358, 0, 0, 2)
    assert lo == pytest.approx(-hi) and 0.005 < hi < 0.02


# ------------------------------------------------------------------ the top-1 decision


def _correctness(n: int, both_right: int, lost: int, gained: int):
    """Per-image correctness of (reference, candidate) with the given discordant counts."""
    ref = np.zeros(n, bool)
    cand = np.zeros(n, bool)
    ref[:both_right + lost] = True
    cand[:both_right] = True
    cand[both_right + lost:both_right + lost + gained] = True
    return ref, cand


@pytest.mark.parametrize("n, right, flips", [(360, 340, 2), (360, 340, 3), (1000, 800, 15), (1000, 800, 40)])
def test_balanced_flips_never_fail_the_top1_gate(n, right, flips):
    record, failure, note = gate.top1_verdict(*_correctness(n, right, flips, flips), max_drop_pts=0.5)
    assert failure is None and note is None
    assert record["value"] == 0 and record["mcnemar_p"] == 1.0 and record["decision"] == "within tolerance"
    assert record["ci95"][0] < 0 < record["ci95"][1]
    assert (record["reference_only"], record["candidate_only"]) == (flips, flips)


def test_a_real_two_point_loss_fails():
    # 7 of 360 lost, none gained: drop 1.94 pts, p = 2/128
    record, failure, _ = gate.top1_verdict(*_correctness(360, 350, 7, 0), max_drop_pts=0.5)
    assert record["decision"] == "real regression" and record["significant"]
    assert record["mcnemar_p"] == 0.015625 and record["value"] == pytest.approx(7 / 360)
    assert failure.startswith("top-1 dropped 1.94 pts") and "real" in failure


def test_noise_over_the_tolerance_passes_with_a_note():
    # 1000 images, 8 lost / 2 gained: 0.6 pts > 0.5, p = 0.109, 95% CI upper end 1.3 pts < 5 x 0.5
    record, failure, note = gate.top1_verdict(*_correctness(1000, 790, 8, 2), max_drop_pts=0.5)
    assert failure is None and record["decision"] == "not significant"
    assert "indistinguishable from noise" in note and record["ci95"][1] < 0.025


def test_too_few_images_to_vouch_fails():
    # 50 images, 2 lost: 4 pts, p = 0.5, but the 95% CI reaches 13 pts: a possible silent loss
    record, failure, _ = gate.top1_verdict(*_correctness(50, 45, 2, 0), max_drop_pts=0.5)
    assert record["decision"] == "too few images" and "validate on more images" in failure
    assert record["ci95"][1] > gate.EVIDENCE_FACTOR * 0.005


def test_zero_tolerance_fails_any_drop():
    record, failure, _ = gate.top1_verdict(*_correctness(1000, 900, 1, 0), max_drop_pts=0)
    assert failure is not None


def test_flip_analysis_on_constructed_outputs():
    # 8 images, 3 classes; labels 0,0,1,1,2,2,0,1
    ref = np.array([[5, 0, 0], [4, 3, 0], [0, 5, 0], [0, 6, 0], [0, 0, 5], [0, 0, 2], [3, 0, 0], [0, 4, 0]], float)
    cand = ref.copy()
    cand[1] = [0, 4, 0]  # lost (ref right, small margin)
    cand[3] = [0, 0, 6]  # lost (ref right, large margin)
    cand[5] = [2, 0, 0]  # lost
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    out = gate.flip_analysis(ref, cand, labels, np.arange(8), lambda i: f"img{i}", ["a", "b", "c"])
    assert out["flip_count"] == 3
    assert [f["path"] for f in out["flips"]] == ["img3", "img5", "img1"]  # most confident reference first
    top = out["flips"][0]
    assert top["reference"]["label"] == "b" and top["candidate"]["label"] == "c" and top["kind"] == "lost"
    p = np.exp([0, 6, 0]) / np.exp([0, 6, 0]).sum()
    assert top["reference_margin"] == pytest.approx(p[1] - p[0], abs=1e-6)
    assert {c["label"]: (c["samples"], c["flips"]) for c in out["per_class"]} == {"a": (3, 1), "b": (3, 1),
                                                                                "c": (2, 1)}
    assert [q["samples"] for q in out["agreement_by_margin"]] == [2, 2, 2, 2]
    assert sum(q["flips"] for q in out["agreement_by_margin"]) == 3


# ------------------------------------------------------------------ data windows and the cache key


def _image_folder(root: Path, n: int = 6) -> Path:
    for i in range(n):
        sub = root / str(i % 2)
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8), 30 * i, np.uint8)).save(sub / f"{i}.png")
    return root


def test_indexed_batches_keep_windows_and_name_items(tmp_path):
    from vit_edge.preprocess import PreprocessConfig

    folder = _image_folder(tmp_path / "d")
    (folder / "0" / "broken.png").write_text("not an image")
    images = load_images(folder)
    cfg = PreprocessConfig(input_size=(8, 8))
    got = list(images.indexed_batches(cfg, batch_size=3))
    assert [len(b) for b, _y, _i in got] == [3, 2, 1]  # 0/{0,2,4} 0/{broken},1/{1,3} 1/{5}
    broken = [i for i, p in enumerate(images.items) if p.name == "broken.png"]
    assert broken and all(broken[0] not in idx for _b, _y, idx in got)
    assert images.item_id(0) == str(images.items[0])
    assert load_images("digits:test").item_id(17) == "digits:test[17]"
    shard = list(images.indexed_batches(cfg, batch_size=3, start=3, stop=6))
    assert [list(i) for _b, _y, i in shard] == [list(got[1][2])]


def test_the_cache_key_follows_the_data_files(tmp_path):
    from vit_edge.preprocess import PreprocessConfig

    folder = _image_folder(tmp_path / "d")
    cfg = PreprocessConfig(input_size=(8, 8))
    ident = {"named": "demo"}
    key = lambda: reference_cache.make_key(ident, cfg, reference_cache.data_identity(load_images(folder)),  # noqa
                                           limit=None, batch_size=32)[0]
    first = key()
    assert key() == first
    touched = next(folder.rglob("*.png"))
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert key() != first
    assert reference_cache.make_key(ident, cfg, reference_cache.data_identity(load_images(folder)), limit=5,
                                    batch_size=32)[0] != key()
    assert reference_cache.make_key(ident, PreprocessConfig(input_size=(16, 16)),
                                    reference_cache.data_identity(load_images(folder)), limit=None,
                                    batch_size=32)[0] != key()


def test_cache_entries_round_trip_exactly_and_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(tmp_path / "c"))
    outputs = np.random.default_rng(0).standard_normal((7, 10)).astype(np.float32)
    path = reference_cache.store("k" * 64, {"x": 1}, outputs, np.arange(7), {"name": "ref", "target": "torch"})
    assert path == tmp_path / "c" / "reference" / f"{'k' * 64}.npz"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind
    hit = reference_cache.load("k" * 64)
    assert hit.outputs.dtype == np.float32 and np.array_equal(hit.outputs, outputs)
    assert hit.info == {"name": "ref", "target": "torch"} and list(hit.indices) == list(range(7))
    assert reference_cache.load("j" * 64) is None
    path.write_bytes(b"garbage")
    assert reference_cache.load("k" * 64) is None  # unreadable: a miss, never a crash
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", "off")
    assert reference_cache.cache_dir() is None and reference_cache.load("k" * 64) is None


def test_ray_shards_are_whole_windows():
    from vit_edge.ray_shards import shards

    assert shards(360, 32, 2) == [(0, 192), (192, 360)]
    assert shards(10, 32, 4) == [(0, 10)]
    parts = shards(1000, 32, 3)
    assert parts[0][0] == 0 and parts[-1][1] == 1000 and all(s % 32 == 0 for s, _ in parts)


def _linear_runtime(weights, name):
    from vit_edge.preprocess import PreprocessConfig
    from vit_edge.runtimes import Runtime

    class Linear(Runtime):
        target = "numpy"

        def _infer(self, batch):
            return batch.reshape(len(batch), -1) @ weights

    return Linear(preprocess=PreprocessConfig(input_size=(4, 4)), name=name)


def test_compare_serves_a_cached_reference_and_refuses_a_stale_one():
    from vit_edge.data import ImageSet
    from vit_edge.validate import StaleReference, compare

    rng = np.random.default_rng(0)
    pixels = rng.standard_normal((40, 3, 4, 4)).astype(np.float32)
    weights = rng.standard_normal((48, 5)).astype(np.float32)
    images = ImageSet([], [int(v) for v in rng.integers(0, 5, 40)], None, "x.npz", preprocessed=pixels)
    reference = _linear_runtime(weights, "ref")
    candidate = _linear_runtime(weights + 0.3 * rng.standard_normal(weights.shape).astype(np.float32), "cand")
    fresh = compare(candidate, reference, images, batch_size=16, progress=False)
    assert fresh.reference["source"] == "computed" and fresh.flip_count > 0
    assert fresh.flips[0]["path"].startswith("x.npz[")
    outputs = np.concatenate([reference.run(b) for b, _y, _i in images.indexed_batches(reference.preprocess, 16)])
    hit = reference_cache.CachedReference(outputs, np.arange(40), {"name": "ref", "target": "numpy",
                                                                   "precision": "fp32"}, "k" * 64, Path("e.npz"))
    served = compare(candidate, hit, images, batch_size=16, progress=False)
    assert served.reference["source"] == "cache"
    assert served.to_dict()["flips"] == fresh.to_dict()["flips"] and served.top1_drop == fresh.top1_drop
    stale = reference_cache.CachedReference(outputs[:39], np.arange(39), hit.info, "k" * 64, Path("e.npz"))
    with pytest.raises(StaleReference):
        compare(candidate, stale, images, batch_size=16, progress=False)


# ------------------------------------------------------------------ real models (slow)


class _Rigged:
    """A real runtime that answers ``answers[image digest]`` on chosen images (its logit lifted to the top)."""

    def __new__(cls, inner, answers):
        from vit_edge.runtimes import Runtime

        class Rigged(Runtime):
            target = "rigged"

            def _infer(self, batch):
                out = inner.run(batch).copy()
                for i, row in enumerate(batch):
                    k = answers.get(hashlib.sha1(row.tobytes()).hexdigest())
                    if k is not None:
                        out[i, k] = out[i].max() + 5.0
                return out

        return Rigged(preprocess=inner.preprocess, labels=inner.labels, name="rigged demo")


def _digests_and_predictions(reference, images):
    rows = []
    for batch, y, _idx in images.indexed_batches(reference.preprocess):
        pred = reference.run(batch).argmax(1)
        rows += [(hashlib.sha1(r.tobytes()).hexdigest(), int(p), int(t)) for r, p, t in zip(batch, pred, y)]
    return rows


@pytest.mark.slow
def test_the_gate_fails_a_demo_that_loses_two_points_and_passes_balanced_flips():
    from vit_edge import runtimes
    from vit_edge.validate import compare

    reference = runtimes.reference("demo")
    images = load_images("digits:test")
    rows = _digests_and_predictions(reference, images)
    right = [r for r in rows if r[1] == r[2]]
    wrong = [r for r in rows if r[1] != r[2]]
    lose = round(0.02 * len(rows))  # 2% of 360 = 7 images the reference gets right, answered wrong
    answers = {digest: (label + 1) % 10 for digest, _p, label in right[::40][:lose]}
    assert len(answers) == lose == 7
    report = compare(_Rigged(reference, answers), reference, images, thresholds=Thresholds(), progress=False)
    assert not report.passed
    drop = report.top1_drop
    assert (drop["reference_only"], drop["candidate_only"]) == (7, 0) and drop["mcnemar_p"] == 0.015625
    assert drop["decision"] == "real regression" and any("real" in f for f in report.failures)
    assert report.flip_count == 7 and {f["kind"] for f in report.flips} == {"lost"}
    # balanced: as many gained (the reference's mistakes answered right) as lost; top-1 unchanged
    k = len(wrong)
    assert k >= 1
    balanced = {digest: label for digest, _p, label in wrong}
    balanced |= {digest: (label + 1) % 10 for digest, _p, label in right[::40][:k]}
    report = compare(_Rigged(reference, balanced), reference, images, thresholds=Thresholds(), progress=False)
    assert report.candidate["top1"] == report.reference["top1"]
    assert report.top1_drop["value"] == 0 and report.top1_drop["decision"] == "within tolerance"
    assert report.passed, report.failures
    assert report.flip_count == 2 * k


def _validate(*args) -> dict:
    result = run_cli("validate", *args)
    assert result.code in (0, 1), result.err
    return result


@pytest.mark.slow
def test_the_reference_is_served_from_the_cache_until_a_data_file_changes(demo_onnx, tmp_path, monkeypatch):
    from vit_edge import runtimes, streaming
    from vit_edge.artifact import read_manifest

    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "digits"
    assert run_cli("data", "digits:test", "--out", folder).code == 0
    reports = []
    for i in range(3):
        assert _validate(demo_onnx, "--data", folder, "--json", tmp_path / f"r{i}.json").code == 0
        reports.append(json.loads((tmp_path / f"r{i}.json").read_text()))
        if i == 1:  # touch one data file: the cache must miss
            file = next(folder.rglob("*.png"))
            st = file.stat()
            os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert [r["reference"]["source"] for r in reports] == ["computed", "cache", "computed"]
    assert [r["inputs"]["source"] for r in reports] == ["decoded", "cache", "decoded"]  # decoded pixels too
    assert reports[0]["reference"]["runtime"] == "torch"
    strip = lambda r: {k: v for k, v in r.items() if k not in ("timing", "reference", "inputs")}  # noqa: E731
    assert strip(reports[0]) == strip(reports[1]) == strip(reports[2])
    print(f"\ndemo validate: computed {reports[0]['timing']['seconds']} s, cached {reports[1]['timing']['seconds']} s")
    # the entry holds exactly what the reference computes now
    entries = sorted((tmp_path / "cache" / "reference").glob("*.npz"))
    assert len(entries) == 2
    with np.load(entries[0]) as cached_a, np.load(entries[1]) as cached_b:
        cached = [cached_a["outputs"], cached_b["outputs"]]
    cand = runtimes.load(demo_onnx)
    ref = runtimes.reference_from_manifest(read_manifest(demo_onnx), preprocess=cand.preprocess)
    fresh = streaming.run_windows(load_images(folder, cand.labels), cand.preprocess, {"r": ref}).outputs["r"]
    assert any(np.array_equal(fresh, c) for c in cached)
    # --no-cache computes and stores nothing
    assert _validate(demo_onnx, "--data", folder, "--no-cache", "--json", tmp_path / "n.json").code == 0
    assert json.loads((tmp_path / "n.json").read_text())["reference"]["source"] == "computed"
    assert len(list((tmp_path / "cache" / "reference").glob("*.npz"))) == 2


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory) -> Path:
    """The demo architecture with perturbed weights, converted to ONNX: a candidate with real flips."""
    import torch
    from safetensors.torch import load_file, save_file

    from vit_edge.demo import WEIGHTS

    root = tmp_path_factory.mktemp("perturbed")
    torch.manual_seed(2)
    state = load_file(str(WEIGHTS))
    noisy = {k: v + 0.15 * v.std() * torch.randn_like(v) if v.numel() > 1 else v for k, v in state.items()}
    save_file(noisy, str(root / "w.safetensors"))
    assert run_cli("convert", f"{MODELS / 'demo_arch.py'}:make_model", "--checkpoint", root / "w.safetensors",
                   "--out", root / "onnx").code == 0
    return root / "onnx"


@pytest.mark.slow
def test_a_real_validate_lists_flips_per_class_and_writes_a_contact_sheet(perturbed, tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", "off")
    result = _validate(perturbed, "--reference", "demo", "--data", "digits:test", "--json", tmp_path / "r.json",
                       "--markdown", tmp_path / "r.md", "--flips-dir", tmp_path / "flips")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["flip_count"] > 0 and len(data["flips"]) == data["flip_count"]
    flip = data["flips"][0]
    assert flip["path"].startswith("digits:test[") and flip["reference"]["label"] != flip["candidate"]["label"]
    assert 0 <= flip["reference_margin"] <= 1 and flip["kind"] in ("lost", "gained", "both wrong")
    margins = [f["reference_margin"] for f in data["flips"]]
    assert margins == sorted(margins, reverse=True)
    assert len(data["per_class"]) == 10 and sum(c["samples"] for c in data["per_class"]) == 360
    assert sum(c["flips"] for c in data["per_class"]) == data["flip_count"]
    assert sum(q["samples"] for q in data["agreement_by_margin"]) == 360
    drop = data["top1_drop"]
    assert set(drop) >= {"value", "ci95", "mcnemar_p"} and drop["ci95"][0] <= drop["value"] <= drop["ci95"][1]
    lo, hi = data["agreement_ci95"]
    assert lo <= data["top1_agreement"] <= hi
    assert data["reference"]["source"] == "computed" and data["reference"]["runtime"] == "torch"
    sheet = tmp_path / "flips" / "flips.png"
    with Image.open(sheet) as im:
        assert im.format == "PNG" and im.size[0] > 200
    md = (tmp_path / "r.md").read_text()
    assert "## Flipped images" in md and "## Per class" in md and "## Agreement by the reference" in md
    assert "flips contact sheet" in result.out


@pytest.mark.slow
def test_ray_gives_the_same_report(demo_onnx, tmp_path):
    pytest.importorskip("ray")
    plain = _validate(demo_onnx, "--data", "digits:test", "--no-cache", "--json", tmp_path / "plain.json")
    on_ray = _validate(demo_onnx, "--data", "digits:test", "--no-cache", "--ray", "--json", tmp_path / "ray.json")
    assert plain.code == on_ray.code == 0, on_ray.err
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "ray"))
    assert a.pop("timing")["executor"] == "local" and b.pop("timing")["executor"] == "ray"
    assert a == b
