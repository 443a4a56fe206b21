"""``demo`` (or no MODEL): the built-in demo ViT trained on scikit-learn's digits, weights included."""

from __future__ import annotations

import json

from vit_edge.preprocess import PreprocessConfig
from vit_edge.sources.common import LoadedModel, LoadRequest


def load(value: str, request: LoadRequest) -> LoadedModel:
    from safetensors.torch import load_file

    from vit_edge.artifact import sha256_file
    from vit_edge.demo import CONFIG, WEIGHTS
    from vit_edge.demo.model import TinyViT

    cfg = json.loads(CONFIG.read_text())
    module = TinyViT(**cfg["architecture"])
    module.load_state_dict(load_file(str(WEIGHTS)))
    source = {"kind": "demo", "name": cfg["name"], "checkpoint": "vit_edge/demo/" + WEIGHTS.name,
              "checkpoint_sha256": sha256_file(WEIGHTS), "random_init": False}
    return LoadedModel(module, PreprocessConfig.from_dict(cfg["preprocess"]), cfg["labels"], source)
