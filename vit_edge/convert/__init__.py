"""``convert``: MODEL -> artifact directory, one module per target (onnx, openvino, tensorrt).

Every target module exposes ``build(job)``: it writes its artifact into ``job.workdir`` (a temporary
sibling of ``--out``) and adds its fields to ``job.manifest``. A new target is one module here, one in
``vit_edge.runtimes``, and one line in ``TARGETS``.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge.errors import VitEdgeError

log = logging.getLogger("vit_edge")

TARGETS = {"onnx": "vit_edge.convert.onnx", "openvino": "vit_edge.convert.openvino",
           "tensorrt": "vit_edge.convert.tensorrt"}
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass
class ConvertJob:
    """Everything one conversion needs and produces; target modules read options from here."""

    loaded: object  # sources.LoadedModel
    target: str
    precision: str
    workdir: Path
    options: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    messages: list = field(default_factory=list)  # what the CLI should tell the user at the end
    calibration: object = None  # calibration.CalibrationData, loaded once by the first quantizer

    def option(self, name, default=None):
        value = self.options.get(name)
        return default if value is None else value


@dataclass
class ConvertResult:
    out: Path
    manifest: dict
    report: object | None = None  # validate.ParityReport when convert validated
    messages: list = field(default_factory=list)


def target_module(target: str):
    if target not in TARGETS:
        raise VitEdgeError(f"unknown target {target!r}", hint=f"use one of {', '.join(TARGETS)}")
    return importlib.import_module(TARGETS[target])


def convert(model=None, *, target: str = "onnx", precision: str = "fp32", out, force: bool = False,
            checkpoint=None, task: str | None = None, labels_file=None, trust_checkpoint: bool = False,
            seed: int = 0, preprocess: dict | None = None, model_kwargs: dict | None = None,
            **options) -> ConvertResult:
    """Convert MODEL (a spec string or a ``LoadedModel``) into an artifact directory ``out``.

    ``options`` are target-specific (calib, calib_size, validate, tolerance, opset, batch, dynamic_size, ...).
    ``model_kwargs`` go to ``timm.create_model`` (e.g. a smaller depth).
    Raises :class:`VitEdgeError` subclasses for every user-fixable problem; nothing is left at ``out``
    unless the whole conversion succeeded.
    """
    from vit_edge.artifact import atomic_output_dir, file_entries, write_json
    from vit_edge.sources import LoadedModel, load_model

    if precision not in PRECISIONS:
        raise VitEdgeError(f"unknown precision {precision!r}", hint=f"use one of {', '.join(PRECISIONS)}")
    module = target_module(target)
    out = Path(out)
    if out.exists() and not force:
        from vit_edge.errors import OutputError

        raise OutputError(f"{out} already exists", hint="pass --force to replace it, or choose another --out")
    if hasattr(module, "check_options"):
        module.check_options(precision, options)  # fail fast on bad flags before the slow part
    loaded = model if isinstance(model, LoadedModel) else load_model(
        model, checkpoint=checkpoint, task=task, labels_file=labels_file, trust_checkpoint=trust_checkpoint,
        seed=seed, dynamic_size=bool(options.get("dynamic_size")), model_kwargs=model_kwargs, **(preprocess or {}))
    options["seed"] = seed
    started = time.time()
    with atomic_output_dir(out, force=force) as workdir:
        job = ConvertJob(loaded, target, precision, Path(workdir), options, messages=list(loaded.warnings))
        job.manifest.update(base_manifest(loaded, target, precision, seed))
        module.build(job)
        report = None
        data = validation_data(job)
        if data is not None:
            from vit_edge.validate import validate_artifact

            job.manifest["files"] = file_entries(job.workdir)  # the runtime reads the manifest to load
            write_json(job.workdir / "manifest.json", job.manifest)
            report = validate_artifact(job.workdir, reference=options.get("reference"), data=data,
                                       limit=options.get("validate_limit"),
                                       thresholds=options.get("thresholds") or {}, write_to=job.workdir,
                                       candidate_options=candidate_options(job))
            job.manifest["validation"] = report.summary()
        job.manifest["files"] = file_entries(job.workdir)
        job.manifest["convert_seconds"] = round(time.time() - started, 1)
        write_json(job.workdir / "manifest.json", job.manifest)
    return ConvertResult(out, job.manifest, report, job.messages)


def candidate_options(job) -> dict:
    """How convert's own validation loads the artifact it just wrote."""
    options = {"device": job.option("device")} if job.option("device") else {}
    if job.target == "tensorrt":
        options["warn_no_engine"] = False  # the convert notes already say why there is no engine
    return options


def validation_data(job):
    """What convert validates on: --validate, else the labelled calibration images it did not use."""
    if job.option("validate"):
        return job.option("validate")
    holdout = getattr(job.calibration, "holdout", None)
    if holdout is not None:
        job.messages.append(f"validated on {len(holdout)} labelled images of {job.calibration.source} that "
                            "calibration did not use (pass --validate to choose the data)")
    return holdout


def base_manifest(loaded, target: str, precision: str, seed: int) -> dict:
    """The fields every manifest has; ``created`` is the only one that differs between identical runs."""
    import datetime

    return {
        "format": 1,
        "target": target,
        "precision": precision,
        "task": loaded.task,
        "source": dict(loaded.source),
        "seed": seed,
        "preprocess": loaded.preprocess.to_dict(),
        "labels": loaded.labels,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
