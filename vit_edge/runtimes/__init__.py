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

__all__ = ["load", "reference", "load_any", "reference_from_manifest", "Runtime", "softmax"]

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
            raise ArtifactError(f"{path}: this {manifest.target} artifact holds nothing for target {target!r}",
                                hint=f"load it as {manifest.target}" + (
                                    f" or {', '.join(manifest.artifacts)}" if manifest.artifacts else ""))
        file = path / name
        if path.resolve() not in file.resolve().parents:  # a manifest may only name files of its own folder
            raise ArtifactError(f"{path}: the manifest names {file.name!r} outside its folder; refused",
                                hint="re-run vit-edge convert")
        if not file.is_file():
            raise ArtifactError(f"{path}: the manifest names {file.name} but it is missing",
                                hint="re-run vit-edge convert")
        return _artifact(file, target, manifest, preprocess, options)
    suffix_target = targets.for_suffix(path.suffix)
    if path.is_file() and suffix_target:
        return _artifact(path, target or suffix_target, _manifest_beside(path, suffix_target), preprocess, options)
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


def load_any(item, **options) -> Runtime:
    """An artifact when ``item`` is one, else the torch reference of the MODEL spec it names (what
    ``validate --reference`` and ``bench`` accept)."""
    from vit_edge.sources import LoadedModel

    if isinstance(item, LoadedModel):
        return reference(item, preprocess=options.get("preprocess"), threads=options.get("threads"))
    path = Path(str(item))
    if (path.is_dir() and not (path / "config.json").exists()) or (path.is_file() and targets.for_suffix(path.suffix)):
        return load(path, **options)
    if path.suffix.lower() in (".bin", ".json") or (targets.for_suffix(path.suffix) and not path.exists()):
        raise ArtifactError(f"{path}: no such artifact file")
    return reference(str(item), preprocess=options.get("preprocess"), threads=options.get("threads"),
                     checkpoint=options.get("checkpoint"), task=options.get("task", "classify"),
                     seed=options.get("seed", 0), trust_checkpoint=options.get("trust_checkpoint", False))


def reference_from_manifest(manifest, **options) -> Runtime:
    """The FP32 reference a manifest's ``source`` records: the ONNX file it was converted from, or its
    MODEL spec rebuilt in torch (same checkpoint, seed, size and build options)."""
    source = manifest.source
    if source.kind == "onnx":
        if source.onnx_file and Path(source.onnx_file).exists():
            return load(source.onnx_file, **options)
        raise VitEdgeError("the candidate was converted from an ONNX file that is gone", hint="pass --reference")
    if source.spec is None:
        raise VitEdgeError("no reference recorded in the candidate's manifest", hint="pass --reference")
    from vit_edge.sources import build_options

    checkpoint = source.checkpoint if source.kind != "demo" else None
    if checkpoint and not Path(checkpoint).exists():
        raise VitEdgeError(f"the reference checkpoint {checkpoint} recorded in the manifest is gone",
                           hint="pass --reference MODEL with --checkpoint available")
    return reference(source.spec, checkpoint=checkpoint, task=manifest.task or "classify", seed=manifest.seed or 0,
                     preprocess=options.get("preprocess"), threads=options.get("threads"),
                     **build_options(source.to_dict()))


def _manifest_beside(path: Path, target: str):
    from vit_edge.artifact import MANIFEST, Manifest, read_manifest

    if (path.parent / MANIFEST).exists():
        return read_manifest(path.parent)
    if path.suffix.lower() == ".onnx":
        from vit_edge.onnx_meta import read_metadata

        meta = read_metadata(path)
        if meta:
            return Manifest.from_dict({**meta, "target": "onnx", "artifact": path.name})
    return Manifest(target=target, artifact=path.name)


def _artifact(file: Path, target: str, manifest, preprocess, options) -> Runtime:
    from vit_edge.preprocess import PreprocessConfig

    entry = targets.TARGETS.get(target)
    if entry is None:
        raise ArtifactError(f"unknown artifact target {target!r}", hint=f"one of {', '.join(targets.names())}")
    if preprocess is None:
        if manifest.preprocess is not None:
            preprocess = manifest.preprocess
        else:
            log.warning("%s has no recorded preprocessing; using defaults", file)
            preprocess = PreprocessConfig()
    return importlib.import_module(entry.runtime).from_artifact(file, manifest, preprocess, **options)
