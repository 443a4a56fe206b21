"""What of the TensorRT target can be checked without TensorRT or a GPU, checked for real.

trtexec lines per TensorRT major, the DLA refusals, the operator/opset table per TensorRT version, the
explicit-axis Q/DQ rule, board-aware engine matching, the engine-inspector parser, the timing cache's
fallback and merge, engine file permissions, the smoke script without TensorRT -- and the runtime itself
(pool of execution contexts, pinned buffers, FP16 I/O, DLA core, checked returns, close) against a fake
``tensorrt`` and a fake ``cuda.bindings.runtime`` whose "device memory" is host memory.
"""

from __future__ import annotations

import ctypes
import os
import stat
import subprocess
import sys
import threading
import time
import types
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, run_cli
from onnx import TensorProto, helper

from vit_edge.convert.tensorrt import checks, dla, trtexec_command, trtexec_commands
from vit_edge.convert.tensorrt.layers import parse_layers, precision_of, summarize
from vit_edge.errors import ArtifactError, BackendUnavailable
from vit_edge.preprocess import PreprocessConfig

PRE = PreprocessConfig(input_size=(224, 224))
LINE = dict(input_name="pixel_values", batch=(8, 8, 8), workspace_gb=1.5, timing_cache="cache dir/vit.cache")

# ------------------------------------------------------------------ trtexec lines (defects 1, 3)


def test_gpu_lines_are_strongly_typed_on_both_majors_and_name_an_absolute_cache():
    lines = trtexec_commands(PRE, precision="int8", **LINE)
    cache = os.path.abspath("cache dir/vit.cache")
    assert set(lines) == {"10.x", "11.x"} and lines["10.x"] == lines["11.x"]
    assert lines["10.x"] == ("trtexec --onnx=model.onnx --saveEngine=model.engine --stronglyTyped "
                             "--minShapes=pixel_values:8x3x224x224 --optShapes=pixel_values:8x3x224x224 "
                             "--maxShapes=pixel_values:8x3x224x224 --memPoolSize=workspace:1536 "
                             f"'--timingCacheFile={cache}'")


@pytest.mark.parametrize("precision,flags", [("int8", "--int8 --fp16"), ("fp16", "--fp16")])
def test_dla_line_for_tensorrt_10_is_weakly_typed_with_the_precisions_dla_needs(precision, flags):
    line10 = trtexec_command(PRE, precision=precision, dla_core=1, major="10.x", **LINE)
    # trtexec 10.x sets kFP16 for --useDLACore unless --int8, which the strongly typed builder refuses.
    assert "--stronglyTyped" not in line10
    assert f"--memPoolSize=workspace:1536 --useDLACore=1 --allowGPUFallback {flags} '--timingCacheFile=" in line10
    line11 = trtexec_command(PRE, precision=precision, dla_core=1, major="11.x", **LINE)
    assert "--stronglyTyped" in line11 and "--useDLACore=1 --allowGPUFallback" in line11
    assert "--fp16" not in line11 and "--int8" not in line11  # removed in TensorRT 11


def test_no_dla_line_from_an_fp32_onnx():
    with pytest.raises(ValueError, match="FP16 and INT8"):
        trtexec_command(PRE, precision="fp32", dla_core=0, major="10.x", **LINE)


# ------------------------------------------------------------------ DLA refusals (defect 2)


def test_dla_with_fp32_is_refused_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "x"
    result = run_cli("convert", "--target", "tensorrt", "--precision", "fp32", "--dla-core", "0", "--batch", "8",
                     "--out", out)
    assert_one_line_error(result, 2, "--dla-core needs --precision fp16 or int8")
    assert not out.exists()


def test_dla_with_a_dynamic_batch_is_refused(tmp_path):
    result = run_cli("convert", "--target", "tensorrt", "--precision", "fp16", "--dla-core", "0",
                     "--out", tmp_path / "x")
    assert_one_line_error(result, 2, "--dla-core needs a fixed batch", "--batch 1,8,32")


