"""``convert``: MODEL -> artifact directory. Load the model, run the target (which runs the shared stages
in ``convert/stages``), assemble the manifest from the records they return, validate, publish atomically.

Targets are registered in :mod:`vit_edge.targets` and implement :class:`vit_edge.convert.target.Target`;
a new target is one module here, one in ``vit_edge.runtimes``, and one ``targets.register`` call.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge.convert.job import ConvertJob, split_options
from vit_edge.convert.target import PRECISIONS, Built, Target, get
from vit_edge.errors import OutputError, VitEdgeError
from vit_edge.progress import phase

log = logging.getLogger("vit_edge")

PATH_OPTION_SUFFIXES = ("_cache", "_file", "_dir", "_path")  # target options that name files

__all__ = ["convert", "ConvertJob", "ConvertResult", "Target", "Built", "get", "default_out", "PRECISIONS"]


@dataclass
class ConvertResult:
    out: Path
    manifest: object  # artifact.Manifest
    report: object | None = None  # validate.ParityReport when convert validated
    messages: list = field(default_factory=list)  # notes for the end of the run
    # What loading the model warned about; already logged as WARNING when it happened (the CLI does not repeat it).
    warnings: list = field(default_factory=list)


def default_out(model, target: str, precision: str) -> Path:
    """``out/<model>-<target>-<precision>``: where ``vit-edge convert`` writes without ``--out``."""
    from vit_edge.sources import parse_spec

    _kind, value = parse_spec(model)
    stem = os.path.basename(value.rstrip("/")).replace(":", "_").replace(".py", "").replace(".onnx", "")
    return Path("out") / f"{stem}-{target}-{precision}"


def convert(model=None, *, target: str = "onnx", precision: str = "fp32", out, force: bool = False,
            checkpoint=None, task: str | None = None, labels_file=None, trust_checkpoint: bool = False,
            seed: int = 0, preprocess: dict | None = None, model_kwargs: dict | None = None,
            num_classes: int | None = None, **options) -> ConvertResult:
    """Convert MODEL (a spec string or a ``LoadedModel``) into an artifact directory ``out``.

    ``options`` are sorted into groups by :func:`vit_edge.convert.job.split_options`: export (opset,
    tolerance, dynamic_size, ...), INT8 (calib, calib_size, preset, ...), validation (validate,
    validate_limit, thresholds, reference) and the target's own. ``model_kwargs`` go to
    ``timm.create_model`` (e.g. a smaller depth); ``num_classes`` rebuilds a timm/torchvision/Hugging Face
    head with that many classes before the checkpoint is loaded. Raises :class:`VitEdgeError` subclasses for every
    user-fixable problem; nothing is left at ``out`` unless the whole conversion succeeded.
    """
    from vit_edge.artifact import atomic_output_dir
    from vit_edge.sources import LoadedModel, load_model

    builder = get(target)
    if precision not in PRECISIONS or precision not in builder.precisions:
        raise VitEdgeError(f"unknown precision {precision!r} for target {target}",
                           hint=f"use one of {', '.join(builder.precisions)}")
    groups = split_options(options, builder.Options)
    out = check_out(out)
    if out.exists() and not force:
        raise OutputError(f"{out} already exists", hint="pass --force to replace it, or choose another --out")
    replaceable = functools.partial(check_replaceable, inputs=run_inputs(model, groups, checkpoint, labels_file))
    if out.exists() and out.is_dir():
        replaceable(out)  # before the slow part; atomic_output_dir asks again when it publishes
    builder.check(precision, groups)  # fail fast on bad flags before the slow part
    if not isinstance(model, LoadedModel):
        phase(f"loading {model or 'the demo model'}")
    loaded = model if isinstance(model, LoadedModel) else load_model(
        model, checkpoint=checkpoint, task=task, labels_file=labels_file, trust_checkpoint=trust_checkpoint,
        seed=seed, dynamic_size=groups.export.dynamic_size, model_kwargs=model_kwargs, num_classes=num_classes,
        **(preprocess or {}))
    started = time.time()
    with atomic_output_dir(out, force=force, replaceable=replaceable) as workdir:
        job = ConvertJob(loaded, target, precision, Path(workdir), seed=seed, export=groups.export, int8=groups.int8,
                         validation=groups.validation, target_options=groups.target,
                         manifest=base_manifest(loaded, target, precision, seed), messages=[])
        built = builder.build(job)
        _assemble(job.manifest, builder, built)
        report = None
        data = validation_data(job)
        if data is not None:
            from vit_edge.validate import validate_artifact

            _record_files(job)  # the runtime reads the manifest to load
            # trust_source: the manifest was written by this run from what the user named on the command line
            report = validate_artifact(job.workdir, reference=job.validation.reference, data=data,
                                       limit=job.validation.limit, thresholds=job.validation.thresholds,
                                       write_to=job.workdir, candidate_options=candidate_options(job),
                                       trust_source=True)
            from vit_edge.artifact import ValidationRecord

            job.manifest.validation = ValidationRecord.from_dict(report.summary())
            if not job.validation.data:  # the count validation really used (a --validate-limit sample of it)
                job.messages.append(f"validated on {report.samples} labelled images of {job.calibration.source} "
                                    "that calibration did not use (pass --validate to choose the data)")
        _record_files(job)
        job.manifest.convert_seconds = round(time.time() - started, 1)
        job.manifest.write(job.workdir)
    return ConvertResult(out, job.manifest, report, job.messages, list(loaded.warnings))


# Bytes the temporary siblings of --out add to its name (.NAME.tmp-XXXXXXXX.lock, .NAME.old-PID-TIME), with room.
SIBLING_NAME_EXTRA = 32


def check_out(out) -> Path:
    """``--out`` as a folder convert can create and publish, checked before anything slow: not empty, not the
    current folder or one holding it (``.``, ``..``: a rename cannot replace them), and a name the filesystem
    takes once the temporary siblings' suffixes are added (ENAMETOOLONG used to surface after the export)."""
    text = os.fspath(out)
    if not str(text).strip():
        raise OutputError("--out is empty", hint="name the folder to write, e.g. --out out/model-onnx")
    path = Path(text)
    existing = next((p for p in (path.absolute(), *path.absolute().parents) if _exists(p)), Path("/"))
    name_max, path_max = _pathconf(existing, "PC_NAME_MAX", 255), _pathconf(existing, "PC_PATH_MAX", 4096)
    longest = max(path.absolute().parts, key=lambda part: len(os.fsencode(part)))
    if len(os.fsencode(longest)) > name_max - SIBLING_NAME_EXTRA:
        raise OutputError(f"--out has a {len(os.fsencode(longest))}-byte name",
                          expected=f"at most {name_max - SIBLING_NAME_EXTRA} bytes: the filesystem allows {name_max}, "
                                   f"the temporary siblings add up to {SIBLING_NAME_EXTRA}",
                          hint="choose a shorter --out")
    if len(os.fsencode(str(path.absolute()))) > path_max - 1 - SIBLING_NAME_EXTRA:
        raise OutputError(f"--out is a {len(os.fsencode(str(path.absolute())))}-byte path",
                          expected=f"at most {path_max - 1 - SIBLING_NAME_EXTRA} bytes: PATH_MAX is {path_max}, "
                                   f"the temporary siblings add up to {SIBLING_NAME_EXTRA}",
                          hint="choose a shorter --out")
    cwd = Path.cwd().resolve()
    if path.name in ("", ".", "..") or path.resolve() == cwd or path.resolve() in cwd.parents:
        raise OutputError(f"--out {text} is the current folder or a folder holding it, not a folder to create",
                          hint="name a new folder, e.g. --out out/model-onnx")
    return path


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # ENAMETOOLONG and friends: not a usable ancestor
        return False


