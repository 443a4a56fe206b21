"""``file.py:callable``: the user's own ``nn.Module`` (or a factory returning one); ``--checkpoint`` is
loaded as a state dict.

The file's folder is first on ``sys.path`` while it is imported and its factory runs, as ``python file.py``
would have it, so ``from vision.vit_model import ViT`` finds the package beside it (as in every training
repository). The folder leaves ``sys.path`` afterwards, so its ``data/`` or ``utils.py`` cannot shadow a
library imported later. The manifest records the folder and the sha256 of every module imported from it,
which is what rebuilding the reference needs (and what the reference cache keys on).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import sys
from pathlib import Path

from vit_edge.errors import ModelSpecError
from vit_edge.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, default_statistics
from vit_edge.sources.channels import declared, module_channels
from vit_edge.sources.common import LoadedModel, LoadRequest, load_checkpoint_into, note_assumed, warn

# file -> names of the modules its import brought in from its folder. A second load in the same process finds
# them in sys.modules already (nothing new is imported), yet must record the same files.
_SIBLINGS: dict = {}


def load(text: str, request: LoadRequest) -> LoadedModel:
    import torch

    path_text, _, attr = text.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ModelSpecError(f"Python file {path} not found", hint="use path/to/file.py:callable")
    folder = path.resolve().parent
    with _on_sys_path(folder) as before:
        module_ns = _import(path, folder)
        module = _build(module_ns, path, attr, torch)
        _SIBLINGS.setdefault(path.resolve(), set()).update(set(sys.modules) - before)
    source, warnings = {"kind": "python", "name": f"{path.name}:{attr}", "file": str(path.resolve()),
                        "import_root": str(folder), "modules": _module_hashes(path.resolve(), folder)}, []
    if request.checkpoint is not None:
        load_checkpoint_into(module, request.checkpoint, request.trust_checkpoint, source, warnings=warnings)
    else:
        source["random_init"] = False  # the factory owns its weights; we cannot tell if they are trained
        warn(warnings, f"no --checkpoint: {path.name}:{attr} runs with whatever weights {attr}() gives it, "
                       "RANDOM unless it loads trained weights itself (pass --checkpoint W to load them)")
    return _finish(module, path, attr, source, warnings, request.preprocess_given)


@contextlib.contextmanager
def _on_sys_path(folder: Path):
    """``folder`` first on sys.path for the duration; yields the module names imported before."""
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield set(sys.modules)
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _import(path: Path, folder: Path):
    import importlib.util

    name = f"vit_edge_user_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module_ns = importlib.util.module_from_spec(spec)
    sys.modules[name] = module_ns  # as an imported module is: dataclasses and pickling look it up there
    try:
        spec.loader.exec_module(module_ns)
    except ModuleNotFoundError as exc:
        sys.modules.pop(name, None)
        raise ModelSpecError(f"{path} failed to import: ModuleNotFoundError: {exc}",
                             hint=f"packages beside the file are importable ({folder} is on sys.path while it "
                                  "loads, as with python FILE.py); install any other package it needs") from None
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ModelSpecError(f"{path} failed to import: {type(exc).__name__}: {exc}") from None
    return module_ns


def _module_hashes(path: Path, folder: Path) -> dict:
    """``{path relative to the folder: sha256}`` of the modules imported from the file's folder."""
    hashes = {}
    for name in sorted(_SIBLINGS.get(path, ())):
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file or name.startswith("vit_edge_user_"):
            continue
        file = Path(file).resolve()
        if folder in file.parents and file.is_file():
            hashes[file.relative_to(folder).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return dict(sorted(hashes.items()))


def _build(module_ns, path: Path, attr: str, torch):
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
    return module


def _finish(module, path: Path, attr: str, source: dict, warnings: list, given=frozenset()) -> LoadedModel:
    """The module with the preprocessing and labels it declares."""
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    name = f"{path.name}:{attr}"
    # (C, H, W) or (H, W); a stale C (a timm config under in_chans=1) is corrected from the module later.
    chans = module_channels(module) or 3
    if isinstance(cfg, dict) and "input_size" in cfg:
        size = tuple(cfg["input_size"])
        chans = int(size[0]) if len(size) == 3 else chans
        pre = PreprocessConfig(input_size=size[-2:], interpolation=cfg.get("interpolation", "bicubic"),
                               crop_pct=float(cfg.get("crop_pct", 0.875)),
                               **declared(chans, cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD),
                                          name=name, warnings=warnings))
    else:
        pre = PreprocessConfig(**default_statistics(chans))
        note_assumed(f"{path.name}:{attr} declares no preprocessing", {
            "input_size": f"{pre.input_size[0]}x{pre.input_size[1]}", "mean": "ImageNet mean", "std": "ImageNet std",
            "interpolation": pre.interpolation, "crop_pct": f"crop {pre.crop_pct:g}"}, given, warnings,
            ", or give the module a timm-style pretrained_cfg dict")
    labels = getattr(module, "labels", None)
    return LoadedModel(module, pre, list(labels) if labels else None, source, warnings=warnings)