@pytest.mark.parametrize("version,has_dla", [("10.3.0.30", True), ("10.7.0", True), ("10.8.0", False),
                                             ("10.15.1", False), ("11.2.0", False), ("11.4.0", False),
                                             ("11.4.1", True), ("11.5.0", True)])
def test_dla_versions_follow_nvidias_dla_page(version, has_dla):
    assert (dla.unavailable_reason(version) is None) is has_dla


def test_dla_core_this_board_lacks_is_refused():
    with pytest.raises(BackendUnavailable, match="DLA core 1 requested but this device has 1"):
        dla.check_cores("10.3.0", 1, 1)
    with pytest.raises(BackendUnavailable, match="10.7 was the last"):
        dla.check_cores("10.9.0", 0, 2)


# ------------------------------------------------------------------ operators and opsets per TensorRT (defect 10)


def _model(op_type: str, opset: int, domain: str = ""):
    node = helper.make_node(op_type, ["x"], ["y"], name="n", domain=domain)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_jetpack6_tensorrt_is_the_default_target_and_names_the_op_that_is_too_new():
    problems = checks.check_operators(_model("RMSNormalization", 20))
    assert problems == ["operator RMSNormalization needs TensorRT 10.15 (the parser of TensorRT 10.3 lacks it); "
                        "keep it out of the export, or raise --trt-version"]
    assert checks.check_operators(_model("RMSNormalization", 20), "10.15") == []
    assert any("needs TensorRT 10.14" in p for p in checks.check_operators(_model("Attention", 20), "10.13"))
    assert any("HannWindow needs TensorRT 10.4" in p for p in checks.check_operators(_model("HannWindow", 18)))


def test_opset_ceiling_depends_on_the_targeted_tensorrt():
    problem = checks.check_operators(_model("Relu", 21))[0]
    assert "opset 21 is newer than TensorRT 10.3's ONNX parser supports (opset 9 to 20)" in problem
    assert checks.check_operators(_model("Relu", 24), "10.15") == []
    assert "opset 9 to 24" in checks.check_operators(_model("Relu", 25), "11.0")[0]
    assert checks.check_operators(_model("Relu", 25), "11.5") == []


def test_trt_version_flag_is_parsed_and_bad_ones_refused(tmp_path):
    assert_one_line_error(run_cli("convert", "--target", "tensorrt", "--trt-version", "9.2", "--out", tmp_path / "x"),
                          2, "--trt-version", "older than 10.0")
    assert_one_line_error(run_cli("convert", "--target", "onnx", "--trt-version", "10.3", "--out", tmp_path / "y"),
                          2, "--trt-version does not apply to --target onnx")
    assert "--trt-version" in run_cli("convert", "--help").out


# ------------------------------------------------------------------ Q/DQ without an explicit axis (defects 4, 12)


def test_per_channel_qdq_without_an_explicit_axis_is_flagged():
    from test_qdq import _graph

    from vit_edge.convert.stages import qdq

    implicit = _graph(act_zp=np.int8(0), weight_axis=None)  # ONNX reads axis 1: right for ONNX Runtime
    problems = qdq.check_rules(implicit)
    assert problems == ["DequantizeLinear dq_w: 3 per-channel scales but no explicit axis (ONNX reads a missing "
                        "axis as 1, older TensorRT parsers as 0); set axis"]
    assert checks.check_tensorrt_ready(implicit, "int8") == problems
    assert qdq.check_rules(_graph(act_zp=np.int8(0), weight_axis=1)) == []
    per_tensor = _graph(act_zp=np.int8(0), per_channel=False, weight_axis=None)
    assert not any("explicit axis" in p for p in qdq.check_rules(per_tensor))  # one scale: no axis needed


# ------------------------------------------------------------------ Jetson boards (defect 8)

AGX = {"name": "Orin", "compute_capability": "8.7", "sm_count": 16, "total_memory": 61 << 30,
       "board": "NVIDIA Jetson AGX Orin Developer Kit", "dla_cores": 2}
NANO = {"name": "Orin", "compute_capability": "8.7", "sm_count": 8, "total_memory": 7 << 30,
        "board": "NVIDIA Jetson Orin Nano Developer Kit", "dla_cores": 0}