def _pathconf(path: Path, name: str, default: int) -> int:
    try:
        return int(os.pathconf(path, name))
    except (OSError, ValueError, AttributeError):  # not every platform or filesystem says
        return default


def run_inputs(model, groups, checkpoint=None, labels_file=None) -> list:
    """``(flag, path)`` of every file or folder this run reads that exists: the model, checkpoint, labels and
    every option that names a path (calibration, validation, parity data, the reference, a target's files)."""
    from vit_edge.sources import LoadedModel

    named = []
    if isinstance(model, LoadedModel):
        named += [("MODEL", model.source.get(k)) for k in ("file", "onnx_file", "checkpoint")]
    elif model:
        text = str(model)
        named.append(("MODEL", text[3:] if text.startswith("hf:") else text.rsplit(":", 1)[0] if ".py:" in text
                      else text))
    named += [("--checkpoint", checkpoint), ("--labels", labels_file), ("--calib", groups.int8.calib),
              ("--validate", groups.validation.data), ("--reference", groups.validation.reference),
              ("--parity-data", groups.export.parity_data)]
    if dataclasses.is_dataclass(groups.target):  # a target's own files: --timing-cache, and plug-ins' like it
        named += [("--" + f.name.replace("_", "-"), getattr(groups.target, f.name))
                  for f in dataclasses.fields(groups.target) if f.name.endswith(PATH_OPTION_SUFFIXES)]
    found = []
    for flag, value in named:
        if isinstance(value, (str, os.PathLike)) and str(value) and os.path.lexists(value):
            found.append((flag, str(value)))
    return found


