"""Target ``tensorrt``: a TensorRT-ready ONNX (always), and a strongly typed engine where TensorRT can build.

TensorRT 11 takes precision only from the ONNX, and JetPack's TensorRT 10 accepts the same graph as a
strongly typed network, so this module puts the precision into ``model.onnx``:

- fp32: the exported ONNX;
- fp16: FP16 with LayerNorm, Softmax and reductions kept FP32 (:mod:`vit_edge.convert.stages.fp16`);
- int8: explicit Q/DQ from NNCF with symmetric activations, UINT8 Q/DQ rewritten to INT8
  (:mod:`vit_edge.convert.stages.qdq`), because TensorRT takes only signed zero-point-0 Q/DQ.

Every file is checked against the parser of the oldest TensorRT targeted (``--trt-version``, :mod:`.checks`)
before it is written. Where TensorRT >= 10 and a GPU are present the engine is built here (:mod:`.engine`);
elsewhere the manifest records the equivalent ``trtexec`` line per TensorRT major (:mod:`.trtexec`) and
``vit-edge build-engine DIR`` builds it on the target (a Jetson builds its own engines: they are tied to
the GPU and TensorRT version).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from vit_edge.artifact.manifest import TensorRTRecord, TensorRTSettings
from vit_edge.convert.target import Built, Target
from vit_edge.convert.tensorrt.options import CONVERT_OPTIONS, DEFAULT_BATCH, DEFAULT_TRT_VERSION
from vit_edge.convert.tensorrt.trtexec import ENGINE_FILE, ONNX_FILE, trtexec_command, trtexec_commands
from vit_edge.errors import BackendUnavailable, ExportError, OutputError

log = logging.getLogger("vit_edge")

__all__ = ["TARGET", "TensorRTOptions", "TensorRTTarget", "build_engine_in_dir", "build_engine_into",
           "trtexec_command", "trtexec_commands", "ONNX_FILE", "ENGINE_FILE"]


@dataclass(frozen=True)
class TensorRTOptions:
    batch: tuple = DEFAULT_BATCH  # the optimization profile MIN, OPT, MAX of the batch axis
    workspace: float | None = None  # GB
    dla_core: int | None = None
    timing_cache: str | None = None
    require_engine: bool = False
    trt_version: str = DEFAULT_TRT_VERSION  # the oldest TensorRT the engine will be built with


class TensorRTTarget(Target):
    name = "tensorrt"
    summary = "TensorRT-ready ONNX (strongly typed), and an engine where TensorRT and a GPU are present"
    Options = TensorRTOptions
    cli_options = CONVERT_OPTIONS

    def check(self, precision: str, options) -> None:
        """Fail before the slow part: INT8 flags and data (as for every target), what DLA cannot take,
        the timing cache folder; --require-engine needs TensorRT here."""
        from vit_edge.convert.tensorrt import dla

        super().check(precision, options)
        target = options.target
        dla.check_request(precision, target.dla_core, target.batch)
        cache = target.timing_cache
        if cache and not Path(cache).resolve().parent.is_dir():
            raise OutputError(f"--timing-cache {cache}: its folder does not exist",
                              hint="create it or pick another path")
        if target.require_engine:
            from vit_edge.convert.tensorrt.engine import dla_unavailable_reason, unavailable_reason

            reason = unavailable_reason()
            if reason is None and target.dla_core is not None:
                reason = dla_unavailable_reason(target.dla_core)
            if reason:
                raise BackendUnavailable(f"--require-engine: cannot build a TensorRT engine here ({reason})",
                                         hint="run on the target with TensorRT >= 10 and a CUDA GPU, or drop "
                                              "--require-engine to write the TensorRT-ready ONNX only")

    def build(self, job) -> Built:
        import onnx

        from vit_edge.convert.stages.export import stamp_metadata
        from vit_edge.convert.stages.precision import onnx_in_precision
        from vit_edge.convert.tensorrt import checks, dla

        path = job.workdir / ONNX_FILE
        record = onnx_in_precision(job, path, symmetric_activations=True)
        if job.precision == "int8":
            from vit_edge.convert.stages import qdq

            model = onnx.load(str(path))
            qdq.make_signed(model)  # done already when the recipe search ran; NNCF's accuracy control needs it
            record.uint8_qdq_rewritten_to_int8 = qdq.signed_count(model)
            onnx.save(model, str(path))
            record.qdq = qdq.summary(model)
        stamp_metadata(job, path)
        options = job.target_options
        problems = checks.check_tensorrt_ready(onnx.load(str(path)), job.precision, options.trt_version)
        if problems:
            raise ExportError(f"the ONNX is not TensorRT {options.trt_version}-ready ({len(problems)} problem(s)): "
                              f"{problems[0]}", hint="report the model; --ignore can keep an offending node in "
                                                     "floating point")
        settings = TensorRTSettings(batch=list(options.batch), workspace_gb=options.workspace,
                                    dla_core=options.dla_core, trt_version=options.trt_version,
                                    timing_cache=str(Path(options.timing_cache).resolve())
                                    if options.timing_cache else None)
        record = TensorRTRecord(strongly_typed=True, checks="passed", settings=settings, engine=None)
        _record_trtexec(record, job.loaded.preprocess, _input_name(path), job.precision)
        if options.dla_core is not None and dla.unavailable_reason(options.trt_version):
            job.messages.append(f"--dla-core with --trt-version {options.trt_version}: "
                                f"{dla.unavailable_reason(options.trt_version)}")
        built = Built(artifact=ONNX_FILE, record=record, artifacts={"onnx": ONNX_FILE})
        from vit_edge.convert.tensorrt.engine import dla_unavailable_reason, unavailable_reason

        reason = unavailable_reason()
        if reason is None and options.dla_core is not None:  # a workstation GPU preparing a Jetson artifact
            reason = dla_unavailable_reason(options.dla_core)
        if reason is None:
            from vit_edge.progress import phase

            phase(f"building the TensorRT {job.precision} engine")
            build_engine_into(job.workdir, built, job.precision)
        else:
            job.messages.append(f"no TensorRT engine built here ({reason}); the TensorRT-ready ONNX runs in ONNX "
                                f"Runtime meanwhile. Build the engine on the target: vit-edge build-engine "
                                f"{_final_dir(job.workdir)} (or a trtexec line of manifest.json)")
        return built


TARGET = TensorRTTarget()


def _record_trtexec(record: TensorRTRecord, preprocess, input_name: str, precision: str) -> None:
    """The trtexec line of every TensorRT major, and as ``trtexec`` the one of the oldest targeted."""
    s = record.settings
    lines = trtexec_commands(preprocess, input_name=input_name, batch=tuple(s.batch), precision=precision,
                             workspace_gb=s.workspace_gb, dla_core=s.dla_core, timing_cache=s.timing_cache)
    record.trtexec_by_version = lines
    record.trtexec = lines["10.x" if str(s.trt_version or DEFAULT_TRT_VERSION).split(".")[0] == "10" else "11.x"]


def build_engine_into(directory: Path, built, precision: str) -> dict:
    """Build ``model.engine`` beside the TensorRT-ready ONNX and record it in ``built`` (a ``Built`` or a
    ``Manifest``: both have ``artifact``, ``artifacts`` and the TensorRT record)."""
    from vit_edge.artifact import sha256_file
    from vit_edge.convert.tensorrt.engine import build_engine

    directory = Path(directory)
    record = built.record if hasattr(built, "record") else built.tensorrt
    s = record.settings
    info = build_engine(directory / ONNX_FILE, directory / ENGINE_FILE, batch=tuple(s.batch), precision=precision,
                        workspace_gb=s.workspace_gb, dla_core=s.dla_core,
                        timing_cache=Path(s.timing_cache) if s.timing_cache else None)
    info["sha256"] = sha256_file(directory / ENGINE_FILE)
    info["onnx_sha256"] = sha256_file(directory / ONNX_FILE)
    record.engine = info
    built.artifacts = {**(built.artifacts or {}), "tensorrt": ENGINE_FILE}
    built.artifact = ENGINE_FILE
    return info


def build_engine_in_dir(directory, *, batch=None, workspace_gb=None, dla_core=None, timing_cache=None) -> dict:
    """``vit-edge build-engine DIR``: build (or rebuild) the engine of a TensorRT --out directory here.

    Settings default to those recorded at convert time; the trtexec lines and the manifest are rewritten
    (atomically) to match what was built."""
    from vit_edge.artifact import FileEntry, file_entries, read_manifest
    from vit_edge.convert.tensorrt import dla
    from vit_edge.errors import ArtifactError

    directory = Path(directory)
    manifest = read_manifest(directory)
    if manifest.target != "tensorrt" or manifest.tensorrt is None:
        raise ArtifactError(f"{directory} is a {manifest.target} artifact, not a TensorRT one",
                            hint="convert with --target tensorrt first")
    if not (directory / ONNX_FILE).is_file():
        raise ArtifactError(f"{directory}: {ONNX_FILE} is missing", hint="re-run vit-edge convert --target tensorrt")
    recorded = manifest.tensorrt.settings or TensorRTSettings()
    cache = timing_cache
    if cache is None and recorded.timing_cache:
        # A path in a manifest is data from wherever the artifact came from, and the build writes the cache:
        # it writes only where the user names on the command line.
        log.warning("%s records the timing cache %s; not used unless named: pass --timing-cache %s", directory,
                    recorded.timing_cache, recorded.timing_cache)
    settings = TensorRTSettings(batch=list(batch or recorded.batch or DEFAULT_BATCH),
                                workspace_gb=workspace_gb if workspace_gb is not None else recorded.workspace_gb,
                                dla_core=dla_core if dla_core is not None else recorded.dla_core,
                                timing_cache=str(Path(cache).resolve()) if cache else None,
                                trt_version=recorded.trt_version, extra=recorded.extra)
    precision = manifest.precision or "fp32"
    dla.check_request(precision, settings.dla_core, tuple(settings.batch))
    if settings.timing_cache and not Path(settings.timing_cache).parent.is_dir():
        raise OutputError(f"--timing-cache {cache}: its folder does not exist", hint="create it or pick another path")
    from vit_edge.convert.tensorrt.engine import unavailable_reason

    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"cannot build a TensorRT engine here: {reason}",
                                 hint="run vit-edge build-engine on the target (TensorRT >= 10 and a CUDA GPU)")
    manifest.tensorrt.settings = settings
    _record_trtexec(manifest.tensorrt, manifest.preprocess, _input_name(directory / ONNX_FILE), precision)
    info = build_engine_into(directory, manifest, precision)
    manifest.files = {name: FileEntry.from_dict(entry) for name, entry in file_entries(directory).items()}
    manifest.write(directory)
    return info


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
