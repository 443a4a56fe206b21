"""``--task features``: the pooled / CLS embedding each model family's own API calls its features."""

from __future__ import annotations

from vit_edge.errors import ModelSpecError


def features_module(loaded):
    """Wrap ``loaded.module`` so forward returns the pre-logits embedding (N, D)."""
    import torch

    inner = loaded.module
    kind = loaded.source.get("kind")

    class Features(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            m = self.model
            if kind == "timm":
                return m.forward_head(m.forward_features(x), pre_logits=True)
            if kind == "hf":
                out = m.inner(pixel_values=x, output_hidden_states=True)
                return out.hidden_states[-1][:, 0]
            if hasattr(m, "forward_features"):
                return m.forward_features(x)
            raise ModelSpecError(f"--task features is not supported for {kind} models")

    return Features(inner)
