"""Target ``tensorrt``: a TensorRT-ready ONNX (always), and a strongly typed engine where TensorRT can build.

TensorRT 11 takes precision only from the ONNX, and JetPack's TensorRT 10 accepts the same graph as a
strongly typed network, so this module puts the precision into ``model.onnx``:

- fp32: the exported ONNX;
- fp16: FP16 with LayerNorm, Softmax and reductions kept FP32 (:mod:`vit_edge.convert.fp16`);
- int8: explicit Q/DQ from NNCF with symmetric activations, UINT8 Q/DQ rewritten to INT8
  (:mod:`vit_edge.convert.qdq`), because TensorRT takes only signed zero-point-0 Q/DQ.

Every file is checked against TensorRT's rules (:mod:`vit_edge.convert.trt_checks`) before it is written.
Where TensorRT >= 10 and a GPU are present the engine is built here (:mod:`tensorrt_engine`); elsewhere
the manifest records the equivalent ``trtexec`` line and ``vit-edge build-engine DIR`` builds it on the
target (a Jetson builds its own engines: they are tied to the GPU and TensorRT version).
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from vit_edge.errors import BackendUnavailable, ExportError, OutputError

log = logging.getLogger("vit_edge")

ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.engine"
DEFAULT_BATCH = (1, 8, 32)


def check_options(precision: str, options: dict) -> None:
    """Fail before the slow part: INT8 flags and data (as for every target); --require-engine needs
    TensorRT here."""
    from vit_edge.convert.quantize import check_int8_options

    check_int8_options(precision, options)
    cache = options.get("timing_cache")
    if cache and not Path(cache).parent.is_dir():
        raise OutputError(f"--timing-cache {cache}: its folder does not exist", hint="create it or pick another path")
    if options.get("require_engine"):
        from vit_edge.convert.tensorrt_engine import unavailable_reason

        reason = unavailable_reason()
        if reason:
            raise BackendUnavailable(f"--require-engine: cannot build a TensorRT engine here ({reason})",
                                     hint="run on the target with TensorRT >= 10 and a CUDA GPU, or drop "
                                          "--require-engine to write the TensorRT-ready ONNX only")


def build(job) -> None:
    import onnx

    from vit_edge.convert import trt_checks
    from vit_edge.convert.onnx import export_fp32, stamp_metadata

    path = job.workdir / ONNX_FILE
    export_fp32(job, path)
    if job.precision == "fp16":
        from vit_edge.convert.fp16 import convert_fp16

        convert_fp16(path, path, job)
    elif job.precision == "int8":
        from vit_edge.convert import qdq
        from vit_edge.convert.quantize import quantize_onnx

        quantize_onnx(job, path, path, symmetric_activations=True)
        model = onnx.load(str(path))
        rewritten = qdq.make_signed(model)
        onnx.save(model, str(path))
        job.manifest.setdefault("quantization", {})["uint8_qdq_rewritten_to_int8"] = rewritten
        job.manifest["quantization"]["qdq"] = qdq.summary(model)
    stamp_metadata(job, path)
    problems = trt_checks.check_tensorrt_ready(onnx.load(str(path)), job.precision)
    if problems:
        raise ExportError(f"the ONNX is not TensorRT-ready ({len(problems)} problem(s)): {problems[0]}",
                          hint="report the model; --ignore can keep an offending node in floating point")

    settings = {"batch": list(job.option("batch", DEFAULT_BATCH)), "workspace_gb": job.option("workspace"),
                "dla_core": job.option("dla_core"), "timing_cache": job.option("timing_cache")}
    job.manifest["artifacts"] = {"onnx": ONNX_FILE}
    job.manifest["artifact"] = ONNX_FILE
    job.manifest["tensorrt"] = {
        "strongly_typed": True, "checks": "passed", "settings": settings,
        "trtexec": trtexec_command(job.loaded.preprocess, input_name=_input_name(path), **settings),
        "engine": None}
    from vit_edge.convert.tensorrt_engine import unavailable_reason

    reason = unavailable_reason()
    if reason is None:
        build_engine_into(job.workdir, job.manifest, **settings)
    else:
        job.messages.append(f"no TensorRT engine built here ({reason}); the TensorRT-ready ONNX runs in ONNX "
                            f"Runtime meanwhile. Build the engine on the target: vit-edge build-engine "
                            f"{_final_dir(job.workdir)} (or the trtexec line in manifest.json)")


def build_engine_into(directory: Path, manifest: dict, *, batch, workspace_gb=None, dla_core=None,
                      timing_cache=None) -> dict:
    """Build ``model.engine`` beside the TensorRT-ready ONNX and record it in ``manifest`` (in memory)."""
    from vit_edge.artifact import sha256_file
    from vit_edge.convert.tensorrt_engine import build_engine

    directory = Path(directory)
    info = build_engine(directory / ONNX_FILE, directory / ENGINE_FILE, batch=tuple(batch),
                        workspace_gb=workspace_gb, dla_core=dla_core,
                        timing_cache=Path(timing_cache) if timing_cache else None)
    info["sha256"] = sha256_file(directory / ENGINE_FILE)
    info["onnx_sha256"] = sha256_file(directory / ONNX_FILE)
    manifest["tensorrt"]["engine"] = info
    manifest["artifacts"]["tensorrt"] = ENGINE_FILE
    manifest["artifact"] = ENGINE_FILE
    return info


def build_engine_in_dir(directory, *, batch=None, workspace_gb=None, dla_core=None, timing_cache=None) -> dict:
    """``vit-edge build-engine DIR``: build (or rebuild) the engine of a TensorRT --out directory here.

    Settings default to those recorded at convert time; the manifest is rewritten atomically."""
    from vit_edge.artifact import file_entries, read_manifest, write_json
    from vit_edge.errors import ArtifactError

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.get("target") != "tensorrt" or "tensorrt" not in manifest:
        raise ArtifactError(f"{directory} is a {manifest.get('target')} artifact, not a TensorRT one",
                            hint="convert with --target tensorrt first")
    if not (directory / ONNX_FILE).is_file():
        raise ArtifactError(f"{directory}: {ONNX_FILE} is missing", hint="re-run vit-edge convert --target tensorrt")
    recorded = manifest["tensorrt"].get("settings", {})
    settings = {"batch": list(batch or recorded.get("batch") or DEFAULT_BATCH),
                "workspace_gb": workspace_gb if workspace_gb is not None else recorded.get("workspace_gb"),
                "dla_core": dla_core if dla_core is not None else recorded.get("dla_core"),
                "timing_cache": timing_cache or recorded.get("timing_cache")}
    from vit_edge.convert.tensorrt_engine import unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"cannot build a TensorRT engine here: {reason}",
                                 hint="run vit-edge build-engine on the target (TensorRT >= 10 and a CUDA GPU)")
    manifest["tensorrt"]["settings"] = settings
    info = build_engine_into(directory, manifest, **settings)
    manifest["files"] = file_entries(directory)
    write_json(directory / "manifest.json", manifest)
    return info


def trtexec_command(preprocess, *, input_name: str, batch, workspace_gb=None, dla_core=None,
                    timing_cache=None) -> str:
    """The trtexec line that builds the same engine (run inside the --out directory).

    --stronglyTyped is required on TensorRT 10 and a no-op on 11; --memPoolSize takes MiB
    (https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-trtexec.html)."""
    h, w = preprocess.input_size
    shape = lambda b: f"{input_name}:{b}x{preprocess.channels}x{h}x{w}"  # noqa: E731
    parts = ["trtexec", f"--onnx={ONNX_FILE}", f"--saveEngine={ENGINE_FILE}", "--stronglyTyped",
             f"--minShapes={shape(batch[0])}", f"--optShapes={shape(batch[1])}", f"--maxShapes={shape(batch[2])}"]
    if workspace_gb:
        parts.append(f"--memPoolSize=workspace:{max(1, round(workspace_gb * 1024))}")
    if dla_core is not None:
        parts += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
    if timing_cache:
        parts.append(f"--timingCacheFile={timing_cache}")
    return shlex.join(parts)


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _final_dir(workdir: Path) -> Path:
    """The --out directory a conversion's temporary sibling (``.NAME.tmp-XXXX``, see
    ``artifact.atomic_output_dir``) becomes on success."""
    name = workdir.name
    if name.startswith(".") and ".tmp-" in name:
        return workdir.parent / name[1:].rsplit(".tmp-", 1)[0]
    return workdir
