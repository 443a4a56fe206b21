"""``load(artifact)`` -> a :class:`Runtime` for any vit-edge artifact, or the torch reference of a MODEL spec.

Running an ONNX or OpenVINO artifact imports neither torch nor the exporters: this module and the
backend module are all that load.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from vit_edge.errors import ArtifactError
from vit_edge.runtimes.base import Runtime, softmax

__all__ = ["load", "Runtime", "softmax", "RUNTIMES"]

# target name (as in the manifest) -> module with ``from_artifact(path, manifest, preprocess, **options)``
RUNTIMES = {"onnx": "vit_edge.runtimes.onnx", "openvino": "vit_edge.runtimes.openvino",
            "tensorrt": "vit_edge.runtimes.tensorrt"}
# artifact file suffix -> target, for files passed without their directory
SUFFIXES = {".onnx": "onnx", ".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}


def load(artifact, *, target: str | None = None, preprocess=None, **options) -> Runtime:
    """Load an artifact file or ``--out`` directory; anything else is treated as a MODEL spec and run in
    torch (the FP32 reference). ``options`` go to the backend (threads, device, hint, ...).

    ``target`` picks how a directory is run when it holds more than one artifact (a TensorRT directory
    also holds the TensorRT-ready ONNX that ONNX Runtime can run)."""
    from vit_edge.sources import LoadedModel

    if isinstance(artifact, LoadedModel):
        return _torch(artifact, preprocess, options)
    path = Path(artifact)
    if path.is_dir() and (path / "manifest.json").exists():
        from vit_edge.artifact import read_manifest

        manifest = read_manifest(path)
        target = target or manifest["target"]
        file = path / (manifest["artifact"] if target == manifest["target"] else
                       manifest.get("artifacts", {}).get(target, ""))
        if path.resolve() not in file.resolve().parents:  # a manifest may only name files of its own folder
            raise ArtifactError(f"{path}: the manifest names {file.name!r} outside its folder; refused",
                                hint="re-run vit-edge convert")
        if not file.is_file():
            raise ArtifactError(f"{path}: the manifest names {file.name or target} but it is missing",
                                hint="re-run vit-edge convert")
        return _artifact(file, target, manifest, preprocess, options)
    if path.is_file() and path.suffix.lower() in SUFFIXES:
        return _artifact(path, target or SUFFIXES[path.suffix.lower()], _manifest_beside(path), preprocess,
                         options)
    if path.is_dir():
        if (path / "config.json").exists():
            return _torch(str(path), preprocess, options)
        raise ArtifactError(f"{path}: a directory without manifest.json", hint="pass a vit-edge --out directory")
    if path.suffix.lower() in SUFFIXES or path.suffix.lower() in (".bin", ".json"):
        raise ArtifactError(f"{path}: no such artifact file")
    return _torch(str(artifact), preprocess, options)


def _manifest_beside(path: Path) -> dict:
    from vit_edge.artifact import read_manifest

    if (path.parent / "manifest.json").exists():
        manifest = read_manifest(path.parent)
        return manifest
    if path.suffix.lower() == ".onnx":
        from vit_edge.onnx_meta import read_metadata

        meta = read_metadata(path)
        if meta:
            return {**meta, "target": "onnx", "artifact": path.name}
    return {"target": SUFFIXES[path.suffix.lower()], "artifact": path.name}


def _artifact(file: Path, target: str, manifest: dict, preprocess, options) -> Runtime:
    from vit_edge.preprocess import PreprocessConfig

    if target not in RUNTIMES:
        raise ArtifactError(f"unknown artifact target {target!r}", hint=f"one of {', '.join(RUNTIMES)}")
    if preprocess is None:
        if "preprocess" in manifest:
            preprocess = PreprocessConfig.from_dict(manifest["preprocess"])
        else:
            import logging

            logging.getLogger("vit_edge").warning("%s has no recorded preprocessing; using defaults", file)
            preprocess = PreprocessConfig()
    module = importlib.import_module(RUNTIMES[target])
    return module.from_artifact(file, manifest, preprocess, **options)


def _torch(spec, preprocess, options) -> Runtime:
    from vit_edge.runtimes.torch import TorchRuntime
    from vit_edge.sources import LoadedModel, load_model

    loaded = spec if isinstance(spec, LoadedModel) else load_model(
        spec, checkpoint=options.get("checkpoint"), task=options.get("task", "classify"),
        seed=options.get("seed", 0), trust_checkpoint=options.get("trust_checkpoint", False))
    return TorchRuntime(loaded, threads=options.get("threads"), preprocess=preprocess)