def check_replaceable(out, inputs) -> None:
    """What ``--force`` may replace: an earlier vit-edge artifact (a folder whose manifest.json reads as one)
    that is not, does not hold and does not lie inside any input of this run."""
    from vit_edge.artifact import read_manifest
    from vit_edge.artifact.publish import input_conflict
    from vit_edge.errors import ArtifactError

    conflict = input_conflict(out, inputs)
    if conflict:
        raise OutputError(f"--out {out} {conflict} of this convert; --force never replaces an input",
                          hint="choose another --out")
    try:
        read_manifest(out)
    except ArtifactError as exc:
        raise OutputError(f"--out {out} is not a vit-edge artifact ({exc.message}); --force replaces only a folder "
                          "an earlier convert wrote", hint="choose another --out, or move that folder away yourself") \
            from None


def _assemble(manifest, builder: Target, built: Built) -> None:
    """Put what the target built into the manifest: its file(s) and its record under the target's name."""
    manifest.artifact = built.artifact
    if built.artifacts:
        manifest.artifacts = dict(built.artifacts)
    if built.record is not None:
        if builder.name in type(manifest).__dataclass_fields__:
            setattr(manifest, builder.name, built.record)
        else:  # a target this version does not know by name (a plug-in): kept under its name all the same
            manifest.extra[builder.name] = built.record.to_dict() if hasattr(built.record, "to_dict") \
                else built.record


def _record_files(job) -> None:
    from vit_edge.artifact import FileEntry, file_entries

    job.manifest.files = {name: FileEntry.from_dict(entry) for name, entry in file_entries(job.workdir).items()}
    job.manifest.write(job.workdir)


def candidate_options(job) -> dict:
    """How convert's own validation loads the artifact it just wrote."""
    device = getattr(job.target_options, "device", None)
    options = {"device": device} if device else {}
    # The file, not the folder: convert validates in a temporary folder, and the report.json it keeps inside
    # the artifact must not depend on where --out is (the same inputs give the same bytes).
    options["name_by_folder"] = False
    if job.target == "tensorrt":
        options["warn_no_engine"] = False  # the convert notes already say why there is no engine
    return options


def validation_data(job):
    """What convert validates on: --validate, else the labelled calibration images it did not use."""
    if job.validation.data:
        return job.validation.data
    return getattr(job.calibration, "holdout", None)


def base_manifest(loaded, target: str, precision: str, seed: int):
    """The fields every manifest has; ``created`` is the only one that differs between identical runs."""
    import datetime

    from vit_edge.artifact import FORMAT_VERSION, Manifest, SourceRecord

    return Manifest(format=FORMAT_VERSION, target=target, precision=precision, task=loaded.task,
                    source=SourceRecord.from_dict(dict(loaded.source)), seed=seed, preprocess=loaded.preprocess,
                    labels=loaded.labels,
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
