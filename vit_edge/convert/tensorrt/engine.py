"""Build a TensorRT engine from a TensorRT-ready ONNX: strongly typed, one path for TensorRT 10.x and 11.x.

Precision lives in the ONNX (explicit INT8 Q/DQ, or an FP16 graph with FP32 islands), so the builder sets
no precision flags: TensorRT 11 removed them (BuilderFlag.FP16/INT8, int8 calibrators), and TensorRT 10
(JetPack 6) honours the same strongly typed network when asked with STRONGLY_TYPED, a flag TensorRT 11
still accepts and ignores ("strongly typed mode is always enabled").

Pages followed:
- Builder / NetworkDefinitionCreationFlag, 10.x and 11.0:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
  https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/_static/python-api/infer/Core/Builder.html
- Weak to strong typing (build_serialized_network on a strongly typed network):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-patterns.html
- Removed in 11.x (what not to call):
  https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
- IBuilderConfig (set_memory_pool_limit, add_optimization_profile, create/set_timing_cache,
  default_device_type, DLA_core, BuilderFlag.GPU_FALLBACK), IOptimizationProfile.set_shape:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/index.html
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from vit_edge.errors import BackendUnavailable, ExportError, VitEdgeError, require

log = logging.getLogger("vit_edge")

MIN_TENSORRT = 10


def unavailable_reason() -> str | None:
    """Why no engine can be built on this machine (None: TensorRT >= 10 and a CUDA GPU are here)."""
    try:
        import tensorrt as trt
    except ImportError:
        return "TensorRT is not installed"
    try:
        major = int(trt.__version__.split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_TENSORRT:
        return f"TensorRT {trt.__version__} is older than {MIN_TENSORRT}.0 (no strongly typed networks)"
    from vit_edge.runtimes.tensorrt import gpu_info

    try:
        gpu_info()
    except VitEdgeError as exc:
        return exc.message
    return None


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_engine(onnx_path: Path, engine_path: Path, *, batch: tuple, workspace_gb: float | None = None,
                 dla_core: int | None = None, timing_cache: Path | None = None) -> dict:
    """Parse ``onnx_path`` into a strongly typed network, build, and write ``engine_path`` atomically.

    ``batch`` is the (min, opt, max) optimization profile of the first input's batch axis; the other
    axes are taken from the ONNX. Returns what the manifest records about the engine.
    """
    trt = require("tensorrt", "tensorrt")
    from vit_edge.runtimes.tensorrt import gpu_info

    gpu = gpu_info()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors[:300]}",
                          hint="run the static checks (vit_edge.convert.tensorrt.checks) and report the model")
    config = builder.create_builder_config()
    if workspace_gb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))

    tensor = network.get_input(0)
    dims = tuple(tensor.shape)
    if any(d < 0 for d in dims[1:]):
        raise ExportError(f"input {tensor.name} has dynamic axes besides the batch: {dims}",
                          hint="export with a fixed input size")
    profile = builder.create_optimization_profile()
    low, opt, high = ((b, *dims[1:]) for b in batch)
    profile.set_shape(tensor.name, low, opt, high)
    config.add_optimization_profile(profile)

    if dla_core is not None:
        if builder.num_DLA_cores <= dla_core:
            raise BackendUnavailable(f"DLA core {dla_core} requested but this device has {builder.num_DLA_cores}",
                                     hint="drop --dla-core (DLA exists on Jetson AGX/NX Orin and Xavier)")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU

    cache = None
    if timing_cache is not None:
        blob = Path(timing_cache).read_bytes() if Path(timing_cache).exists() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {onnx_path.name}",
                          hint="re-run with -v; try a larger --workspace")
    _write_atomic(engine_path, bytes(serialized))
    if cache is not None:
        _write_atomic(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
    return {"file": engine_path.name, "tensorrt_version": trt.__version__, "gpu": gpu["name"],
            "compute_capability": gpu["compute_capability"], "input": tensor.name,
            "profile": {"min": list(low), "opt": list(opt), "max": list(high)},
            "workspace_gb": workspace_gb, "dla_core": dla_core,
            "timing_cache": str(timing_cache) if timing_cache else None}
