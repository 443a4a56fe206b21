"""The demo model's architecture as a user-supplied factory, so tests can load other weights into it."""

import json

from vit_edge.demo import CONFIG
from vit_edge.demo.model import TinyViT


def make_model():
    cfg = json.loads(CONFIG.read_text())
    model = TinyViT(**cfg["architecture"])
    pre = cfg["preprocess"]
    model.pretrained_cfg = {"input_size": (3, *pre["input_size"]), "mean": pre["mean"], "std": pre["std"],
                            "interpolation": pre["interpolation"], "crop_pct": pre["crop_pct"]}
    model.labels = cfg["labels"]
    return model
