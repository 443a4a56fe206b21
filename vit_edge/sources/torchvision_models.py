"""``torchvision:NAME``: a torchvision classification model; ``--checkpoint`` loads its weights (random
initialisation without one). Preprocessing and labels come from the model's DEFAULT weights entry."""

from __future__ import annotations

import difflib

from vit_edge.errors import ModelSpecError
from vit_edge.preprocess import PreprocessConfig
from vit_edge.sources.common import LoadedModel, LoadRequest, load_checkpoint_into, no_checkpoint


def load(name: str, request: LoadRequest) -> LoadedModel:
    from vit_edge.errors import require

    tv = require("torchvision", "export")
    available = tv.models.list_models(module=tv.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        raise ModelSpecError(f"torchvision has no classification model {name!r}"
                             + (f"; did you mean {', '.join('torchvision:' + c for c in close)}?" if close else ""))
    extra = {} if request.num_classes is None else {"num_classes": int(request.num_classes)}
    try:
        module = tv.models.get_model(name, weights=None, **extra)
    except TypeError as exc:
        raise ModelSpecError(f"torchvision:{name} cannot be built with --num-classes ({exc})") from None
    source, warnings = {"kind": "torchvision", "name": name}, []
    if request.checkpoint is not None:
        load_checkpoint_into(module, request.checkpoint, request.trust_checkpoint, source, warnings=warnings)
    else:
        no_checkpoint(source, warnings, f"torchvision:{name}")
    weights = tv.models.get_model_weights(name).DEFAULT
    t = weights.transforms()
    crop = t.crop_size[0]
    resize = t.resize_size[0] if t.resize_size else crop
    pre = PreprocessConfig(input_size=(crop, crop), mean=tuple(t.mean), std=tuple(t.std),
                           interpolation=t.interpolation.value, crop_pct=min(1.0, crop / resize))
    labels = list(weights.meta.get("categories") or []) or None
    if labels is not None and request.num_classes is not None and len(labels) != request.num_classes:
        labels = None  # ImageNet's names do not name a head rebuilt with --num-classes
    return LoadedModel(module, pre, labels, source, warnings=warnings)
