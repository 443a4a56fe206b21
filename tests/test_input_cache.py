"""The input cache: a second validate of the same data reads the decoded pixels, bit for bit, never the files."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli
from vit_edge import input_cache, reference_cache
from vit_edge.data import load_images
from vit_edge.preprocess import PreprocessConfig

CFG = PreprocessConfig(input_size=(24, 24), interpolation="bilinear")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VIT_EDGE_INPUT_CACHE_MB", raising=False)


def _photos(root, n=11):
    """Real RGB photos-like images of varied sizes (larger than the input: resized and cropped), two classes,
    and one file that does not decode."""
    rng = np.random.default_rng(0)
    for i in range(n):
        sub = root / ("cat" if i % 2 else "dog")
        sub.mkdir(parents=True, exist_ok=True)
        h, w = 40 + 7 * i, 90 - 3 * i
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(sub / f"{i}.png")
    (root / "dog" / "broken.png").write_text("not an image")
    return root


def _open(images, limit=None):
    return input_cache.open_inputs(images, CFG, reference_cache.data_identity(images), limit=limit,
                                   count=len(images) if limit is None else min(limit, len(images)))


def _batches(source, images):
    got = list(source.indexed_batches(CFG, batch_size=4))
    return got, list(images.skipped)


def test_a_hit_serves_exactly_the_decoded_batches_and_a_touched_file_misses(tmp_path):
    folder = _photos(tmp_path / "d")
    plain = load_images(folder)
    decoded, skipped = _batches(plain, plain)  # the plain path (no cache)
    images = load_images(folder)
    first = _open(images)
    assert not first.hit and first.info() == {"source": "decoded"}
    recorded = list(first.indexed_batches(CFG, batch_size=4))
    assert first.info() == {"source": "decoded", "cache_key": first.key[:16]}
    entries = list((tmp_path / "cache" / "inputs").iterdir())
    assert [p.name for p in entries] == [first.key]  # no temporary folder left behind
    assert sorted(p.name for p in entries[0].iterdir()) == ["meta.json", "pixels.npy"]
    images = load_images(folder)
    second = _open(images)
    assert second.hit and second.info() == {"source": "cache", "cache_key": first.key[:16]}
    served = list(second.indexed_batches(CFG, batch_size=4))
    assert len(served) == len(recorded) == len(decoded) == 3
    for (a, ya, ia), (b, yb, ib), (c, yc, ic) in zip(decoded, recorded, served):
        assert a.dtype == b.dtype == c.dtype == np.float32 and a.shape == c.shape
        assert a.tobytes() == b.tobytes() == c.tobytes()  # bit for bit
        assert list(ia) == list(ib) == list(ic) and list(ya) == list(yc)
    assert images.skipped == skipped and len(skipped) == 1 and skipped[0].endswith("broken.png")
    # the same windows as a shard would ask for them
    shard = list(second.indexed_batches(CFG, batch_size=4, start=4, stop=8))
    assert shard[0][0].tobytes() == decoded[1][0].tobytes()
    second.close()
    # a touched file, a --limit sample, another preprocessing: other keys (misses)
    touched = folder / "cat" / "1.png"
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert not _open(load_images(folder)).hit
    assert not _open(load_images(folder).sample(5), limit=5).hit
    other = input_cache.open_inputs(load_images(folder), CFG.replace(interpolation="bicubic"),
                                    reference_cache.data_identity(load_images(folder)), limit=None, count=12)
    assert other.key != first.key and not other.hit


def test_over_the_cap_or_off_the_images_are_decoded_and_nothing_is_written(tmp_path, monkeypatch):
    folder = _photos(tmp_path / "d")
    monkeypatch.setenv("VIT_EDGE_INPUT_CACHE_MB", "0.01")  # 10 kB < 12 x 24 x 24 x 3 bytes
    assert _open(load_images(folder)) is None
    monkeypatch.setenv("VIT_EDGE_INPUT_CACHE_MB", "0")
    assert _open(load_images(folder)) is None
    monkeypatch.delenv("VIT_EDGE_INPUT_CACHE_MB")
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", "off")
    assert _open(load_images(folder)) is None
    assert not (tmp_path / "cache" / "inputs").exists()


def test_an_abandoned_pass_stores_nothing_and_the_folder_keeps_under_the_cap(tmp_path, monkeypatch):
    folder = _photos(tmp_path / "d")
    inputs = _open(load_images(folder))
    batches = inputs.indexed_batches(CFG, batch_size=4)
    next(batches)
    batches.close()  # the consumer stopped (an error in the runtime): no entry, no temporary folder
    assert list((tmp_path / "cache" / "inputs").iterdir()) == []
    entry_bytes = 12 * 24 * 24 * 3 + 128
    monkeypatch.setenv("VIT_EDGE_INPUT_CACHE_MB", str(1.5 * entry_bytes / (1 << 20)))  # room for one entry
    first = _open(load_images(folder))
    list(first.indexed_batches(CFG, batch_size=4))
    (folder / "cat" / "1.png").unlink()
    second = _open(load_images(folder))
    list(second.indexed_batches(CFG, batch_size=4))
    assert [p.name for p in (tmp_path / "cache" / "inputs").iterdir()] == [second.key]  # the older one went
    entry = tmp_path / "cache" / "inputs" / second.key
    (entry / "pixels.npy").write_bytes(b"garbage")
    assert not _open(load_images(folder)).hit  # unreadable: a miss, never a crash


@pytest.mark.slow
def test_a_second_validate_reads_the_cached_inputs_and_reports_the_same_numbers(demo_onnx, tmp_path):
    folder = tmp_path / "digits"
    assert run_cli("data", "digits:test", "--out", folder).code == 0
    reports = []
    for i in range(3):
        result = run_cli("validate", demo_onnx, "--data", folder, "--json", tmp_path / f"{i}.json")
        assert result.code == 0, result.err
        reports.append(json.loads((tmp_path / f"{i}.json").read_text()))
        if i == 1:  # touch one data file: both caches miss
            file = next(folder.rglob("*.png"))
            st = file.stat()
            os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert [r["inputs"]["source"] for r in reports] == ["decoded", "cache", "decoded"]
    assert [r["reference"]["source"] for r in reports] == ["computed", "cache", "computed"]
    assert reports[0]["inputs"]["cache_key"] == reports[1]["inputs"]["cache_key"] != reports[2]["inputs"]["cache_key"]
    strip = lambda r: {k: v for k, v in r.items() if k not in ("timing", "reference", "inputs")}  # noqa: E731
    assert strip(reports[0]) == strip(reports[1]) == strip(reports[2])
    assert reports[1]["samples"] == 360 and reports[1]["top1_agreement"] == 1.0
    assert reports[1]["max_abs_error"] == reports[0]["max_abs_error"] <= 1e-4
    # --no-cache decodes and stores nothing more
    assert run_cli("validate", demo_onnx, "--data", folder, "--no-cache", "--json",
                   tmp_path / "n.json").code == 0
    assert json.loads((tmp_path / "n.json").read_text())["inputs"] == {"source": "decoded"}
    assert len(list((tmp_path / "cache" / "inputs").iterdir())) == 2
