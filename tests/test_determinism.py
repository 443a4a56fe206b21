"""Same model, data and --seed -> byte-identical artifacts and manifests (``created`` and
``convert_seconds`` aside), across processes, hash seeds and thread counts."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not

# The only manifest fields allowed to differ between identical runs.
VOLATILE = ("created", "convert_seconds")


def fingerprint(out: Path) -> dict:
    """sha256 of every file of an artifact; the manifest with its volatile fields removed."""
    prints = {}
    for path in sorted(out.iterdir()):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            for key in VOLATILE:
                manifest.pop(key)
            data = json.dumps(manifest, sort_keys=True).encode()
        prints[path.name] = hashlib.sha256(data).hexdigest()
    return prints


def _convert_twice(tmp_path: Path, *args: str) -> tuple[dict, dict]:
    """Once in this process (after other work, as in a long-lived app), once in a fresh one with another
    hash seed and one thread."""
    from conftest import run_cli

    _advance_process_counters()
    first = run_cli("convert", *args, "--out", tmp_path / "a")
    assert first.code == 0, first.err
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    second = subprocess.run([sys.executable, "-m", "vit_edge", "convert", *args, "--out", str(tmp_path / "b")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert second.returncode == 0, second.stderr
    return fingerprint(tmp_path / "a"), fingerprint(tmp_path / "b")


def _advance_process_counters() -> None:
    """Build a throwaway OpenVINO graph: OpenVINO names unnamed nodes from a process-wide counter, so an IR
    that depends on what ran before in the process differs after this."""
    import numpy as np
    import openvino as ov
    from openvino import opset13

    x = opset13.parameter([2], np.float32)
    ov.Model([opset13.relu(opset13.add(x, opset13.constant(np.ones(2, np.float32))))], [x])


def _needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"{module} is not merged yet")


def test_onnx_fp32_is_reproducible(tmp_path):
    a, b = _convert_twice(tmp_path, "--seed", "3")
    assert sorted(a) == ["manifest.json", "model.onnx"]
    assert a == b


# A small calibration and validation set: determinism does not depend on their size.
INT8 = ("--precision", "int8", "--calib", "digits:train", "--calib-size", "32", "--validate-limit", "32")


@_needs("vit_edge.convert.stages.quantize")
def test_onnx_int8_is_reproducible(tmp_path):
    a, b = _convert_twice(tmp_path, *INT8)
    assert "model.onnx" in a
    assert a == b


@_needs("vit_edge.convert.openvino")
def test_openvino_int8_is_reproducible(tmp_path):
    """INT8 covers the whole OpenVINO path (convert_model, NNCF on the OpenVINO model, save_model)."""
    a, b = _convert_twice(tmp_path, "--target", "openvino", *INT8)
    assert "model.xml" in a and "model.bin" in a
    assert a == b


def test_seed_changes_random_init(tmp_path):
    """The control: --seed does reach the model (a random-init model with another seed differs)."""
    from vit_edge.sources import load_model

    spec = f"{REPO / 'tests' / 'models' / 'encoder_vit.py'}:make_model"
    a, b, c = (load_model(spec, seed=s).module.state_dict() for s in (1, 1, 2))
    assert all((a[k] == b[k]).all() for k in a)
    assert any(not (a[k] == c[k]).all() for k in a)
