"""Loading weights safely: safetensors, or torch.load with ``weights_only=True`` (never arbitrary pickles)."""

from __future__ import annotations

import logging
from pathlib import Path

from vit_edge.artifact import sha256_file
from vit_edge.errors import CheckpointError

log = logging.getLogger("vit_edge")

# Containers that training scripts wrap state dicts in.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "state_dict_ema", "model_ema")


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
    if path.suffix == ".safetensors":
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
    prefix = "module."
    if all(k.startswith(prefix) for k in state):  # saved from DataParallel / DDP
        state = {k[len(prefix):]: v for k, v in state.items()}
    return state


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
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise CheckpointError(f"checkpoint {path} does not fit the model: {k} has shape {tuple(v.shape)}, "
                                  f"the model expects {tuple(own[k].shape)}",
                                  hint="is it for another architecture or num_classes?")
    module.load_state_dict(state, strict=True)


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