def _recorded(board: dict, **extra) -> dict:
    return {"tensorrt_version": "10.3.0", "gpu": board["name"], **{k: board[k] for k in
            ("compute_capability", "sm_count", "total_memory", "board")}, **extra}


def test_an_engine_from_another_orin_module_is_refused_naming_both_boards():
    from vit_edge.runtimes.tensorrt import check_engine, engine_mismatch

    reason = engine_mismatch(_recorded(AGX), "10.3.0", NANO)
    assert "AGX Orin Developer Kit (16 SMs" in reason and "Orin Nano Developer Kit (8 SMs" in reason
    with pytest.raises(ArtifactError) as info:
        check_engine(_recorded(AGX), "10.3.0", NANO, "out/x")
    assert info.value.one_line().endswith("rebuild it on this machine: vit-edge build-engine out/x")
    same_sms = {**AGX, "total_memory": 30 << 30}  # e.g. a 32 GB module of the same SM count
    reason = engine_mismatch(_recorded(AGX), "10.3.0", same_sms)
    assert "this is NVIDIA Jetson AGX Orin Developer Kit (16 SMs, 30.0 GiB)" in reason
    assert engine_mismatch(_recorded(AGX), "10.3.0", {**AGX, "total_memory": (61 << 30) - (1 << 29)}) is None


def test_a_dla_engine_needs_its_dla_core_and_a_carrier_board_change_only_warns(caplog):
    from vit_edge.runtimes.tensorrt import check_engine, engine_mismatch

    assert "DLA core 1" in engine_mismatch(_recorded(AGX, dla_core=1), "10.3.0", {**AGX, "dla_cores": 1})
    carrier = {**AGX, "board": "Seeed reComputer J4012"}
    with caplog.at_level("WARNING", logger="vit_edge"):
        check_engine(_recorded(AGX), "10.3.0", carrier, "d")
    assert "running on Seeed reComputer J4012" in caplog.text


def test_board_is_read_from_the_device_tree(tmp_path):
    from vit_edge.runtimes.tensorrt import board_model

    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert board_model(model) == "NVIDIA Jetson AGX Orin Developer Kit"
    assert board_model(tmp_path / "absent") is None


# ------------------------------------------------------------------ engine inspector parsing (defects 2, 12)

INSPECTOR = {"Layers": [
    {"Name": "/blocks.0/attn/qkv/MatMul", "LayerType": "CaskGemmMatrixMultiply", "TacticName": "sm87_xmma_gemm_i8i8",
     "Inputs": [{"Name": "a", "Format/Datatype": "Row major linear Int8"}],
     "Outputs": [{"Name": "b", "Format/Datatype": "Row major linear FP32"}]},
    {"Name": "/blocks.0/norm1/LayerNormalization", "LayerType": "Normalization",
     "Inputs": [{"Format/Datatype": "Float"}], "Outputs": [{"Format/Datatype": "Float"}]},
    {"Name": "/blocks.0/attn/Softmax", "LayerType": "CaskSoftMaxV2",
     "Inputs": [{"Format/Datatype": "Half"}], "Outputs": [{"Format/Datatype": "Row major linear FP16 format"}]},
    {"Name": "pixel_values to nvm", "LayerType": "Reformat", "Inputs": [], "Outputs": []},
    {"Name": "{ForeignNode[/patch/Conv...]}", "LayerType": "DLA", "Inputs": [], "Outputs": []},
], "Bindings": ["pixel_values", "logits"]}


def test_inspector_json_gives_per_layer_precisions_and_dla_placement():
    layers = parse_layers(INSPECTOR)
    assert [layer["inputs"] for layer in layers[:3]] == [["INT8"], ["FP32"], ["FP16"]]
    assert [layer["dla"] for layer in layers] == [False, False, False, True, True]
    assert summarize(layers) == {"layers": 5, "dla": 2, "fp32": 2, "fp16": 1, "int8_gemms": 1}
    assert precision_of("N/A due to dynamic shapes") is None
    assert precision_of("Thirty-two wide channel vectorized row major Int8 format.") == "INT8"
    assert parse_layers('{"Layers": ["a + b"]}')[0]["name"] == "a + b"  # LAYER_NAMES_ONLY engines


