"""MODEL spec text -> (kind, value), and the spec as manifests record it."""

from __future__ import annotations

import difflib
from pathlib import Path

from vit_edge.errors import ModelSpecError


def parse_spec(spec: str | None) -> tuple[str, str]:
    """Classify a MODEL spec without importing anything heavy: (kind, value)."""
    if spec in (None, "", "demo"):
        return "demo", "demo"
    text = str(spec)
    for prefix in ("timm", "torchvision", "hf"):
        if text.startswith(prefix + ":"):
            value = text.split(":", 1)[1]
            if not value:
                raise ModelSpecError(f"empty model name in {text!r}", hint=f"use {prefix}:NAME")
            return prefix, value
    if ".py:" in text:
        return "python", text
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        if not path.exists():
            raise ModelSpecError(f"ONNX file {path} not found", hint="check the path")
        if path.is_dir():
            raise ModelSpecError(f"{path} is a directory, not an ONNX file")
        return "onnx", text
    if path.is_dir():
        if (path / "config.json").exists():
            return "hf", text
        raise ModelSpecError(f"{path} is a directory without config.json",
                             hint="pass a Hugging Face model directory, or a model file")
    if path.suffix == ".py":
        raise ModelSpecError(f"{text!r} names a Python file but no callable", hint=f"use {text}:make_model")
    hint = "use timm:NAME, hf:DIR, torchvision:NAME, file.py:callable, model.onnx, or nothing for the demo"
    if path.exists():
        raise ModelSpecError(f"cannot tell what kind of model {text!r} is", hint=hint)
    if "/" in text or path.suffix:
        raise ModelSpecError(f"model {text!r} not found", hint=hint)
    raise ModelSpecError(f"unknown MODEL spec {text!r}{timm_suggestion(text)}", hint=hint)


def timm_suggestion(name: str) -> str:
    """``"; did you mean timm:A, timm:B?"`` for close timm model names, else ``""`` (also without timm)."""
    try:
        import timm
    except ImportError:
        return ""
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.75)
    return f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""


def absolute_spec(kind: str, value: str, spec) -> str:
    """The spec as recorded in manifests: file-based specs made absolute so `validate` can rebuild the
    reference from another working directory."""
    if kind == "python":
        path, _, attr = value.rpartition(":")
        return f"{Path(path).resolve()}:{attr}"
    if kind in ("hf", "onnx"):
        return str(Path(value).resolve())
    return str(spec or "demo")
