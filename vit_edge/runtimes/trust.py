"""What loading an artifact takes on trust, and what it does not.

A manifest is data from wherever the artifact came from. So (1) every file a runtime loads must match the
sha256 the manifest records, checked once per load; and (2) the FP32 reference a manifest names is rebuilt
only when that runs no code the artifact controls: the built-in demo, timm and torchvision architectures,
Hugging Face folders without custom code, ONNX files. A ``file.py:callable`` (or a Hugging Face folder with
``auto_map`` code) runs only when the user names it (``--reference``); a pickle checkpoint a manifest names
is never unpickled; the files it names outside the artifact folder are read, but the log says so.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vit_edge.errors import ArtifactError

log = logging.getLogger("vit_edge")

SAFE_CHECKPOINTS = (".safetensors",)  # a format that holds tensors only: reading one runs nothing
# timm.create_model keywords that would read files or fetch weights (checkpoint_path is torch.load-ed).
_LOADING_KWARGS = ("pretrained", "checkpoint", "cache_dir", "file", "path", "url", "hub")
NAME_IT = "pass --reference MODEL (with the spec, if you trust it) or --reference an FP32 artifact"


def loaded_files(file: Path, manifest) -> list:
    """The files a runtime reads to load ``file``: itself, OpenVINO's weights beside an ``.xml`` (implied
    by the name, so they must be recorded), and recorded companions such as ONNX external data."""
    names = [file.name]
    if file.suffix.lower() == ".xml":
        names.append(file.with_suffix(".bin").name)
    others = {manifest.artifact, *(manifest.artifacts or {}).values()} - {file.name}
    names += [n for n in (manifest.files or {}) if n.startswith(file.stem + ".") and n not in names
              and n not in others and not n.endswith((".json", ".md"))]
    return names


def verify_files(file: Path, manifest, hint: str = "re-run vit-edge convert") -> None:
    """Refuse (one line) a file the runtime would load whose sha256 or size differs from the manifest's
    record, or that the manifest does not record: a copied or swapped model.bin must not run."""
    from vit_edge.artifact import sha256_file

    recorded = manifest.files or {}
    for name in loaded_files(file, manifest):
        path = file.parent / name
        entry = recorded.get(name)
        if entry is None or not entry.sha256:
            raise ArtifactError(f"{path}: the manifest records no sha256 for it, so it cannot be checked; refused",
                                hint=hint)
        if not path.is_file():
            raise ArtifactError(f"{path}: the manifest names it but it is missing", hint=hint)
        if (entry.bytes is not None and path.stat().st_size != entry.bytes) or sha256_file(path) != entry.sha256:
            raise ArtifactError(f"{path}: not the one the manifest records (its sha256 differs): the file was "
                                "changed or swapped after the convert", hint=hint)


def check_source(manifest, directory=None, *, code_named: bool = False) -> dict:
    """Refuse a recorded reference that would run code or unpickle a file the artifact controls; return how
    to load the allowed ones: ``{"spec"|"onnx": ..., "checkpoint": ..., "outside": [paths to say]}``.

    ``code_named``: the user named this same model on the command line, so its code may run (checkpoints
    are still never unpickled). Decided on what the spec *is* (parsed), never on the recorded ``kind``."""
    source = manifest.source
    folder = Path(directory).resolve() if directory is not None else None
    outside = []

    def note(path: str) -> None:
        if folder is None or folder not in Path(path).resolve().parents:
            outside.append(path)

    if source.kind == "onnx" or (source.spec is None and source.onnx_file):
        return {"onnx": _onnx_file(source.onnx_file, note), "outside": outside}
    if source.spec is None:
        raise ArtifactError("no reference recorded in the candidate's manifest", hint="pass --reference")
    from vit_edge.errors import ModelSpecError
    from vit_edge.sources.spec import parse_spec

    try:
        kind, value = parse_spec(source.spec)
    except ModelSpecError as exc:
        raise ArtifactError(f"the reference the manifest records cannot be rebuilt ({exc.message})",
                            hint=NAME_IT) from None
    if kind == "onnx":  # a spec naming an ONNX file is that file, whatever ``kind`` says
        return {"onnx": _onnx_file(value, note), "outside": outside}
    if kind == "python" and not code_named:
        raise ArtifactError(f"the manifest names Python code ({source.spec}) as its reference; vit-edge never runs "
                            "code that an artifact names", hint=f"pass --reference {source.spec} if you trust that "
                            "file, or --reference an FP32 artifact")
    if kind == "hf":
        _check_hf_folder(Path(value), source.spec, code_named)
        note(value)
    if kind == "timm":
        _check_model_kwargs((source.build or {}).get("model_kwargs"))
    checkpoint = source.checkpoint if kind != "demo" else None
    if checkpoint:
        if not Path(checkpoint).exists():
            raise ArtifactError(f"the reference checkpoint {checkpoint} recorded in the manifest is gone",
                                hint="pass --reference MODEL with --checkpoint available")
        if Path(checkpoint).suffix.lower() not in SAFE_CHECKPOINTS:
            raise ArtifactError(f"the manifest names the pickle checkpoint {checkpoint} for its reference; vit-edge "
                                "never unpickles a file that an artifact names",
                                hint="re-save it as .safetensors and convert again, or pass --reference an FP32 "
                                     "artifact of the model")
        note(checkpoint)
    return {"spec": source.spec, "checkpoint": checkpoint, "outside": outside}


def _onnx_file(onnx_file, note) -> str:
    """An ONNX file is data (its external data must stay beside it: checked when it loads); only an
    ``.onnx`` is taken, so a manifest cannot make the reference a TensorRT engine or an IR."""
    if not onnx_file or not Path(onnx_file).is_file():
        raise ArtifactError("the candidate was converted from an ONNX file that is gone", hint="pass --reference")
    if Path(onnx_file).suffix.lower() != ".onnx":
        raise ArtifactError(f"the manifest names {onnx_file} as the ONNX it was converted from, which is no .onnx "
                            "file; refused", hint=NAME_IT)
    note(onnx_file)
    return onnx_file


def _check_hf_folder(folder: Path, spec: str, code_named: bool) -> None:
    """A Hugging Face folder is data unless its config maps classes to its own code (``auto_map``) or its
    weights are pickles only (``pytorch_model.bin``, read with torch.load); the user may name either."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        raise ArtifactError(f"the reference folder {folder} the manifest names has no readable config.json",
                            hint=NAME_IT) from None
    if isinstance(config, dict) and config.get("auto_map") and not code_named:
        raise ArtifactError(f"the manifest names {folder}, a Hugging Face folder with its own code (auto_map), as "
                            "its reference; vit-edge never runs code that an artifact names",
                            hint=f"pass --reference {spec} if you trust it, or --reference an FP32 artifact")
    pickles = [p.name for p in sorted(folder.glob("pytorch_model*.bin"))]  # what from_pretrained would torch.load
    if pickles and not code_named and not any(folder.glob("*.safetensors")):
        raise ArtifactError(f"the manifest names {folder}, whose weights are pickles ({pickles[0]}); vit-edge "
                            "never unpickles a file that an artifact names",
                            hint="save the model with safetensors, or pass --reference an FP32 artifact")


def _check_model_kwargs(kwargs) -> None:
    """Keywords for timm.create_model from a manifest: plain values only, none that loads weights or files."""
    for key, value in (kwargs or {}).items():
        plain = value is None or isinstance(value, (bool, int, float, str)) or (
            isinstance(value, list) and all(isinstance(v, (bool, int, float)) for v in value))
        if any(word in str(key).lower() for word in _LOADING_KWARGS) or not plain:
            raise ArtifactError(f"the manifest's model_kwargs hold {key!r}, which vit-edge does not take from an "
                                "artifact (it could load files)", hint=NAME_IT)


def say_outside(outside: list, directory=None) -> None:
    """The files outside the artifact folder a reference reads: never followed silently."""
    where = f" by {Path(directory) / 'manifest.json'}" if directory is not None else " by the manifest"
    for path in outside:
        log.warning("the reference reads %s, named%s (outside the artifact folder)", path, where)
