"""Build a TensorRT engine from a TensorRT-ready ONNX: strongly typed, one path for TensorRT 10.x and 11.x.

Precision lives in the ONNX (explicit INT8 Q/DQ, or an FP16 graph with FP32 islands), so the GPU build sets
no precision flags: TensorRT 11 removed them (BuilderFlag.FP16/INT8, int8 calibrators), and TensorRT 10
(JetPack 6) honours the same strongly typed network when asked with STRONGLY_TYPED, a flag TensorRT 11
still accepts and ignores ("strongly typed mode is always enabled"). The one exception is DLA on 10.x,
built weakly typed with FP16 (+INT8) exactly as the recorded trtexec line does (see :mod:`.trtexec`).

Pages followed:
- Builder / NetworkDefinitionCreationFlag, 10.x and 11.0:
  https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Builder.html
- IBuilderConfig (set_memory_pool_limit, add_optimization_profile, create/set/get_timing_cache,
  default_device_type, DLA_core, BuilderFlag.GPU_FALLBACK, profiling_verbosity) and ITimingCache.combine:
  python/docstrings/infer/pyCoreDoc.h in NVIDIA/TensorRT
- Working with DLA: https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-with-dla.html
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from vit_edge.errors import ExportError, VitEdgeError, require

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
    except (AttributeError, ValueError):
        major = 0
    if major < MIN_TENSORRT:
        return (f"TensorRT {getattr(trt, '__version__', '?')} is older than {MIN_TENSORRT}.0 "
                "(no strongly typed networks)")
    from vit_edge.runtimes.tensorrt import gpu_info

    try:
        gpu_info()
    except VitEdgeError as exc:
        return exc.message
    return None


def dla_unavailable_reason(dla_core: int) -> str | None:
    """Why DLA core ``dla_core`` cannot be used on this machine (None: it can). Needs TensorRT."""
    import tensorrt as trt

    import vit_edge.convert.tensorrt.dla as dla

    try:
        dla.check_cores(trt.__version__, dla_core, int(trt.Runtime(trt.Logger(trt.Logger.WARNING)).num_DLA_cores))
    except VitEdgeError as exc:
        return exc.message
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` whole or not at all, with the permissions ``open()`` would give (mkstemp makes 0600,
    which a service account cannot read when root built the engine; as artifact/files.write_text does)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_cache(config, blob: bytes):
    try:
        return config.create_timing_cache(blob)
    except Exception:  # noqa: BLE001 - a blob from another TensorRT may be refused by raising, not by None
        return None


def attach_timing_cache(config, path: Path):
    """Load ``path`` into ``config``; a cache from another device or TensorRT is replaced by a fresh one.

    ``set_timing_cache`` "returns A BOOL indicating whether the operation is done successfully" and "A
    failure will be reported if the CUDA device property in the provided cache is different from current
    environment" (pyCoreDoc.h), so both results are checked instead of trusting the first cache."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = _new_cache(config, blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    if blob:
        log.warning("%s: timing cache made on another device or TensorRT version; building with a fresh one "
                    "(the file's entries are kept when it is saved)", path)
    cache = _new_cache(config, b"")
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        log.warning("%s: TensorRT would not take a timing cache; building without one", path)
        return None
    return cache


def save_timing_cache(config, path: Path) -> bool:
    """Merge the file on disk into this build's cache and write it atomically (False: nothing written).

    ``get_timing_cache`` returns "None if no timing cache is set"; ``combine`` appends the input's entries,
    skips conflicting ones (ours win) and needs ``ignore_mismatch`` "if combining a timing cache created
    from a different device" -- True here so a cache shared by two devices keeps both sets of entries
    (NVIDIA warns that mixing devices' entries "may lead to functional/performance bugs": prefer one
    cache file per device type). It returns False for a cache of another TensorRT version, whose entries
    are then dropped."""
    built = config.get_timing_cache()
    if built is None:
        log.warning("%s: no timing cache to save", path)
        return False
    if path.is_file():
        on_disk = _new_cache(config, path.read_bytes())
        if on_disk is None or not built.combine(on_disk, True):
            log.warning("%s: replaced a timing cache of another TensorRT version", path)
    blob = built.serialize()
    if blob is None:
        log.warning("%s: TensorRT could not serialize the timing cache", path)
        return False
    write_atomic(path, bytes(blob))
    return True


def _network(trt, builder, onnx_path: Path, logger, strongly_typed: bool):
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path.name}: {errors[:300]}",
                          hint="run the static checks (vit_edge.convert.tensorrt.checks) and report the model")
    return network, parser