# ------------------------------------------------------------------ timing cache and file modes (defects 3, 13)


class FakeCache:
    def __init__(self, blob: bytes):
        self.entries = set(blob.decode().split(",")) - {""} if blob else set()
        self.combined = []

    def combine(self, other, ignore_mismatch):
        self.combined.append(ignore_mismatch)
        self.entries |= other.entries
        return True

    def serialize(self):
        return ",".join(sorted(self.entries)).encode()


class FakeConfig:
    def __init__(self, accept_blobs: bool, keep: bool = True):
        self.accept_blobs, self.keep, self.cache = accept_blobs, keep, None

    def create_timing_cache(self, blob):
        return FakeCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache.entries and not self.accept_blobs:  # "a failure will be reported" for another device's cache
            return False
        self.cache = cache
        return True

    def get_timing_cache(self):
        return self.cache if self.keep else None


def test_a_foreign_timing_cache_falls_back_to_a_fresh_one_and_is_merged_on_save(tmp_path, caplog):
    from vit_edge.convert.tensorrt.engine import attach_timing_cache, save_timing_cache

    path = tmp_path / "vit.cache"
    path.write_bytes(b"other-device-entry")
    config = FakeConfig(accept_blobs=False)
    with caplog.at_level("WARNING", logger="vit_edge"):
        cache = attach_timing_cache(config, path)
    assert cache is not None and cache.entries == set() and "another device" in caplog.text
    cache.entries.add("this-device-entry")  # what the build timed
    mask = os.umask(0o022)
    try:
        assert save_timing_cache(config, path)
    finally:
        os.umask(mask)
    assert path.read_bytes() == b"other-device-entry,this-device-entry" and cache.combined == [True]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_build_without_a_timing_cache_to_save_does_not_crash(tmp_path):
    from vit_edge.convert.tensorrt.engine import save_timing_cache

    assert save_timing_cache(FakeConfig(accept_blobs=True, keep=False), tmp_path / "c") is False
    assert not (tmp_path / "c").exists()


def test_engine_files_get_the_umask_not_mkstemps_0600(tmp_path):
    from vit_edge.convert.tensorrt.engine import write_atomic

    mask = os.umask(0o022)
    try:
        write_atomic(tmp_path / "model.engine", b"engine")
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / "model.engine").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["model.engine"]


# ------------------------------------------------------------------ the smoke script (defect 15)


def test_smoke_script_says_in_one_line_that_tensorrt_is_missing():
    from vit_edge.convert.tensorrt.engine import unavailable_reason

    if unavailable_reason() is None:
        pytest.skip("TensorRT and a GPU are here: the smoke script would really run")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "tensorrt_smoke.py")], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: tensorrt_smoke:") and "TensorRT is not installed" in lines[0]
    assert proc.stdout == ""


# ------------------------------------------------------------------ the runtime against fakes (defects 2, 5, 6, 7, 14)


class FakeCuda:
    """cuda.bindings.runtime with host memory standing in for the device; counts what is allocated, from
    which thread the device is set, and whether copies go through pinned (cudaMallocHost) memory."""

    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)  # noqa: N815

    def __init__(self):
        self.device, self.pinned, self.streams = {}, {}, {}
        self.threads_set, self.pageable_copies, self.lock = set(), 0, threading.Lock()
        ok = lambda *args: (0,)  # noqa: E731
        self.cudaGetDeviceCount = lambda: (0, 1)
        self.cudaGetDeviceProperties = lambda device: (0, SimpleNamespace(
            name=b"Orin", major=8, minor=7, multiProcessorCount=16, totalGlobalMem=61 << 30))
        self.cudaSetDevice = lambda device: (self.threads_set.add(threading.get_ident()), (0,))[1]
        self.cudaMalloc = lambda n: self._alloc(self.device, n)
        self.cudaMallocHost = lambda n: self._alloc(self.pinned, n)
        self.cudaFree = lambda ptr: self._drop(self.device, ptr)
        self.cudaFreeHost = lambda ptr: self._drop(self.pinned, ptr)
        self.cudaStreamCreate = lambda: self._alloc(self.streams, 1)
        self.cudaStreamDestroy = lambda stream: self._drop(self.streams, stream)
        self.cudaStreamSynchronize = ok

    def _alloc(self, table, nbytes):
        buf = (ctypes.c_ubyte * nbytes)()
        with self.lock:
            table[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    def _drop(self, table, ptr):
        with self.lock:
            del table[ptr]
        return (0,)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):  # noqa: N802
        if (src if kind == self.cudaMemcpyKind.cudaMemcpyHostToDevice else dst) not in self.pinned:
            self.pageable_copies += 1
        ctypes.memmove(dst, src, nbytes)
        return (0,)


