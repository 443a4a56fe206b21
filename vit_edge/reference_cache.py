"""The reference's outputs, computed once: a ``.npz`` per (reference, preprocessing, data, limit, batching).

Why: recomputing the FP32 torch reference dominated every ``validate``. The key is a sha256 of everything
that determines the outputs, so a hit is exact (the very arrays a recomputation returns) and any change is a
miss:

- the reference: the manifest's source (spec, checkpoint path and recorded sha256, build options), seed and
  task, with the size and mtime of every local file it is rebuilt from (checkpoint, model file, HF folder,
  the packaged demo weights); or, for ``--reference``/ONNX sources, the reference files' sizes, mtimes and
  recorded hashes; and the installed versions of the libraries that run and decode it;
- the preprocessing (the candidate's, which both sides use);
- the data: every item's path, size and mtime (a folder), the file and its array (``.npy``/``.npz``), or
  the pixels of images held in memory (``digits:*``: 360 tiny images, hashed in milliseconds);
- ``limit`` and the batch size (batched matmuls may round differently at another batch size).

Entries live in ``$VIT_EDGE_CACHE_DIR/reference`` (``off`` disables), else ``~/.cache/vit-edge/reference``
(``$XDG_CACHE_HOME`` respected); writes are atomic (temp file, then rename); an unreadable entry is a miss.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger("vit_edge")

KEY_VERSION = 1
LIBRARIES = ("torch", "timm", "transformers", "torchvision", "onnxruntime", "openvino", "numpy", "pillow",
             "scikit-learn", "safetensors")


@dataclass
class CachedReference:
    """Reference outputs served from the cache, standing in for a runtime."""

    outputs: np.ndarray
    indices: np.ndarray
    info: dict
    key: str
    path: Path


def cache_dir() -> Path | None:
    from vit_edge.cache import cache_dir as folder

    return folder("reference")


def _stat(path) -> list:
    """[resolved path, size, mtime_ns] of a file; of every file under a folder (sorted); [path, None] if gone."""
    path = Path(path)
    try:
        if path.is_dir():
            return [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(path.rglob("*")) if p.is_file()]
        st = path.stat()
        return [str(path.resolve()), st.st_size, st.st_mtime_ns]
    except OSError:
        return [str(path), None]


def _versions() -> dict:
    from vit_edge.artifact import library_versions

    return library_versions(*LIBRARIES)


def _artifact_files(path: Path) -> dict:
    """What identifies an artifact used as the reference: its folder's (or its own and its siblings') files."""
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file() and not p.name.startswith(".")]
    else:
        files = [p for p in sorted(path.parent.iterdir()) if p.is_file() and
                 (p.name.startswith(path.stem) or p.name == "manifest.json")]
    recorded = {}
    manifest = (path if path.is_dir() else path.parent) / "manifest.json"
    with contextlib.suppress(OSError, ValueError, AttributeError):
        recorded = {k: v.get("sha256") for k, v in (json.loads(manifest.read_text()).get("files") or {}).items()}
    return {"files": [_stat(p) for p in files], "sha256": recorded}


def reference_identity(manifest, reference=None, options: dict | None = None) -> dict:
    """Everything that says which reference runs: see the module docstring. ``options``: how a named MODEL
    spec is built (its checkpoint and labels files are identified like the reference's own files)."""
    if options:
        named = reference_identity(manifest, reference)
        return {**named, "options": {k: _stat(v) if k in ("checkpoint", "labels_file") else v
                                     for k, v in sorted(options.items())}}
    if reference is not None:
        text = str(reference)
        path = Path(text)
        if path.exists():
            return {"named": text, "artifact": _artifact_files(path)}
        local = [p for p in {text, text.split(":", 1)[-1], text.rsplit(":", 1)[0]} if p and Path(p).exists()]
        return {"named": text, "runtime": "torch", "files": [_stat(p) for p in sorted(local)]}
    if manifest is None:
        return {"none": True}
    source = manifest.source
    if source.kind == "onnx":
        return {"onnx": source.onnx_file, "onnx_sha256": source.onnx_sha256,
                "file": _stat(source.onnx_file) if source.onnx_file else None}
    files = []
    if source.kind == "demo":
        from vit_edge.demo import CONFIG, DEMO_DIR, WEIGHTS

        files += [_stat(WEIGHTS), _stat(CONFIG), _stat(DEMO_DIR / "model.py")]
    elif source.checkpoint:
        files.append(_stat(source.checkpoint))
    for value in (source.file, (source.spec or "").split(":", 1)[-1]):
        if value and Path(value).exists():
            files.append(_stat(value))
    if source.import_root:  # the packages beside a user's model file are part of the reference too
        files += [_stat(Path(source.import_root) / name) for name in sorted(source.modules or {})]
    return {"source": source.to_dict(), "seed": manifest.seed, "task": manifest.task, "runtime": "torch",
            "files": files}


def data_identity(images) -> dict:
    """The data the outputs were computed on (hashed as it goes: a folder of 50,000 files is one digest)."""
    h = hashlib.sha256()
    if images.preprocessed is not None:
        src = Path(images.source)
        h.update(json.dumps(_stat(src) if src.exists() else None).encode())
        h.update(hashlib.sha256(np.ascontiguousarray(images.preprocessed).tobytes()).digest())
        return {"source": images.source, "kind": "array", "digest": h.hexdigest()}
    kind = "files"
    for item in images.items:
        if isinstance(item, (str, Path)):
            h.update(json.dumps(_stat(item)).encode())
        else:  # an image in memory (digits:*, a subset handed over by convert): its pixels
            kind = "memory"
            h.update(f"{item.mode}{item.size}".encode())
            h.update(item.tobytes())
    h.update(str(len(images.items)).encode())
    return {"source": images.source, "kind": kind, "digest": h.hexdigest()}


def make_key(reference: dict, preprocess, data: dict, *, limit, batch_size: int) -> tuple[str, dict]:
    """(sha256 hex, the JSON it hashes)."""
    parts = {"version": KEY_VERSION, "reference": reference, "preprocess": preprocess.to_dict(), "data": data,
             "limit": limit, "batch_size": batch_size, "libraries": _versions()}
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), parts


def load(key: str) -> CachedReference | None:
    """The entry of ``key``, or None (absent, unreadable, or the cache is off)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{key}.npz"
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return CachedReference(data["outputs"], data["indices"], json.loads(str(data["info"])), key, path)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("reference cache: ignoring unreadable %s (%s)", path, exc)
        return None


def store(key: str, parts: dict, outputs: np.ndarray, indices: np.ndarray, info: dict) -> Path | None:
    """Write the entry atomically (a reader sees no entry or a whole one); None when it cannot be written."""
    folder = cache_dir()
    if folder is None:
        return None
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, outputs=outputs, indices=np.asarray(indices, np.int64), key=np.array(key),
                     info=np.array(json.dumps(info, sort_keys=True)),
                     parts=np.array(json.dumps(parts, sort_keys=True, default=str)))
        path = folder / f"{key}.npz"
        os.replace(tmp, path)
        return path
    except OSError as exc:
        log.warning("reference cache: cannot write in %s (%s); continuing without", folder, exc)
        if tmp:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        return None
