"""The FP32 ONNX debug re-exports from the manifest's source, kept: one export per (reference, input, exporter
options, library versions, export code), so a second ``debug`` of the same artifact skips the torch rebuild
and the export (14-17 s of dynamo export for ViT-S, and importing torch at all).

The key is a sha256 of everything that determines the exported graph and the torch module names debug
reports: the reference's identity as the reference-output cache computes it
(:func:`vit_edge.reference_cache.reference_identity`: the recorded spec, checkpoint path and sha256, build
options, seed, task, and the size and mtime of every local file it is rebuilt from), the candidate's
preprocessing (input size and channels of the export), the recorded opset and dynamic-size flag, the
installed versions of the libraries that build and export the model, and a digest of vit-edge's export and
naming code. Any change is a miss; a hit is the very file an export wrote, checked against its recorded
sha256 (a torn or edited entry is a miss).

An entry is ``<key>.onnx`` and ``<key>.json`` (the exporter, the reference's name, the GEMM -> torch module
map and the module list debug names points with), in ``$VIT_EDGE_CACHE_DIR/debug-export`` (``off``
disables), else ``~/.cache/vit-edge/debug-export``. Both are written atomically (temp file, then rename), the
JSON last, so a reader sees no entry or a whole one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger("vit_edge")

KEY_VERSION = 1
KIND = "debug-export"
LIBRARIES = ("torch", "timm", "transformers", "torchvision", "onnx", "onnxscript", "onnxslim", "onnx-ir",
             "safetensors", "numpy")
CODE = ("convert/stages/export.py", "convert/stages/opmap.py", "debug/points.py", "debug/export_cache.py")


def cache_dir() -> Path | None:
    from vit_edge.cache import cache_dir as folder

    return folder(KIND)


def _code_digest() -> str:
    import vit_edge

    h = hashlib.sha256()
    root = Path(vit_edge.__file__).parent
    for name in CODE:
        with contextlib.suppress(OSError):
            h.update(name.encode() + (root / name).read_bytes())
    return h.hexdigest()


def make_key(manifest, preprocess) -> tuple[str, dict]:
    """(sha256 hex, the JSON it hashes) for the export of ``manifest``'s recorded source."""
    from vit_edge.artifact import library_versions
    from vit_edge.reference_cache import reference_identity

    export = manifest.export
    options = {"opset": int(export.opset) if export is not None and export.opset else None,
               "dynamic_size": bool(export.dynamic_size) if export is not None else False}
    parts = {"version": KEY_VERSION, "reference": reference_identity(manifest), "preprocess": preprocess.to_dict(),
             "export": options, "libraries": library_versions(*LIBRARIES), "code": _code_digest()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest(), parts


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(key: str) -> tuple[Path, dict] | None:
    """(the cached FP32 ONNX, its metadata) for ``key``, or None (absent, torn, unreadable, or caching off)."""
    folder = cache_dir()
    if folder is None:
        return None
    onnx_path, meta_path = folder / f"{key}.onnx", folder / f"{key}.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("key") != key or not onnx_path.is_file() or _sha256(onnx_path) != meta.get("sha256"):
            log.info("debug export cache: ignoring a stale entry %s", meta_path)
            return None
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("debug export cache: ignoring unreadable %s (%s)", meta_path, exc)
        return None
    return onnx_path, meta


def _atomic(folder: Path, name: str, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, folder / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def store(key: str, parts: dict, onnx_path: Path, meta: dict) -> Path | None:
    """Keep ``onnx_path`` and ``meta`` under ``key``; None when caching is off or the folder is not writable."""
    folder = cache_dir()
    if folder is None:
        return None
    record = {**meta, "key": key, "sha256": _sha256(onnx_path), "parts": parts}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(onnx_path, "rb") as src:
            _atomic(folder, f"{key}.onnx", lambda f: shutil.copyfileobj(src, f, 1 << 20))
        text = json.dumps(record, default=str).encode()  # key order kept: the modules are in definition order
        _atomic(folder, f"{key}.json", lambda f: f.write(text))
        return folder / f"{key}.onnx"
    except OSError as exc:
        log.warning("debug export cache: cannot write in %s (%s); continuing without", folder, exc)
        return None
