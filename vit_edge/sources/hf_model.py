"""A Hugging Face vision model as one tensor in, one tensor out: logits, or the features its API names.

Imported only when a Hugging Face model is loaded (it needs torch and transformers), by
``vit_edge.sources.hf``: it subclasses ``torch.nn.Module``, so it cannot live there without importing torch.
"""

from __future__ import annotations

import inspect

import torch


class HFImageModel(torch.nn.Module):
    """``forward(pixel_values)`` -> logits (``task="classify"``) or the embedding (``task="features"``).

    Features are what each model's own API returns as its image embedding:

    - ``*ForImageClassification``: the base model's ``pooler_output`` when it has a pooler (Swin, Swin V2,
      BEiT mean pooling, DINOv2 CLS after LayerNorm, CLIP/SigLIP vision pooled output), else the CLS token
      of the final LayerNorm (ViT, DeiT) - the vector their classifier head reads;
    - ``CLIPVisionModelWithProjection``: ``image_embeds`` (what ``CLIPModel.get_image_features`` gives);
    - other vision models (``SiglipVisionModel``, ``Dinov2Model``, ...): ``pooler_output``, else CLS.
    """

    def __init__(self, inner, *, task: str, classifier: bool, interpolate: bool):
        super().__init__()
        self.inner = inner
        self.task = task
        self.classifier = classifier
        # DINOv2 always interpolates and takes no flag; passing it elsewhere keeps position encodings
        # right at sizes other than the configured one.
        accepts = "interpolate_pos_encoding" in inspect.signature(inner.forward).parameters
        self.extra = {"interpolate_pos_encoding": True} if interpolate and accepts else {}

    def forward(self, pixel_values):
        if self.task == "classify":
            return self.inner(pixel_values=pixel_values, **self.extra).logits
        model = self._feature_model()
        out = model(pixel_values=pixel_values, **self._extra_for(model))
        for name in ("image_embeds", "pooler_output"):
            value = getattr(out, name, None)
            if value is not None:
                return value.flatten(1)
        return out.last_hidden_state[:, 0]

    def _feature_model(self):
        if not self.classifier:
            return self.inner
        base = self.inner.base_model
        # CLIP/SigLIP classifiers keep their encoder under ``vision_model``, not under the base prefix.
        return getattr(self.inner, "vision_model", base) if base is self.inner else base

    def _extra_for(self, model):
        if self.extra and "interpolate_pos_encoding" in inspect.signature(model.forward).parameters:
            return self.extra
        return {}