def _view(ptr, dtype, shape):
    count = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_ubyte)), (count,)).view(dtype).reshape(shape)


def fake_tensorrt(dtype="half", *, contexts_ok=True, shape_ok=True, address_ok=True):
    """A ``tensorrt`` module whose engine computes logits = 2 * the first 10 input values, in ``dtype``."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = "10.3.0"
    trt.made = SimpleNamespace(runtimes=[], contexts=[])
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, severity=None: None})
    trt.TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.nptype = {"half": np.float16, "float": np.float32}.__getitem__

    class Context:
        def __init__(self):
            self.shape, self.addresses = None, {}

        def set_input_shape(self, name, shape):
            self.shape = tuple(shape)
            return shape_ok and name == "pixel_values" and 1 <= shape[0] <= 32

        def get_tensor_shape(self, name):
            return (self.shape[0], 10)

        def set_tensor_address(self, name, ptr):
            self.addresses[name] = ptr
            return address_ok

        def execute_async_v3(self, stream):
            x = _view(self.addresses["pixel_values"], trt.nptype(dtype), self.shape).copy()
            time.sleep(0.0005)  # a window in which a shared buffer would be overwritten by another thread
            out = (2 * x.reshape(len(x), -1)[:, :10].astype(np.float32)).astype(trt.nptype(dtype))
            _view(self.addresses["logits"], trt.nptype(dtype), out.shape)[...] = out
            return True

    class Engine:
        num_io_tensors = 2
        get_tensor_name = staticmethod(("pixel_values", "logits").__getitem__)
        get_tensor_dtype = staticmethod(lambda name: dtype)
        get_tensor_profile_shape = staticmethod(lambda name, profile: [(1, 3, 32, 32), (8, 3, 32, 32), (32, 3, 32, 32)])

        def get_tensor_mode(self, name):
            return trt.TensorIOMode.INPUT if name == "pixel_values" else trt.TensorIOMode.OUTPUT

        def create_execution_context(self):
            trt.made.contexts.append(Context() if contexts_ok else None)
            return trt.made.contexts[-1]

    class Runtime:
        num_DLA_cores = 2

        def __init__(self, logger):
            self.DLA_core, self.dla_core_at_deserialize = -1, None
            trt.made.runtimes.append(self)

        def deserialize_cuda_engine(self, data):
            self.dla_core_at_deserialize = self.DLA_core
            return Engine()

    trt.Runtime = Runtime
    return trt


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install a fake ``cuda.bindings.runtime``; returns it. ``install(trt)`` installs a fake tensorrt."""
    cuda_rt = FakeCuda()
    bindings = types.ModuleType("cuda.bindings")
    bindings.runtime = cuda_rt
    cuda = types.ModuleType("cuda")
    cuda.bindings = bindings
    for name, module in (("cuda", cuda), ("cuda.bindings", bindings), ("cuda.bindings.runtime", cuda_rt)):
        monkeypatch.setitem(sys.modules, name, module)
    cuda_rt.install = lambda trt: monkeypatch.setitem(sys.modules, "tensorrt", trt)
    return cuda_rt


