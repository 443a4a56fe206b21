"""``hf:DIR`` or ``DIR``: a Hugging Face model directory (config.json + weights, or random init without
weights), wrapped as one tensor in, one tensor out (:class:`vit_edge.sources.hf_model.HFImageModel`), and
its ``preprocessor_config.json`` translated to a :class:`PreprocessConfig`."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from vit_edge.errors import CheckpointError, ModelSpecError
from vit_edge.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig
from vit_edge.sources.channels import declared
from vit_edge.sources.common import LoadedModel, LoadRequest, load_checkpoint_into, no_checkpoint, note_assumed, warn
from vit_edge.sources.introspect import check_runs_at

log = logging.getLogger("vit_edge")

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
# PIL resample codes as processors store them (0 nearest, 2 bilinear, 3 bicubic); Lanczos (1), box (4) and
# Hamming (5) map to the closest of the interpolations PreprocessConfig supports.
RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


def load(value: str, request: LoadRequest) -> LoadedModel:
    from vit_edge.errors import require
    from vit_edge.quiet import quiet_transformers

    transformers = require("transformers", "export")
    quiet_transformers(transformers)
    task = request.task or "classify"
    directory = Path(value)
    if not (directory / "config.json").exists():
        raise ModelSpecError(f"{directory} has no config.json", hint="pass a Hugging Face model directory")
    has_weights = any((directory / f).exists() for f in WEIGHT_FILES)
    source, warnings = {"kind": "hf", "name": str(directory)}, []
    try:
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{directory}/config.json is not a usable Hugging Face config ({exc})") from None
    cls = model_class(transformers, config)
    rebuilt = request.num_classes is not None and request.num_classes != getattr(config, "num_labels", None)
    if rebuilt:  # the head is rebuilt at N (its id2label becomes LABEL_0..), the body keeps its weights
        config.num_labels = int(request.num_classes)
    try:
        if has_weights:
            module = cls.from_pretrained(directory, local_files_only=True, use_safetensors=None,
                                         **({"config": config, "ignore_mismatched_sizes": True} if rebuilt else {}))
            if rebuilt and request.checkpoint is None:
                warn(warnings, f"--num-classes {request.num_classes}: the classifier head of {directory} is "
                               "RANDOMLY INITIALISED (pass --checkpoint with the fine-tuned weights)")
        else:
            module = cls.from_config(config)
            no_checkpoint(source, warnings, str(directory))
    except ValueError as exc:
        raise ModelSpecError(f"{directory}: not an image model transformers can load ({str(exc)[:120]})") from None
    except OSError as exc:
        raise CheckpointError(f"{directory}: weights are corrupt or unreadable ({str(exc)[:120]})") from None
    if request.checkpoint is not None:
        load_checkpoint_into(module, request.checkpoint, request.trust_checkpoint, source, warnings=warnings)
    classifier = "ForImageClassification" in type(module).__name__
    if task == "classify" and not classifier:
        raise ModelSpecError(f"{directory} holds a {type(module).__name__}, a feature extractor with no "
                             "classification head", hint="convert it with --task features")
    pre = preprocess_config(directory, config, warnings, given=request.preprocess_given)
    size = tuple(request.input_size or pre.input_size)
    # Position encodings are interpolated in the graph when the model runs at a size it was not built for.
    interpolate = bool(request.dynamic_size or size != image_size(config))
    from vit_edge.sources.hf_model import HFImageModel

    wrapped = HFImageModel(module, task="classify" if task == "classify" else "features",
                           classifier=classifier, interpolate=interpolate)
    if request.input_size is not None:
        check_runs_at(wrapped, size, problem=f"{directory} cannot run", channels=pre.channels)
    id2label = getattr(config, "id2label", None) or {}
    labels = [id2label[i] for i in sorted(id2label)] if id2label and classifier else None
    return LoadedModel(wrapped, pre, labels, source, task=task, warnings=warnings)


def model_class(transformers, config):
    """The class the directory declares (``architectures`` in config.json: CLIPVisionModelWithProjection,
    SiglipVisionModel, Dinov2Model, ...), else the image-classification auto class."""
    for name in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, name, None)
        if cls is not None:
            return cls
    return transformers.AutoModelForImageClassification


def image_size(config) -> tuple:
    """The (height, width) the model was configured for; CLIP/SigLIP keep it in their vision config."""
    vision = getattr(config, "vision_config", None) or config
    size = getattr(vision, "image_size", 224)
    return (size, size) if isinstance(size, int) else tuple(size)


def num_channels(config) -> int:
    """The input channels the config declares (``num_channels``; CLIP/SigLIP keep it in their vision config)."""
    vision = getattr(config, "vision_config", None) or config
    value = getattr(vision, "num_channels", 3)
    return int(value) if isinstance(value, int) and value > 0 else 3


def preprocess_config(directory: Path, config, warnings: list | None = None, given=frozenset()) -> PreprocessConfig:
    """``preprocessor_config.json`` as a :class:`PreprocessConfig`: resize + centre crop when the processor
    crops, a square at ``shortest_edge``, else a squash to height x width. Without the file: the config's
    image size, mean/std 0.5, bilinear squash (what most ViT processors default to)."""
    size = image_size(config)
    pre = _processor_config(directory, config, size, given)
    chans = num_channels(config)
    if chans == pre.channels:
        return pre
    return pre.replace(**declared(chans, pre.mean, pre.std, name=str(directory),
                                  warnings=[] if warnings is None else warnings))


def _processor_config(directory: Path, config, size, given=frozenset()) -> PreprocessConfig:
    path = Path(directory) / "preprocessor_config.json"
    if not path.exists():
        note_assumed(f"{directory} has no preprocessor_config.json", {
            "input_size": f"{size[0]}x{size[1]}", "mean": "mean 0.5", "std": "std 0.5", "interpolation": "bilinear",
            "crop_pct": "squash (no crop)"}, given, None)
        return PreprocessConfig(input_size=size, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear",
                                crop_pct=1.0, resize_mode="squash")
    p = json.loads(path.read_text())
    mean = tuple(p.get("image_mean", IMAGENET_MEAN)) if p.get("do_normalize", True) else (0.0,) * 3
    std = tuple(p.get("image_std", IMAGENET_STD)) if p.get("do_normalize", True) else (1.0,) * 3
    interp = RESAMPLE.get(p.get("resample", 2), "bilinear")
    s = p.get("size", size)
    if isinstance(s, int):
        s = {"shortest_edge": s}
    if p.get("do_center_crop") and p.get("crop_size"):
        c = p["crop_size"]
        crop = (c, c) if isinstance(c, int) else (c["height"], c["width"])
        short = s.get("shortest_edge") or min(s.get("height", crop[0]), s.get("width", crop[1]))
        return PreprocessConfig(input_size=crop, mean=mean, std=std, interpolation=interp,
                                crop_pct=min(1.0, min(crop) / short))
    if "shortest_edge" in s:
        return PreprocessConfig(input_size=(s["shortest_edge"],) * 2, mean=mean, std=std, interpolation=interp,
                                crop_pct=1.0)
    return PreprocessConfig(input_size=(s["height"], s["width"]), mean=mean, std=std, interpolation=interp,
                            crop_pct=1.0, resize_mode="squash")
