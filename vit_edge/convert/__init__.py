"""``convert``: MODEL -> artifact directory. Load the model, run the target (which runs the shared stages
in ``convert/stages``), assemble the manifest from the records they return, validate, publish atomically.

Targets are registered in :mod:`vit_edge.targets` and implement :class:`vit_edge.convert.target.Target`;
a new target is one module here, one in ``vit_edge.runtimes``, and one ``targets.register`` call.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge.convert.job import ConvertJob, split_options
from vit_edge.convert.target import PRECISIONS, Built, Target, get
from vit_edge.errors import OutputError, VitEdgeError

log = logging.getLogger("vit_edge")

__all__ = ["convert", "ConvertJob", "ConvertResult", "Target", "Built", "get", "default_out", "PRECISIONS"]


@dataclass
class ConvertResult:
    out: Path
    manifest: object  # artifact.Manifest
    report: object | None = None  # validate.ParityReport when convert validated
    messages: list = field(default_factory=list)


def default_out(model, target: str, precision: str) -> Path:
    """``out/<model>-<target>-<precision>``: where ``vit-edge convert`` writes without ``--out``."""
    from vit_edge.sources import parse_spec

    _kind, value = parse_spec(model)
    stem = os.path.basename(value.rstrip("/")).replace(":", "_").replace(".py", "").replace(".onnx", "")
    return Path("out") / f"{stem}-{target}-{precision}"


def convert(model=None, *, target: str = "onnx", precision: str = "fp32", out, force: bool = False,
            checkpoint=None, task: str | None = None, labels_file=None, trust_checkpoint: bool = False,
            seed: int = 0, preprocess: dict | None = None, model_kwargs: dict | None = None,
            **options) -> ConvertResult:
    """Convert MODEL (a spec string or a ``LoadedModel``) into an artifact directory ``out``.

    ``options`` are sorted into groups by :func:`vit_edge.convert.job.split_options`: export (opset,
    tolerance, dynamic_size, ...), INT8 (calib, calib_size, preset, ...), validation (validate,
    validate_limit, thresholds, reference) and the target's own. ``model_kwargs`` go to
    ``timm.create_model`` (e.g. a smaller depth). Raises :class:`VitEdgeError` subclasses for every
    user-fixable problem; nothing is left at ``out`` unless the whole conversion succeeded.
    """
    from vit_edge.artifact import atomic_output_dir
    from vit_edge.sources import LoadedModel, load_model

    builder = get(target)
    if precision not in PRECISIONS or precision not in builder.precisions:
        raise VitEdgeError(f"unknown precision {precision!r} for target {target}",
                           hint=f"use one of {', '.join(builder.precisions)}")
    groups = split_options(options, builder.Options)
    out = Path(out)
    if out.exists() and not force:
        raise OutputError(f"{out} already exists", hint="pass --force to replace it, or choose another --out")
    builder.check(precision, groups)  # fail fast on bad flags before the slow part
    loaded = model if isinstance(model, LoadedModel) else load_model(
        model, checkpoint=checkpoint, task=task, labels_file=labels_file, trust_checkpoint=trust_checkpoint,
        seed=seed, dynamic_size=groups.export.dynamic_size, model_kwargs=model_kwargs, **(preprocess or {}))
    started = time.time()
    with atomic_output_dir(out, force=force) as workdir:
        job = ConvertJob(loaded, target, precision, Path(workdir), seed=seed, export=groups.export, int8=groups.int8,
                         validation=groups.validation, target_options=groups.target,
                         manifest=base_manifest(loaded, target, precision, seed), messages=list(loaded.warnings))
        built = builder.build(job)
        _assemble(job.manifest, builder, built)
        report = None
        data = validation_data(job)
        if data is not None:
            from vit_edge.validate import validate_artifact

            _record_files(job)  # the runtime reads the manifest to load
            report = validate_artifact(job.workdir, reference=job.validation.reference, data=data,
                                       limit=job.validation.limit, thresholds=job.validation.thresholds,
                                       write_to=job.workdir, candidate_options=candidate_options(job))
            from vit_edge.artifact import ValidationRecord

            job.manifest.validation = ValidationRecord.from_dict(report.summary())
        _record_files(job)
        job.manifest.convert_seconds = round(time.time() - started, 1)
        job.manifest.write(job.workdir)
    return ConvertResult(out, job.manifest, report, job.messages)


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
    if job.target == "tensorrt":
        options["warn_no_engine"] = False  # the convert notes already say why there is no engine
    return options


def validation_data(job):
    """What convert validates on: --validate, else the labelled calibration images it did not use."""
    if job.validation.data:
        return job.validation.data
    holdout = getattr(job.calibration, "holdout", None)
    if holdout is not None:
        job.messages.append(f"validated on {len(holdout)} labelled images of {job.calibration.source} that "
                            "calibration did not use (pass --validate to choose the data)")
    return holdout


def base_manifest(loaded, target: str, precision: str, seed: int):
    """The fields every manifest has; ``created`` is the only one that differs between identical runs."""
    import datetime

    from vit_edge.artifact import FORMAT_VERSION, Manifest, SourceRecord

    return Manifest(format=FORMAT_VERSION, target=target, precision=precision, task=loaded.task,
                    source=SourceRecord.from_dict(dict(loaded.source)), seed=seed, preprocess=loaded.preprocess,
                    labels=loaded.labels,
                    created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
