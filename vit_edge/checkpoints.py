"""Loading weights safely: safetensors, or torch.load with ``weights_only=True`` (never arbitrary pickles)."""

from __future__ import annotations

import logging
from pathlib import Path

from vit_edge.artifact import sha256_file
from vit_edge.errors import CheckpointError

log = logging.getLogger("vit_edge")

# Containers that training scripts wrap state dicts in.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "state_dict_ema", "model_ema")
# Key prefixes that wrappers add to every key of the model they wrap.
WRAPPER_PREFIXES = {"module.": "DataParallel/DDP", "model.": "PyTorch Lightning",
                    "_orig_mod.": "torch.compile"}


def read_state_dict(path, trust: bool = False) -> dict:
    """Read a state dict from .safetensors / .pth / .pt / .bin.

    Pickles are loaded with ``weights_only=True``: one that would construct arbitrary objects (and so could
    run code) is refused. ``trust=True`` is the explicit opt-out for old pickles from a source you trust.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} not found", hint="check the --checkpoint path")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory", hint="pass the weights file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)", hint="re-download or re-save it")
    _check_format(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_short(exc)})",
                                  hint="re-download or re-save it") from None
    else:
        import pickle

        try:
            state = torch.load(path, map_location="cpu", weights_only=not trust)
        except pickle.UnpicklingError as exc:
            # torch reports every weights_only failure the same way; only a blocked GLOBAL means the pickle
            # wants to build arbitrary objects. Anything else (bad opcodes, bad header) is plain corruption.
            if "global" in str(exc).lower():
                raise CheckpointError(
                    f"checkpoint {path} contains pickled objects beyond tensors, which could run code on load; "
                    "refused", hint="re-save it as a state dict or safetensors, or pass --trust-checkpoint "
                    "if you trust its source") from None
            raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint ({_last_line(exc)})",
                                  hint="re-download or re-save it") from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({_short(exc)})",
                                  hint="re-download or re-save it") from None
    if trust:
        log.warning("loaded %s with weights_only=False (--trust-checkpoint): only do this for trusted files", path)
    return _unwrap(state, path)


def _unwrap(state, path) -> dict:
    import torch

    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    for key in _WRAPPER_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    return state


def strip_wrapper_prefixes(state: dict, own_keys) -> tuple:
    """``state`` without the prefixes wrappers put on every key (``module.`` DDP, ``model.`` Lightning,
    ``_orig_mod.`` torch.compile, in any nesting), and what was stripped. A prefix goes only when every key has
    it and stripping it fits the model's own keys at least as well: a model whose attribute really is ``model``
    keeps its keys."""
    own = set(own_keys)
    stripped = []
    while True:
        prefix = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            return state, stripped
        shorter = {k[len(prefix):]: v for k, v in state.items()}
        if len(own & set(shorter)) < len(own & set(state)):
            return state, stripped
        state = shorter
        stripped.append(prefix)


def _check_format(path: Path) -> None:
    """Refuse a file that is no state dict, or not the format its suffix says, naming what it really is (read
    from its first bytes, as ``file`` does). Unknown bytes pass: the loader then says how they are corrupt."""
    kind = sniff(path)
    named_safetensors = path.suffix.lower() == ".safetensors"
    if kind is None or (kind == "safetensors") == named_safetensors and kind in ("safetensors", "torch", "pickle"):
        return
    fix = {"torchscript": "load it with torch.jit.load and save its .state_dict() with torch.save",
           "onnx": "pass an ONNX model as MODEL (vit-edge convert model.onnx), not as --checkpoint",
           "safetensors": "rename it to .safetensors", "torch": "rename it to .pth", "pickle": "rename it to .pth",
           "gzip": "decompress it first"}.get(kind, "pass a .safetensors or .pth/.pt/.bin state dict")
    promised = "a safetensors file" if named_safetensors else "a torch state dict"
    raise CheckpointError(f"checkpoint {path} is {_KINDS[kind]}, not {promised} as its name says; refused", hint=fix)


_KINDS = {"torchscript": "a TorchScript archive (torch.jit.save)", "safetensors": "a safetensors file",
          "torch": "a torch.save zip archive", "pickle": "a Python pickle", "onnx": "an ONNX model",
          "zip": "a zip archive (not torch.save's)", "numpy": "a NumPy array file", "hdf5": "an HDF5 file "
          "(Keras/TensorFlow weights?)", "gzip": "gzip-compressed", "json": "JSON text"}


def sniff(path: Path) -> str | None:
    """What a weights file really is, from its magic bytes: safetensors, torch (torch.save zip), torchscript,
    pickle, onnx, zip, numpy, hdf5, gzip, json; None when unknown."""
    import struct
    import zipfile

    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return "torch"  # a truncated torch.save archive: torch.load reports it as corrupt
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            return "torchscript"
        return "torch" if any(n.endswith("data.pkl") for n in names) else "zip"
    if len(head) >= 9 and struct.unpack("<Q", head[:8])[0] > 0 and head[8:9] == b"{":
        return "safetensors"  # an 8-byte header length, then the JSON header
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    for magic, kind in ((b"\x93NUMPY", "numpy"), (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"\x1f\x8b", "gzip")):
        if head.startswith(magic):
            return kind
    if head.lstrip()[:1] in (b"{", b"["):
        return "json"
    if head[:1] == b"\x08" and b"\x12" in head[:16] and _is_onnx(path):  # ir_version, then producer_name
        return "onnx"
    return None


def _is_onnx(path: Path) -> bool:
    try:
        import onnx

        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # not ONNX, or onnx not installed: unknown bytes
        return False


def apply_state_dict(module, state: dict, path) -> None:
    """Load a state dict strictly, naming the first mismatching keys instead of dumping them all."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (first: {', '.join(unexpected[:3])})")
        raise CheckpointError(f"checkpoint {path} does not fit the model: " + "; ".join(parts),
                              hint="is it for another architecture or num_classes?")
    wrong = [k for k, v in state.items() if tuple(own[k].shape) != tuple(v.shape)]
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"checkpoint {path} does not fit the model: {k} has shape {tuple(state[k].shape)}, "
                              f"the model expects {tuple(own[k].shape)}", hint=_shape_hint(own, state, wrong))
    module.load_state_dict(state, strict=True)


def _shape_hint(own: dict, state: dict, wrong: list) -> str:
    """``pass --num-classes N`` when only the classifier differs (every mismatch is in its first dimension, one
    class count on each side), else the generic question."""
    pairs = {(own[k].shape[0], state[k].shape[0]) for k in wrong
             if own[k].dim() == state[k].dim() >= 1 and tuple(own[k].shape[1:]) == tuple(state[k].shape[1:])}
    if len(pairs) == 1 and all(own[k].dim() <= 2 for k in wrong) and len(wrong) <= 2:
        (ours, theirs), = pairs
        return (f"its classifier has {theirs} classes, the model {ours}: pass --num-classes {theirs} "
                "(timm, torchvision, Hugging Face)")
    return "is it for another architecture or num_classes?"


def checkpoint_info(path) -> dict:
    path = Path(path)
    return {"checkpoint": str(path.resolve()), "checkpoint_sha256": sha256_file(path)}


def _last_line(exc) -> str:
    """torch wraps the real unpickling error in paragraphs of advice; keep the line that names it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip() and "documentation" not in line]
    return _short(lines[-1] if lines else exc)


def _short(exc) -> str:
    text = " ".join(str(exc).split())
    return text[:160] + ("..." if len(text) > 160 else "")
