"""``--task features``: the pooled / CLS embedding each model family's own API calls its features.

- timm: ``forward_head(forward_features(x), pre_logits=True)`` - the vector the classifier reads (CLS
  or average pool, after the head norm; the mean of the two tokens for distilled DeiT);
- Hugging Face: handled by :class:`vit_edge.sources.hf_model.HFImageModel` (pooler output / image embeds / CLS);
- anything else with a ``forward_features`` (e.g. a user's module) uses that.
"""

from __future__ import annotations

from vit_edge.errors import ModelSpecError


def features_module(loaded):
    """A module whose forward returns the embedding (N, D) of ``loaded.module``."""
    import torch

    kind = loaded.source.get("kind")
    if kind == "hf":
        return loaded.module  # built for the task already
    module = loaded.module
    if kind == "timm":
        if not hasattr(module, "forward_head"):
            raise ModelSpecError(f"timm:{loaded.name} has no forward_head, so it has no defined features")
    elif not hasattr(module, "forward_features"):
        raise ModelSpecError(f"--task features needs a model with forward_features; {loaded.name} has none",
                             hint="give your module a forward_features(x) returning (N, D)")

    class Features(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            if kind == "timm":
                return self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1)
            return self.model.forward_features(x)

    return Features(module)
