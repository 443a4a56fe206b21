"""Real TensorRT engines, built and loaded safely: an engine file that is not the one the manifest records
is refused before TensorRT reads a byte of it; a timing cache it cannot use does not kill the build; the
engine file is readable as the umask allows; the recorded trtexec line builds; one runtime serves many
threads; a DLA engine puts layers on DLA. Needs TensorRT >= 10 and a GPU (DLA: a Jetson with DLA cores)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, run_cli

from vit_edge.convert.tensorrt.engine import unavailable_reason

pytestmark = pytest.mark.tensorrt

# The same availability check as test_tensorrt.py: TensorRT importable is not enough (no GPU, no driver,
# TensorRT < 10 all make the engine fixture fail instead of skipping).
NO_TENSORRT = unavailable_reason()
if NO_TENSORRT is not None:
    pytest.skip(f"needs TensorRT >= 10 and a CUDA GPU: {NO_TENSORRT}", allow_module_level=True)


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "fp32"
    result = run_cli("convert", "--target", "tensorrt", "--require-engine", "--out", out)
    assert result.code == 0, result.err
    assert (out / "model.engine").is_file()
    return out


@pytest.fixture(scope="module")
def fp16_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "fp16"
    result = run_cli("convert", "--target", "tensorrt", "--precision", "fp16", "--require-engine", "--out", out)
    assert result.code == 0, result.err
    return out


def _copy(src, out, *names):
    out.mkdir()
    for name in names:
        shutil.copy(src / name, out / name)
    return out


@pytest.mark.parametrize("tamper", ["garbage", "truncated"])
def test_engine_that_is_not_the_recorded_one_is_never_deserialized(engine_dir, tmp_path, tamper):
    from vit_edge import runtimes
    from vit_edge.errors import ArtifactError

    out = tmp_path / "copy"
    shutil.copytree(engine_dir, out)
    data = (out / "model.engine").read_bytes()
    # Bytes TensorRT would reject: had it deserialized them, the error would say "could not deserialize".
    (out / "model.engine").write_bytes(b"\0" * 64 if tamper == "garbage" else data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not the one the manifest records"):
        runtimes.load(out)
    assert_one_line_error(run_cli("validate", out, "--data", "digits:test"), 2, "not the one the manifest records",
                          "build-engine")


def test_manifest_naming_an_engine_outside_its_folder_is_refused(engine_dir, tmp_path):
    from vit_edge import runtimes
    from vit_edge.errors import ArtifactError

    out = tmp_path / "copy"
    shutil.copytree(engine_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "artifact": "../elsewhere.engine"}))
    with pytest.raises(ArtifactError, match="outside its folder"):
        runtimes.load(out)


def test_a_timing_cache_it_cannot_use_is_replaced_not_fatal(fp16_dir, tmp_path):
    out = _copy(fp16_dir, tmp_path / "copy", "model.onnx", "manifest.json")
    cache = tmp_path / "foreign.cache"
    cache.write_bytes(b"\0not a timing cache of this device or TensorRT" * 64)
    result = run_cli("build-engine", out, "--timing-cache", cache)
    assert result.code == 0, result.err  # used to crash on None.serialize() after the engine was written
    assert cache.stat().st_size > 0 and b"not a timing cache" not in cache.read_bytes()
    again = run_cli("build-engine", out, "--timing-cache", cache)  # now this device's cache: taken as is
    assert again.code == 0 and "another device" not in again.err, again.err


def test_engine_is_readable_as_the_umask_allows(fp16_dir):
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((fp16_dir / "model.engine").stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600


def test_the_recorded_trtexec_line_builds(fp16_dir, tmp_path):
    import shlex

    import tensorrt

    if shutil.which("trtexec") is None:
        pytest.skip("no trtexec on PATH (the pip wheels do not ship it; JetPack has /usr/src/tensorrt/bin)")
    manifest = json.loads((fp16_dir / "manifest.json").read_text())
    out = _copy(fp16_dir, tmp_path / "line", "model.onnx")
    line = manifest["tensorrt"]["trtexec_by_version"][f"{tensorrt.__version__.split('.')[0]}.x"]
    proc = subprocess.run(shlex.split(line), cwd=out, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert (out / "model.engine").stat().st_size > 0


def test_one_engine_runtime_shared_by_threads_matches_sequential(fp16_dir):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "endurance.py"), str(fp16_dir), "--threads",
                           "8", "--predictions", "2000"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    result = json.loads(proc.stdout)
    assert result["mismatches"] == 0 and result["predictions"] == 2000, result


def test_dla_engine_places_layers_on_dla(fp16_dir, tmp_path):
    from vit_edge import runtimes
    from vit_edge.convert.tensorrt.engine import dla_unavailable_reason

    reason = dla_unavailable_reason(0)
    if reason:
        pytest.skip(f"no DLA here: {reason}")
    out = _copy(fp16_dir, tmp_path / "dla", "model.onnx", "manifest.json")
    result = run_cli("build-engine", out, "--dla-core", "0", "--batch", "8")
    assert result.code == 0, result.err
    engine = json.loads((out / "manifest.json").read_text())["tensorrt"]["engine"]
    assert engine["dla_core"] == 0 and engine["layers"]["dla"] > 0, engine["layers"]
    with runtimes.load(out) as runtime:  # the runtime sets DLA_core from the manifest before deserializing
        assert runtime.run(np.zeros((8, 3, 32, 32), np.float32)).shape == (8, 10)