def _set_dla(trt, builder, config, dla_core: int, precision: str, strongly_typed: bool) -> None:
    import vit_edge.convert.tensorrt.dla as dla

    dla.check_cores(trt.__version__, dla_core, builder.num_DLA_cores)
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = dla_core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers DLA cannot run go to the GPU
    if not strongly_typed:  # TensorRT 10.x: the flags trtexec --useDLACore sets (sampleEngines.cpp)
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
        config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)


def build_engine(onnx_path: Path, engine_path: Path, *, batch: tuple, precision: str = "fp32",
                 workspace_gb: float | None = None, dla_core: int | None = None,
                 timing_cache: Path | None = None) -> dict:
    """Parse ``onnx_path``, build, write ``engine_path`` atomically, and report what the engine runs.

    ``batch`` is the (min, opt, max) optimization profile of the first input's batch axis; the other axes
    are taken from the ONNX. Returns what the manifest records about the engine.
    """
    import vit_edge.convert.tensorrt.dla as dla_rules

    trt = require("tensorrt", "tensorrt")
    from vit_edge.runtimes.tensorrt import device_info

    dla_rules.check_request(precision, dla_core, batch)
    gpu = device_info(0, trt)
    strongly_typed = not (dla_core is not None and int(trt.__version__.split(".")[0]) == 10)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, Path(onnx_path), logger, strongly_typed)
    config = builder.create_builder_config()
    # DETAILED: the inspector then reports each layer's tactic and tensor formats (precisions).
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
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
        _set_dla(trt, builder, config, dla_core, precision, strongly_typed)
    cache_path = Path(timing_cache).resolve() if timing_cache is not None else None
    cache = attach_timing_cache(config, cache_path) if cache_path is not None else None

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT could not build an engine from {Path(onnx_path).name}",
                          hint="re-run with -v; try a larger --workspace")
    data = bytes(serialized)
    write_atomic(Path(engine_path), data)
    if cache is not None:
        save_timing_cache(config, cache_path)
    layers = _inspect(trt, logger, data, dla_core, tensor.name, opt)
    if dla_core is not None and not layers.get("dla"):
        log.warning("DLA core %d was requested but the engine inspector shows no layer on DLA: everything runs "
                    "on the GPU", dla_core)
    return {"file": Path(engine_path).name, "tensorrt_version": trt.__version__, "gpu": gpu["name"],
            "compute_capability": gpu["compute_capability"], "sm_count": gpu.get("sm_count"),
            "total_memory": gpu.get("total_memory"), "board": gpu.get("board"), "dla_cores": gpu.get("dla_cores"),
            "input": tensor.name, "profile": {"min": list(low), "opt": list(opt), "max": list(high)},
            "precision": precision, "strongly_typed": strongly_typed, "workspace_gb": workspace_gb,
            "dla_core": dla_core, "timing_cache": str(cache_path) if cache_path else None, "layers": layers}


def _inspect(trt, logger, data: bytes, dla_core, input_name: str, shape) -> dict:
    """Deserialize what was just built and count what its layers run on (empty dict if that fails)."""
    from vit_edge.convert.tensorrt.layers import inspect_engine, summarize

    runtime = trt.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = int(dla_core)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:  # the runtime will say so with the rebuild hint; the file is written already
        log.warning("TensorRT cannot deserialize the engine it just built; per-layer precisions not recorded")
        return {}
    try:
        return summarize(inspect_engine(engine, input_name, shape))
    except Exception as exc:  # noqa: BLE001 - the report is diagnostic: never lose a built engine over it
        log.warning("engine inspector failed (%s); per-layer precisions not recorded", exc)
        return {}
