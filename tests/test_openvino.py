"""OpenVINO target and runtime: f32 really runs for FP32, devices, hints, threads, no torch at run time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from conftest import REPO, assert_one_line_error, run_cli
from vit_edge import runtimes
from vit_edge.data import load_images
from vit_edge.errors import BackendUnavailable

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not

pytest.importorskip("openvino")


@pytest.fixture(scope="session")
def ov_fp32(tmp_path_factory):
    """The demo model as an FP32 OpenVINO IR (exported from torch, so its parity check runs)."""
    from vit_edge.convert import convert

    out = tmp_path_factory.mktemp("ov") / "fp32"
    convert(None, target="openvino", precision="fp32", out=out)
    return out


def _digits_batch(preprocess, n=64):
    batch, labels = next(load_images("digits:test").batches(preprocess, batch_size=n))
    return batch, labels


def test_fp32_ir_runs_f32_and_matches_torch(ov_fp32):
    import torch

    from vit_edge.sources import load_model

    manifest = json.loads((ov_fp32 / "manifest.json").read_text())
    assert manifest["artifact"] == "model.xml" and {"model.xml", "model.bin"} <= set(manifest["files"])
    assert not list(ov_fp32.glob("*.onnx"))  # the intermediate ONNX is not part of the artifact
    assert manifest["openvino"]["parity"]["inference_precision"] == "f32"
    runtime = runtimes.load(ov_fp32)
    assert runtime.info()["inference_precision"] == "f32" and runtime.info()["device"] == "CPU"
    batch, _ = _digits_batch(runtime.preprocess)
    with torch.no_grad():
        reference = load_model(None).module(torch.from_numpy(batch)).numpy()
    error = float(np.abs(runtime.run(batch) - reference).max())
    assert error <= 1e-4, error  # bf16 would be ~1e-2: this proves f32 ran


def test_bf16_is_what_the_plugin_picks_unless_told(ov_fp32):
    """Why the f32 hint matters: asked for bf16 explicitly, the same IR drifts far beyond 1e-4."""
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16")
    f32 = runtimes.load(ov_fp32)
    bf16 = runtimes.load(ov_fp32, inference_precision="bf16")
    assert bf16.info()["inference_precision"] == "bf16"
    batch, _ = _digits_batch(f32.preprocess, 32)
    assert float(np.abs(bf16.run(batch) - f32.run(batch)).max()) > 1e-3


def test_fp16_ir_from_onnx_input(demo_onnx, ov_fp32, tmp_path):
    from vit_edge.convert import convert

    out = tmp_path / "fp16"
    result = convert(str(demo_onnx / "model.onnx"), target="openvino", precision="fp16", out=out)
    assert result.manifest.openvino.compressed_to_fp16 is True
    size16, size32 = (out / "model.bin").stat().st_size, (ov_fp32 / "model.bin").stat().st_size
    assert size16 < 0.6 * size32, (size16, size32)
    fp16, fp32 = runtimes.load(out), runtimes.load(ov_fp32)
    batch, labels = _digits_batch(fp32.preprocess, 128)
    assert (fp16.run(batch).argmax(1) == fp32.run(batch).argmax(1)).mean() >= 0.99


def test_unknown_device_lists_available_ones(ov_fp32):
    with pytest.raises(BackendUnavailable) as info:
        runtimes.load(ov_fp32, device="NPU7")
    assert "available devices: CPU" in info.value.one_line()
    result = run_cli("validate", ov_fp32, "--data", "digits:test", "--device", "TPU")
    assert_one_line_error(result, 2, "'TPU'", "available devices", "CPU")


def test_auto_device_and_throughput_hint(ov_fp32):
    runtime = runtimes.load(ov_fp32, device="auto", hint="throughput")
    assert runtime.info()["device"] == "AUTO" and runtime.info()["hint"] == "throughput"
    batch, labels = _digits_batch(runtime.preprocess, 64)
    assert (runtime.run(batch).argmax(1) == labels).mean() >= 0.95
    with pytest.raises(BackendUnavailable, match="unknown performance hint"):
        runtimes.load(ov_fp32, hint="fastest")


def test_one_runtime_from_eight_threads(ov_fp32):
    runtime = runtimes.load(ov_fp32)
    batch, _ = _digits_batch(runtime.preprocess, 64)
    chunks = [batch[i:i + 8] for i in range(0, 64, 8)]
    expected = [runtime.run(c) for c in chunks]
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            got = list(pool.map(runtime.run, chunks))
            for e, g in zip(expected, got):
                np.testing.assert_allclose(g, e, rtol=0, atol=1e-5)


def test_running_an_openvino_artifact_imports_no_torch(ov_fp32, samples):
    photo = sorted(samples.glob("*.JPEG"))[0]
    code = textwrap.dedent(f"""
        import sys
        from vit_edge import runtimes
        runtime = runtimes.load({str(ov_fp32)!r})
        logits = runtime.predict([{str(photo)!r}])
        assert logits.shape == (1, 10), logits.shape
        heavy = sorted(m for m in ("torch", "nncf", "onnx", "timm", "transformers") if m in sys.modules)
        print("heavy:", heavy)
        assert not heavy, heavy
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "heavy: []" in proc.stdout
