"""``file.py:callable``: the user's own ``nn.Module`` (or a factory returning one); ``--checkpoint`` is
loaded as a state dict."""

from __future__ import annotations

import difflib
from pathlib import Path

from vit_edge.errors import ModelSpecError
from vit_edge.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from vit_edge.sources.common import LoadedModel, LoadRequest, load_checkpoint_into, warn


def load(text: str, request: LoadRequest) -> LoadedModel:
    import importlib.util

    import torch

    path_text, _, attr = text.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ModelSpecError(f"Python file {path} not found", hint="use path/to/file.py:callable")
    spec = importlib.util.spec_from_file_location(f"vit_edge_user_{path.stem}", path)
    module_ns = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module_ns)
    except Exception as exc:
        raise ModelSpecError(f"{path} failed to import: {type(exc).__name__}: {exc}") from None
    factory = getattr(module_ns, attr, None)
    if factory is None:
        names = [n for n in dir(module_ns) if not n.startswith("_") and callable(getattr(module_ns, n))]
        close = difflib.get_close_matches(attr, names, n=3)
        raise ModelSpecError(f"{path} has no callable {attr!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        module = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    except Exception as exc:
        raise ModelSpecError(f"{path}:{attr}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelSpecError(f"{path}:{attr} returned {type(module).__name__}, not a torch.nn.Module")
    source, warnings = {"kind": "python", "name": f"{path.name}:{attr}", "file": str(path.resolve())}, []
    if request.checkpoint is not None:
        load_checkpoint_into(module, request.checkpoint, request.trust_checkpoint, source)
    else:
        source["random_init"] = False  # the factory owns its weights; we cannot tell if they are trained
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:
        pre = PreprocessConfig(input_size=tuple(cfg["input_size"][-2:]), mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
                               std=tuple(cfg.get("std", IMAGENET_STD)),
                               interpolation=cfg.get("interpolation", "bicubic"),
                               crop_pct=float(cfg.get("crop_pct", 0.875)))
    else:
        pre = PreprocessConfig()
        warn(warnings, f"{path.name}:{attr} declares no preprocessing: assuming 224x224, ImageNet mean/std, "
                       "bicubic, crop 0.875 (set --input-size/--mean/--std/--interpolation/--crop-pct, or give "
                       "the module a timm-style pretrained_cfg dict)")
    labels = getattr(module, "labels", None)
    return LoadedModel(module, pre, list(labels) if labels else None, source, warnings=warnings)
