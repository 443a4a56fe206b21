"""``vit-edge debug`` keeps the FP32 reference it re-exports (``vit_edge.debug.export_cache``): a second debug
of the same artifact skips the torch rebuild and the export and reports the very same numbers; a changed
checkpoint, opset or input size is a miss; a torn entry is never served."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import run_cli
from test_debug import ENCODER, PLANTED_NODE, _edit_weights, _plant


@pytest.fixture(scope="module")
def planted_onnx(tmp_path_factory):
    """The planted encoder (one MLP channel x1000 before the ReLU) as INT8 ONNX, its checkpoint a copy the
    tests may rewrite."""
    work = tmp_path_factory.mktemp("debug-cache")
    weights = _edit_weights(work / "planted.safetensors", _plant)
    out = work / "planted-onnx"
    result = run_cli("convert", ENCODER, "--checkpoint", weights, "--target", "onnx", "--precision", "int8",
                     "--calib", "digits:train", "--smooth-quant-alpha", "-1", "--min-agreement", "0", "--out", out)
    assert result.code == 0, result.err
    return out, weights


def _debug(artifact, path):
    result = run_cli("debug", artifact, "--reference", ENCODER, "--data", "digits:test", "--limit", "32",
                     "--json", path)
    assert result.code == 0, result.err
    return json.loads(path.read_text())


def _without_timing(report: dict) -> dict:
    return {k: v for k, v in report.items() if k != "timing"}


@pytest.mark.slow
def test_a_second_debug_reuses_the_export_and_reports_the_same_numbers(planted_onnx, tmp_path, monkeypatch):
    artifact, _ = planted_onnx
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(cache))
    first = _debug(artifact, tmp_path / "first.json")
    assert first["timing"]["export_cache"] == "stored"
    assert len(list((cache / "debug-export").glob("*.onnx"))) == 1
    assert len(list((cache / "debug-export").glob("*.json"))) == 1
    second = _debug(artifact, tmp_path / "second.json")
    assert second["timing"]["export_cache"] == "hit"
    assert second["timing"]["reference"] < first["timing"]["reference"]
    assert _without_timing(second) == _without_timing(first)  # every point, culprit and the fix, to the bit
    assert first["culprits"][0]["onnx_node"] == PLANTED_NODE and first["culprits"][0]["stands_out"]
    assert first["points"][0]["module"] is not None  # named after torch modules, also from the cache
    assert sum(p["module"] == "encoder.layers.1.linear2" for p in second["points"]) >= 2
    assert second["reference"]["exporter"] == first["reference"]["exporter"] == "dynamo"
    # and with every cache off: the same report as well
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", "off")
    uncached = _debug(artifact, tmp_path / "uncached.json")
    assert "export_cache" not in uncached["timing"]
    assert _without_timing(uncached) == _without_timing(first)


@pytest.mark.slow
def test_a_changed_checkpoint_misses(planted_onnx, tmp_path, monkeypatch):
    artifact, weights = planted_onnx
    cache = tmp_path / "cache"
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(cache))
    saved = tmp_path / "saved.safetensors"
    shutil.copy2(weights, saved)
    before = _debug(artifact, tmp_path / "before.json")
    try:
        def scale(state):  # other weights under the recorded path: a different reference
            _plant(state)
            state["encoder.layers.1.linear2.weight"] *= 1.5

        _edit_weights(weights, scale)
        after = _debug(artifact, tmp_path / "after.json")
    finally:
        shutil.copy2(saved, weights)
    assert after["timing"]["export_cache"] == "stored"  # a miss, exported again
    assert len(list((cache / "debug-export").glob("*.json"))) == 2
    # the reference really is the new checkpoint: the INT8 graph of the planted model no longer matches it
    assert after["output"]["cosine"] < before["output"]["cosine"] - 0.005, (before["output"], after["output"])


def test_the_key_follows_what_determines_the_export(tmp_path, monkeypatch):
    from vit_edge.artifact import Manifest
    from vit_edge.debug import export_cache
    from vit_edge.preprocess import PreprocessConfig

    checkpoint = tmp_path / "w.safetensors"
    checkpoint.write_bytes(b"one")

    def manifest(opset=18):
        return Manifest.from_dict({"target": "onnx", "artifact": "model.onnx", "seed": 0, "task": "classify",
                                   "source": {"spec": f"{tmp_path}/m.py:build", "kind": "python",
                                              "checkpoint": str(checkpoint)},
                                   "export": {"opset": opset, "dynamic_size": False, "exporter": "dynamo"}})

    key, parts = export_cache.make_key(manifest(), PreprocessConfig(input_size=(64, 64)))
    assert export_cache.make_key(manifest(), PreprocessConfig(input_size=(64, 64)))[0] == key
    assert export_cache.make_key(manifest(17), PreprocessConfig(input_size=(64, 64)))[0] != key
    assert export_cache.make_key(manifest(), PreprocessConfig(input_size=(96, 96)))[0] != key
    assert "torch" in parts["libraries"] and parts["code"]
    checkpoint.write_bytes(b"two, longer")
    assert export_cache.make_key(manifest(), PreprocessConfig(input_size=(64, 64)))[0] != key

    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", str(tmp_path / "cache"))
    graph = tmp_path / "fp32.onnx"
    graph.write_bytes(b"an onnx file")
    stored = export_cache.store(key, parts, graph, {"names": {"gemm_modules": {}, "modules": {"b": "L", "a": "L"}},
                                                    "name": "m", "exporter": "dynamo"})
    path, meta = export_cache.load(key)
    assert path == stored and path.read_bytes() == b"an onnx file"
    assert list(meta["names"]["modules"]) == ["b", "a"]  # definition order kept (LayerNorms are matched in order)
    assert export_cache.load("0" * 64) is None
    path.write_bytes(b"torn")  # an entry whose file is not what was stored is never served
    assert export_cache.load(key) is None
    monkeypatch.setenv("VIT_EDGE_CACHE_DIR", "off")
    assert export_cache.load(key) is None and export_cache.store(key, parts, graph, {}) is None
