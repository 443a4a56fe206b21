"""Repairs for randomly initialised models, so their parity checks are not vacuous.

Applied by ``load_model`` only when a loader reports ``random_init``: trained weights are never touched.
"""

from __future__ import annotations


def redraw_zero_weights(module, seed: int) -> None:
    """Random-init models: timm zero-initialises classifier heads, which makes every logit 0 and every
    parity check vacuous. Re-draw such weights (seeded) so outputs carry signal."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.Linear) and not sub.weight.any():
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=gen) * 0.02)
                if sub.bias is not None:
                    sub.bias.zero_()


def open_layer_scales(module, value: float = 0.1) -> None:
    """Random-init models: layer scales initialised near zero (DeiT III 1e-6, CaiT/DINOv2 1e-5) leave every
    block's output out of the residual stream, so the output barely depends on the image and every photo
    gets the same top-1 - a vacuous parity check. Open them to ``value`` (trained models sit near 0.1-1)."""
    import torch

    with torch.no_grad():
        for name, param in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if (leaf.startswith("gamma") and param.ndim == 1 and param.numel() > 1
                    and 0 < float(param.abs().max()) < 1e-3 and bool((param == param.flatten()[0]).all())):
                param.fill_(value)
