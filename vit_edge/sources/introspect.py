"""What a loaded module reveals by looking or running: its patch size, and whether it runs at a size."""

from __future__ import annotations

from vit_edge.errors import ModelSpecError, first_line

FIXED_SIZE_HINT = "use its pre-training size or one its patch/window sizes divide"


def patch_size(module) -> int | None:
    """The patch size of a ViT-like module: the stride of its first Conv2d whose kernel equals its stride
    (the patch embedding, whatever the family calls it); None when there is none."""
    import torch

    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d) and sub.kernel_size == sub.stride and sub.stride[0] > 1:
            return int(sub.stride[0])
    return None


def probe_sizes(size, patch: int | None = None) -> list:
    """Two more input sizes (about 3/4 and 5/4 of ``size``, on a grid of twice the patch size when known)
    at which a --dynamic-size model must run and its export must hold parity: a graph with a size baked
    in fails there."""
    h, w = size
    step = 2 * patch if patch else next((s for s in (32, 28, 16, 14) if h % s == 0 and w % s == 0), 8)
    return [(max(step, round(h * f / step) * step), max(step, round(w * f / step) * step)) for f in (0.75, 1.25)]


def check_runs_at(module, size, *, problem: str, hint: str = FIXED_SIZE_HINT, channels: int = 3) -> None:
    """One forward at ``size``: a model that cannot run there fails now, with the model's own reason."""
    import torch

    module.eval()
    try:
        with torch.no_grad():
            module(torch.zeros(1, channels, *size))
    except Exception as exc:  # models raise anything on a bad size; the reason is what the user needs
        raise ModelSpecError(f"{problem} at input size {size_text(size)}: {first_line(exc)}", hint=hint) from None


def size_text(size) -> str:
    return "default" if size is None else f"{size[0]}x{size[1]}"

