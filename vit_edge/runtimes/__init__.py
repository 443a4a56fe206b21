"""``load(artifact)`` -> a :class:`Runtime` for any vit-edge artifact; ``reference(spec)`` -> the torch FP32
reference of a MODEL spec.

Running an ONNX or OpenVINO artifact imports neither torch nor the exporters: this module and the
backend module are all that load. Which module runs which target comes from :mod:`vit_edge.targets`.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from vit_edge import targets
from vit_edge.errors import ArtifactError, VitEdgeError
from vit_edge.runtimes.base import Runtime, softmax

__all__ = ["load", "reference", "load_any", "reference_from_manifest", "names_recorded_source", "Runtime",
           "softmax"]

log = logging.getLogger("vit_edge")


def load(artifact, *, target: str | None = None, preprocess=None, **options) -> Runtime:
    """Load an artifact file or ``--out`` directory. ``options`` go to the backend (threads, device, hint, ...).

    ``target`` picks how a directory is run when it holds more than one artifact (a TensorRT directory
    also holds the TensorRT-ready ONNX that ONNX Runtime can run). A path that is not an artifact is an
    error; a MODEL spec runs in torch through :func:`reference`."""
    from vit_edge.artifact import MANIFEST, read_manifest

    path = Path(artifact)
    if path.is_dir():
        if not (path / MANIFEST).exists():
            raise ArtifactError(f"{path}: a directory without {MANIFEST}", hint="pass a vit-edge --out directory")
        manifest = read_manifest(path)
        target = target or manifest.target
        name = manifest.artifact_for(target)
        if not name:
            if target not in targets.TARGETS:
                raise ArtifactError(f"unknown target {target!r}", expected=" | ".join(targets.names()))
            # Not "holds nothing": the folder is fine, it was built for another runtime.
            loadable = [manifest.target, *(manifest.artifacts or {})]
            raise ArtifactError(f"{path} was converted for target {manifest.target!r} ({manifest.artifact}) and "
                                f"holds no model for target {target!r}",
                                hint=f"load it with target={' or '.join(map(repr, loadable))}, or convert the model "
                                     f"again with --target {target}")
        file = path / name
        if path.resolve() not in file.resolve().parents:  # a manifest may only name files of its own folder
            raise ArtifactError(f"{path}: the manifest names {file.name!r} outside its folder; refused",
                                hint="re-run vit-edge convert")
        if not file.is_file():
            raise ArtifactError(f"{path}: the manifest names {file.name} but it is missing",
                                hint="re-run vit-edge convert")
        return _artifact(file, target, manifest, preprocess, options, verify=True)
    suffix_target = targets.for_suffix(path.suffix)
    if path.is_file() and suffix_target:
        manifest = _manifest_beside(path, suffix_target)
        verify = (path.parent / "manifest.json").exists()  # a bare file the user named has nothing to check against
        return _artifact(path, target or suffix_target, manifest, preprocess, options, verify=verify)
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact",
                            hint="pass a vit-edge --out directory or an artifact file (.onnx, .xml, .engine)")
    raise ArtifactError(f"{path}: not an artifact (expected a --out directory, or a file ending in "
                        f"{', '.join(s for e in targets.TARGETS.values() for s in e.suffixes)})")


def reference(spec, *, checkpoint=None, task: str | None = "classify", seed: int = 0,
              trust_checkpoint: bool = False, preprocess=None, threads: int | None = None,
              **build) -> Runtime:
    """The torch FP32 reference of a MODEL spec (or an already loaded ``LoadedModel``), fed like artifacts."""
    from vit_edge.runtimes.torch import TorchRuntime
    from vit_edge.sources import LoadedModel, load_model

    loaded = spec if isinstance(spec, LoadedModel) else load_model(
        spec, checkpoint=checkpoint, task=task, seed=seed, trust_checkpoint=trust_checkpoint, **build)
    return TorchRuntime(loaded, threads=threads, preprocess=preprocess)


# What only a MODEL spec takes (how it is built and fed), not an artifact (which carries its weights, labels
# and preprocessing).
PREPROCESS_OPTIONS = ("input_size", "mean", "std", "channels", "interpolation", "crop_pct")
SOURCE_OPTIONS = ("checkpoint", "trust_checkpoint", "task", "labels_file", "seed", "num_classes") \
    + PREPROCESS_OPTIONS


def is_artifact(item) -> bool:
    """Whether ``item`` names an artifact (a --out folder, an .onnx/.xml/.engine file) rather than a MODEL spec."""
    path = Path(str(item))
    return (path.is_dir() and not (path / "config.json").exists()) or \
        (path.is_file() and targets.for_suffix(path.suffix) is not None)


def load_any(item, **options) -> Runtime:
    """An artifact when ``item`` is one, else the torch reference of the MODEL spec it names (what
    ``predict``, ``validate --reference`` and ``bench`` accept). ``options`` may hold the MODEL spec's
    :data:`SOURCE_OPTIONS` (``checkpoint=`` and friends, as ``convert`` takes them): an error for an artifact,
    except the preprocessing ones, which feed it (with ``preprocess_from=MODEL``; an artifact that records no
    preprocessing must be given the ``need``-ed fields, see :mod:`vit_edge.runtimes.given_preprocess`)."""
    from vit_edge.errors import InputError, flags_apply
    from vit_edge.sources import LoadedModel

    source = {k: options.pop(k) for k in SOURCE_OPTIONS if k in options}
    preprocess_from, need = options.pop("preprocess_from", None), options.pop("need", None)
    given = [k for k, v in source.items() if v not in (None, False, 0)]
    if isinstance(item, LoadedModel):
        return reference(item, preprocess=options.get("preprocess"), threads=options.get("threads"))
    path = Path(str(item))
    if is_artifact(path):
        given = [k for k in given if k not in PREPROCESS_OPTIONS]  # an artifact may be fed otherwise
        if given:
            raise InputError(f"{flags_apply(given)} to a MODEL spec, not to the artifact {path}",
                             hint="drop them: an artifact carries its own weights and labels")
        if options.get("preprocess") is None:
            from vit_edge.runtimes.given_preprocess import for_artifact

            options["preprocess"] = for_artifact(path, {k: source.get(k) for k in PREPROCESS_OPTIONS},
                                                 preprocess_from, need=need)
        if preprocess_from is not None and "labels" not in options:
            from vit_edge.runtimes.given_preprocess import labels_of

            options["labels"] = labels_of(preprocess_from)  # used only where the artifact records none
        return load(path, **options)
    if preprocess_from is not None:
        raise InputError(f"--preprocess-from applies to an artifact, not to the MODEL spec {item}",
                         hint="drop it: a MODEL spec declares its own preprocessing (or pass --input-size, --mean...)")
    if path.suffix.lower() in (".bin", ".json") or (targets.for_suffix(path.suffix) and not path.exists()):
        raise ArtifactError(f"{path}: no such artifact file")
    extra = {k: source[k] for k in ("labels_file", "num_classes") + PREPROCESS_OPTIONS
             if source.get(k) is not None}
    return reference(str(item), preprocess=options.get("preprocess"), threads=options.get("threads"),
                     checkpoint=source.get("checkpoint"), task=source.get("task") or "classify",
                     seed=source.get("seed") or 0, trust_checkpoint=bool(source.get("trust_checkpoint")), **extra)


def reference_from_manifest(manifest, *, directory=None, trusted: bool = False, code_named: bool = False,
                            **options) -> Runtime:
    """The FP32 reference a manifest's ``source`` records: the ONNX file it was converted from, or its
    MODEL spec rebuilt in torch (same checkpoint, seed, size and build options).

    A manifest is data: what it names is rebuilt only when that runs no code the artifact controls
    (:func:`vit_edge.runtimes.trust.check_source`; ``code_named``: the user named this model). ``trusted``
    is for a manifest this process just wrote from the user's own command line (convert's validation).
    ``directory`` is the artifact folder: files outside it that the reference reads are logged."""
    from vit_edge.runtimes import trust

    source = manifest.source
    if trusted:
        plan = {"onnx": source.onnx_file} if source.kind == "onnx" else \
            {"spec": source.spec, "checkpoint": source.checkpoint if source.kind != "demo" else None}
    else:
        plan = trust.check_source(manifest, directory, code_named=code_named)
        trust.say_outside(plan.pop("outside"), directory)
    if "onnx" in plan:
        if plan["onnx"] and Path(plan["onnx"]).exists():
            return load(plan["onnx"], **options)
        raise VitEdgeError("the candidate was converted from an ONNX file that is gone", hint="pass --reference")
    if plan["spec"] is None:
        raise VitEdgeError("no reference recorded in the candidate's manifest", hint="pass --reference")
    from vit_edge.sources import build_options

    checkpoint = plan["checkpoint"]
    if checkpoint and not Path(checkpoint).exists():
        raise VitEdgeError(f"the reference checkpoint {checkpoint} recorded in the manifest is gone",
                           hint="pass --reference MODEL with --checkpoint available")
    return reference(plan["spec"], checkpoint=checkpoint, task=manifest.task or "classify", seed=manifest.seed or 0,
                     preprocess=options.get("preprocess"), threads=options.get("threads"),
                     **build_options(source.to_dict()))


def names_recorded_source(reference, manifest) -> bool:
    """Whether ``--reference`` names the very model the manifest records (file paths compared resolved), so
    the recorded recipe -- checkpoint, seed, size, build options -- rebuilds it, with the user's consent to
    run its code."""
    from vit_edge.errors import ModelSpecError
    from vit_edge.sources.spec import absolute_spec, parse_spec

    if manifest is None or manifest.source.spec is None or not isinstance(reference, (str, Path)):
        return False
    try:
        kind, value = parse_spec(str(reference))
        recorded_kind, recorded_value = parse_spec(manifest.source.spec)
    except ModelSpecError:
        return False
    if kind != recorded_kind or kind == "onnx":
        return False
    return absolute_spec(kind, value, str(reference)) == absolute_spec(recorded_kind, recorded_value,
                                                                      manifest.source.spec)


def _manifest_beside(path: Path, target: str):
    from vit_edge.artifact import MANIFEST, Manifest, read_manifest

    if (path.parent / MANIFEST).exists():
        return read_manifest(path.parent)
    if path.suffix.lower() == ".onnx":
        from vit_edge.onnx_meta import read_metadata

        meta = read_metadata(path)
        if meta:
            return Manifest.from_dict({**meta, "target": "onnx", "artifact": path.name})
    return Manifest(target=target, artifact=path.name, precision=_bare_ir_precision(path))


def _bare_ir_precision(path: Path) -> str | None:
    """What another tool's OpenVINO IR holds, read from its XML: int8 (FakeQuantize), fp16 (f16 constants), or
    None (taken as fp32). Why: an fp32 IR runs its float layers at f32, anything else at the plugin's choice
    (bf16 where the CPU has it), as benchmark_app runs it; optimum-intel's INT8 IR run at f32 agreed 99.25%
    with FP32 where at bf16, as deployed, it agrees 98.75% (imagenette fixture, 400 photos)."""
    if path.suffix.lower() != ".xml":
        return None
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    if 'type="FakeQuantize"' in text:
        return "int8"
    return "fp16" if 'element_type="f16"' in text else None


def _artifact(file: Path, target: str, manifest, preprocess, options, verify: bool = False) -> Runtime:
    from vit_edge.preprocess import PreprocessConfig

    entry = targets.TARGETS.get(target)
    if entry is None:
        raise ArtifactError(f"unknown artifact target {target!r}", hint=f"one of {', '.join(targets.names())}")
    module = importlib.import_module(entry.runtime)
    if verify:  # once per load, before the backend reads a byte: a swapped file must not run
        from vit_edge.runtimes.trust import verify_files

        rebuild = getattr(module, "rebuild_hint", None)
        verify_files(file, manifest, hint=(rebuild(file) if rebuild else None) or "re-run vit-edge convert")
    if preprocess is None:
        if manifest.preprocess is not None:
            preprocess = manifest.preprocess
        elif file.suffix.lower() == ".onnx":
            from vit_edge.onnx_meta import graph_preprocess

            preprocess = graph_preprocess(file)  # channels and size from its input shape, not assumed
            log.warning("%s has no recorded preprocessing; using %d channel(s) at %dx%d (its input shape) and "
                        "default statistics", file, preprocess.channels, *preprocess.input_size)
        else:
            log.warning("%s has no recorded preprocessing; using defaults", file)
            preprocess = PreprocessConfig()
    by_folder = options.pop("name_by_folder", True)
    labels = options.pop("labels", None)  # for an artifact that records none (one another tool wrote)
    runtime = module.from_artifact(file, manifest, preprocess, **options)
    if labels is not None and runtime.labels is None:
        runtime.labels = list(labels)
    if by_folder:
        runtime.name = _display_name(file, runtime.name)
    return runtime


def _display_name(file: Path, name: str) -> str:
    """What reports call an artifact: its folder, since every folder holds a model.onnx or model.xml; a bare
    file (no manifest beside it) keeps its own name. A backend's suffix ("model.onnx (no engine)") stays."""
    from vit_edge.artifact import MANIFEST

    folder = file.resolve().parent
    if not (folder / MANIFEST).is_file() or not name.startswith(file.name):
        return name
    return folder.name + name[len(file.name):]