def _runtime(tmp_path, *, dla_core=None, contexts=2):
    from vit_edge.artifact import sha256_file
    from vit_edge.runtimes.tensorrt import TensorRTRuntime

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"fake engine")
    recorded = {"tensorrt_version": "10.3.0", "gpu": "Orin", "compute_capability": "8.7", "sm_count": 16,
                "total_memory": 61 << 30, "dla_core": dla_core, "sha256": sha256_file(engine)}
    manifest = SimpleNamespace(tensorrt=SimpleNamespace(engine=recorded))
    return TensorRTRuntime(engine, preprocess=PreprocessConfig(input_size=(32, 32)), manifest=manifest,
                           contexts=contexts)


def _expected(batch, dtype=np.float16):
    return (2 * batch.astype(dtype).reshape(len(batch), -1)[:, :10].astype(np.float32)).astype(dtype).astype(np.float32)


def test_fp16_io_engine_runs_through_pinned_buffers(fake_gpu, tmp_path):
    fake_gpu.install(fake_tensorrt("half"))
    runtime = _runtime(tmp_path)
    assert runtime.input_dtype == np.float16 and runtime.output_dtype == np.float16
    batch = np.random.default_rng(0).normal(size=(40, 3, 32, 32)).astype(np.float32)  # > profile max 32: split
    out = runtime.run(batch)
    assert out.dtype == np.float32 and out.shape == (40, 10)
    np.testing.assert_array_equal(out, _expected(batch))
    assert fake_gpu.pinned and fake_gpu.pageable_copies == 0


def test_one_runtime_shared_by_eight_threads_matches_sequential_runs(fake_gpu, tmp_path):
    trt = fake_tensorrt("float")
    fake_gpu.install(trt)
    runtime = _runtime(tmp_path, contexts=3)
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(int(rng.integers(1, 9)), 3, 32, 32)).astype(np.float32) for _ in range(64)]
    results, errors = {}, []
    # All eight alive at once: a thread that ended could hand its ident to the next one, and the count of
    # threads that set the device would then come out short on a busy machine.
    together = threading.Barrier(8)

    def work(offset):
        try:
            together.wait(timeout=60)
            for i in range(offset, len(inputs), 8):
                results[i] = runtime.run(inputs[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i, batch in enumerate(inputs):
        np.testing.assert_array_equal(results[i], _expected(batch, np.float32))
    assert len(trt.made.contexts) <= 3  # a bounded pool, not a context per call
    assert len(fake_gpu.threads_set) >= 8  # the device was set in every calling thread, not only __init__


def test_the_recorded_dla_core_is_set_before_deserializing(fake_gpu, tmp_path):
    trt = fake_tensorrt("half")
    fake_gpu.install(trt)
    _runtime(tmp_path, dla_core=1).close()
    assert trt.made.runtimes[-1].dla_core_at_deserialize == 1


@pytest.mark.parametrize("failure,needle", [("contexts_ok", "could not create an execution context"),
                                            ("shape_ok", "input tensor 'pixel_values'"),
                                            ("address_ok", "address of tensor 'pixel_values'")])
def test_tensorrt_calls_that_return_false_or_none_raise_naming_the_tensor(fake_gpu, tmp_path, failure, needle):
    fake_gpu.install(fake_tensorrt("float", **{failure: False}))
    with pytest.raises(ArtifactError, match=needle):
        _runtime(tmp_path).run(np.zeros((2, 3, 32, 32), np.float32))


def test_close_frees_every_buffer_stream_and_context_and_is_idempotent(fake_gpu, tmp_path):
    fake_gpu.install(fake_tensorrt("half"))
    with _runtime(tmp_path) as runtime:
        runtime.run(np.ones((4, 3, 32, 32), np.float32))
        assert fake_gpu.device and fake_gpu.pinned and fake_gpu.streams
    assert not fake_gpu.device and not fake_gpu.pinned and not fake_gpu.streams and runtime.engine is None
    runtime.close()
    with pytest.raises(ArtifactError, match="closed"):
        runtime.run(np.ones((1, 3, 32, 32), np.float32))


def test_an_engine_with_integer_io_is_refused(fake_gpu, tmp_path):
    trt = fake_tensorrt("float")
    trt.nptype = {"float": np.int8}.__getitem__
    fake_gpu.install(trt)
    with pytest.raises(ArtifactError, match="floating-point"):
        _runtime(tmp_path)
