"""MODEL spec -> a loaded model, its preprocessing and its labels.

Specs (the ``MODEL`` argument of ``vit-edge convert``):

==========================  =====================================================================
(nothing) / ``demo``         the built-in demo ViT trained on scikit-learn's digits
``timm:NAME``                a timm model; ``--checkpoint`` loads weights (random init without one)
``hf:DIR`` or ``DIR``        a Hugging Face model directory (config.json + weights)
``torchvision:NAME``         a torchvision classification model with ``--checkpoint``
``file.py:callable``         your own ``nn.Module`` factory, ``--checkpoint`` loaded as a state dict
``model.onnx``               an existing ONNX file (export is skipped)
==========================  =====================================================================
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge.errors import CheckpointError, ModelSpecError
from vit_edge.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig

log = logging.getLogger("vit_edge")

TASKS = ("classify", "features")


@dataclass
class LoadedModel:
    """A torch module ready for export (eval mode, returns one tensor), with what it needs to be fed."""

    module: object | None  # torch.nn.Module, or None for an existing ONNX file
    preprocess: PreprocessConfig
    labels: list | None
    source: dict  # spec, kind, checkpoint, checkpoint_sha256, random_init
    task: str = "classify"
    onnx_path: Path | None = None
    warnings: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.source.get("name") or self.source["spec"]


def _warn(loaded_warnings: list, message: str) -> None:
    log.warning(message)
    loaded_warnings.append(message)


def parse_spec(spec: str | None) -> tuple[str, str]:
    """Classify a MODEL spec without importing anything heavy: (kind, value)."""
    if spec in (None, "", "demo"):
        return "demo", "demo"
    text = str(spec)
    for prefix in ("timm", "torchvision", "hf"):
        if text.startswith(prefix + ":"):
            value = text.split(":", 1)[1]
            if not value:
                raise ModelSpecError(f"empty model name in {text!r}", hint=f"use {prefix}:NAME")
            return prefix, value
    if ".py:" in text:
        path, _, attr = text.rpartition(":")
        return "python", text
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        if not path.exists():
            raise ModelSpecError(f"ONNX file {path} not found", hint="check the path")
        if path.is_dir():
            raise ModelSpecError(f"{path} is a directory, not an ONNX file")
        return "onnx", text
    if path.is_dir():
        if (path / "config.json").exists():
            return "hf", text
        raise ModelSpecError(f"{path} is a directory without config.json",
                             hint="pass a Hugging Face model directory, or a model file")
    if path.suffix == ".py":
        raise ModelSpecError(f"{text!r} names a Python file but no callable", hint=f"use {text}:make_model")
    hint = "use timm:NAME, hf:DIR, torchvision:NAME, file.py:callable, model.onnx, or nothing for the demo"
    if path.exists():
        raise ModelSpecError(f"cannot tell what kind of model {text!r} is", hint=hint)
    if "/" in text or path.suffix:
        raise ModelSpecError(f"model {text!r} not found", hint=hint)
    raise ModelSpecError(f"unknown MODEL spec {text!r}{_timm_suggestion(text)}", hint=hint)


def _timm_suggestion(name: str) -> str:
    try:
        import timm
    except ImportError:
        return ""
    close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.75)
    return f"; did you mean {', '.join('timm:' + c for c in close)}?" if close else ""


def load_model(spec: str | None = None, *, checkpoint=None, task: str = "classify", labels_file=None,
               trust_checkpoint: bool = False, seed: int = 0, **preprocess_overrides) -> LoadedModel:
    """Load MODEL ``spec``; keyword overrides (input_size, mean, std, interpolation, crop_pct) win over
    what the model declares."""
    if task not in TASKS:
        raise ModelSpecError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    kind, value = parse_spec(spec)
    if kind == "onnx":
        loaded = _from_onnx(Path(value))
    else:
        from vit_edge.errors import require

        require("torch", "export")
        import torch

        # Random initialisation is seeded so the same command gives the same artifact.
        torch.manual_seed(seed)
        loader = {"demo": _demo, "timm": _timm, "torchvision": _torchvision, "hf": _hf, "python": _python}[kind]
        loaded = loader(value, checkpoint, trust_checkpoint)
        loaded.module.eval()
        if loaded.source.get("random_init"):
            _redraw_zero_weights(loaded.module, seed)
        loaded = _apply_task(loaded, task)
    if checkpoint is not None and kind in ("demo", "onnx"):
        raise ModelSpecError(f"--checkpoint does not apply to a {kind} model")
    if labels_file is not None:
        loaded.labels = read_labels(labels_file)
    overrides = {k: v for k, v in preprocess_overrides.items() if v is not None}
    if overrides:
        loaded.preprocess = loaded.preprocess.replace(**overrides)
    loaded.source["spec"] = _absolute_spec(kind, value, spec)
    return loaded


def _absolute_spec(kind: str, value: str, spec) -> str:
    """The spec as recorded in manifests: file-based specs made absolute so `validate` can rebuild the
    reference from another working directory."""
    if kind == "python":
        path, _, attr = value.rpartition(":")
        return f"{Path(path).resolve()}:{attr}"
    if kind in ("hf", "onnx"):
        return str(Path(value).resolve())
    return str(spec or "demo")


def read_labels(path) -> list:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"cannot read labels file {path} ({exc.__class__.__name__})") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            raise ModelSpecError(f"labels file {path} is not valid JSON") from None
        if isinstance(data, dict):
            data = [data[k] for k in sorted(data, key=lambda k: int(k))]
        return [str(x) for x in data]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ModelSpecError(f"labels file {path} is empty")
    return lines


def _load_checkpoint_into(module, checkpoint, trust, source: dict) -> None:
    from vit_edge.checkpoints import apply_state_dict, checkpoint_info, read_state_dict

    state = read_state_dict(checkpoint, trust=trust)
    apply_state_dict(module, state, checkpoint)
    source.update(checkpoint_info(checkpoint))
    source["random_init"] = False


def _no_checkpoint(source: dict, warnings: list, what: str) -> None:
    source["random_init"] = True
    _warn(warnings, f"no --checkpoint: {what} is RANDOMLY INITIALISED; its predictions are meaningless "
                    "(fine for trying the pipeline, not for deployment)")


# ---------------------------------------------------------------- the sources


def _demo(_value, checkpoint, trust) -> LoadedModel:
    from safetensors.torch import load_file

    from vit_edge.demo import CONFIG, WEIGHTS
    from vit_edge.demo.model import TinyViT

    cfg = json.loads(CONFIG.read_text())
    module = TinyViT(**cfg["architecture"])
    module.load_state_dict(load_file(str(WEIGHTS)))
    from vit_edge.artifact import sha256_file

    source = {"kind": "demo", "name": cfg["name"], "checkpoint": "vit_edge/demo/" + WEIGHTS.name,
              "checkpoint_sha256": sha256_file(WEIGHTS), "random_init": False}
    return LoadedModel(module, PreprocessConfig.from_dict(cfg["preprocess"]), cfg["labels"], source)


def _timm(name, checkpoint, trust) -> LoadedModel:
    from vit_edge.errors import require

    timm = require("timm", "export")
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        raise ModelSpecError(f"timm has no model {name!r}{_timm_suggestion(name)}",
                             hint="list them with: python -c 'import timm; print(timm.list_models(\"*vit*\"))'")
    module = timm.create_model(name, pretrained=False)
    source, warnings = {"kind": "timm", "name": name}, []
    if checkpoint is not None:
        _load_checkpoint_into(module, checkpoint, trust, source)
    else:
        _no_checkpoint(source, warnings, f"timm:{name}")
    data_cfg = timm.data.resolve_data_config({}, model=module)
    pre = PreprocessConfig(
        input_size=tuple(data_cfg["input_size"][1:]),
        mean=tuple(data_cfg["mean"]), std=tuple(data_cfg["std"]),
        interpolation=data_cfg.get("interpolation", "bicubic") if data_cfg.get("interpolation") in
        ("bilinear", "bicubic", "nearest") else "bicubic",
        crop_pct=float(data_cfg.get("crop_pct", 0.875)),
        resize_mode="squash" if data_cfg.get("crop_mode") == "squash" else "shorter",
    )
    return LoadedModel(module, pre, _timm_labels(timm, module), source, warnings=warnings)


def _timm_labels(timm, module):
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(module)
        if subset:
            info = ImageNetInfo(subset)
            return [info.index_to_description(i) for i in range(info.num_classes())]
    except Exception as exc:  # labels are a convenience; never fail a conversion over them
        log.debug("no timm labels: %s", exc)
    return None


def _torchvision(name, checkpoint, trust) -> LoadedModel:
    from vit_edge.errors import require

    tv = require("torchvision", "export")
    available = tv.models.list_models(module=tv.models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        raise ModelSpecError(f"torchvision has no classification model {name!r}"
                             + (f"; did you mean {', '.join('torchvision:' + c for c in close)}?" if close else ""))
    module = tv.models.get_model(name, weights=None)
    source, warnings = {"kind": "torchvision", "name": name}, []
    if checkpoint is not None:
        _load_checkpoint_into(module, checkpoint, trust, source)
    else:
        _no_checkpoint(source, warnings, f"torchvision:{name}")
    weights = tv.models.get_model_weights(name).DEFAULT
    t = weights.transforms()
    crop = t.crop_size[0]
    resize = t.resize_size[0] if t.resize_size else crop
    pre = PreprocessConfig(input_size=(crop, crop), mean=tuple(t.mean), std=tuple(t.std),
                           interpolation=t.interpolation.value, crop_pct=min(1.0, crop / resize))
    return LoadedModel(module, pre, list(weights.meta.get("categories") or []) or None, source, warnings=warnings)


def _hf(directory, checkpoint, trust) -> LoadedModel:
    from vit_edge.errors import require

    transformers = require("transformers", "export")
    directory = Path(directory)
    if not (directory / "config.json").exists():
        raise ModelSpecError(f"{directory} has no config.json", hint="pass a Hugging Face model directory")
    has_weights = any((directory / f).exists() for f in
                      ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json"))
    source, warnings = {"kind": "hf", "name": str(directory)}, []
    try:
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelSpecError(f"{directory}/config.json is not a usable Hugging Face config ({exc})") from None
    try:
        if has_weights:
            module = transformers.AutoModelForImageClassification.from_pretrained(
                directory, local_files_only=True, use_safetensors=None)
        else:
            module = transformers.AutoModelForImageClassification.from_config(config)
            _no_checkpoint(source, warnings, str(directory))
    except ValueError as exc:
        raise ModelSpecError(f"{directory}: not an image-classification model ({str(exc)[:120]})") from None
    except OSError as exc:
        raise CheckpointError(f"{directory}: weights are corrupt or unreadable ({str(exc)[:120]})") from None
    if checkpoint is not None:
        _load_checkpoint_into(module, checkpoint, trust, source)
    pre = _hf_preprocess(directory, config)
    id2label = getattr(config, "id2label", None) or {}
    labels = [id2label[i] for i in sorted(id2label)] if id2label else None
    return LoadedModel(_HFLogits.wrap(module), pre, labels, source, warnings=warnings)


def _hf_preprocess(directory: Path, config) -> PreprocessConfig:
    resample = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}
    image_size = getattr(config, "image_size", 224)
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    path = directory / "preprocessor_config.json"
    if not path.exists():
        log.warning("%s has no preprocessor_config.json: assuming %sx%s, mean/std 0.5, bilinear squash",
                    directory, *size)
        return PreprocessConfig(input_size=size, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bilinear",
                                crop_pct=1.0, resize_mode="squash")
    p = json.loads(path.read_text())
    mean = tuple(p.get("image_mean", IMAGENET_MEAN)) if p.get("do_normalize", True) else (0.0,) * 3
    std = tuple(p.get("image_std", IMAGENET_STD)) if p.get("do_normalize", True) else (1.0,) * 3
    interp = resample.get(p.get("resample", 2), "bilinear")
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


class _HFLogits:
    """Wrap a Hugging Face model so forward(pixel_values) returns the logits tensor alone."""

    @staticmethod
    def wrap(module):
        import torch

        class HFLogits(torch.nn.Module):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def forward(self, pixel_values):
                return self.inner(pixel_values=pixel_values).logits

        return HFLogits(module)


def _python(text, checkpoint, trust) -> LoadedModel:
    import importlib.util

    import torch

    path_text, _, attr = text.rpartition(":")
    path = Path(path_text)
    if not path.is_file():
        raise ModelSpecError(f"Python file {path} not found", hint="use path/to/file.py:callable")
    spec = importlib.util.spec_from_file_location(f"vit_edge_user_{path.stem}", path)
    module_ns = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module_ns)
    except Exception as exc:
        raise ModelSpecError(f"{path} failed to import: {type(exc).__name__}: {exc}") from None
    factory = getattr(module_ns, attr, None)
    if factory is None:
        names = [n for n in dir(module_ns) if not n.startswith("_") and callable(getattr(module_ns, n))]
        close = difflib.get_close_matches(attr, names, n=3)
        raise ModelSpecError(f"{path} has no callable {attr!r}"
                             + (f"; did you mean {', '.join(close)}?" if close else ""))
    try:
        module = factory() if callable(factory) and not isinstance(factory, torch.nn.Module) else factory
    except Exception as exc:
        raise ModelSpecError(f"{path}:{attr}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(module, torch.nn.Module):
        raise ModelSpecError(f"{path}:{attr} returned {type(module).__name__}, not a torch.nn.Module")
    source, warnings = {"kind": "python", "name": f"{path.name}:{attr}", "file": str(path.resolve())}, []
    if checkpoint is not None:
        _load_checkpoint_into(module, checkpoint, trust, source)
    else:
        source["random_init"] = False  # the factory owns its weights; we cannot tell if they are trained
    cfg = getattr(module, "pretrained_cfg", None) or getattr(module, "default_cfg", None)
    if isinstance(cfg, dict) and "input_size" in cfg:
        pre = PreprocessConfig(input_size=tuple(cfg["input_size"][-2:]), mean=tuple(cfg.get("mean", IMAGENET_MEAN)),
                               std=tuple(cfg.get("std", IMAGENET_STD)),
                               interpolation=cfg.get("interpolation", "bicubic"),
                               crop_pct=float(cfg.get("crop_pct", 0.875)))
    else:
        pre = PreprocessConfig()
        _warn(warnings, f"{path.name}:{attr} declares no preprocessing: assuming 224x224, ImageNet mean/std, "
                        "bicubic, crop 0.875 (set --input-size/--mean/--std/--interpolation/--crop-pct, or give "
                        "the module a timm-style pretrained_cfg dict)")
    labels = getattr(module, "labels", None)
    return LoadedModel(module, pre, list(labels) if labels else None, source, warnings=warnings)


def _from_onnx(path: Path) -> LoadedModel:
    from vit_edge.onnx_meta import read_metadata

    meta = read_metadata(path)
    source = {"kind": "onnx", "name": path.name, **_sha(path)}
    if meta:
        pre = PreprocessConfig.from_dict(meta["preprocess"])
        return LoadedModel(None, pre, meta.get("labels"), {**meta.get("source", {}), **source},
                           task=meta.get("task", "classify"), onnx_path=path)
    log.warning("%s carries no vit-edge metadata: using default preprocessing unless overridden", path)
    return LoadedModel(None, PreprocessConfig(), None, source, onnx_path=path)


def _sha(path: Path) -> dict:
    from vit_edge.artifact import sha256_file

    return {"onnx_file": str(path.resolve()), "onnx_sha256": sha256_file(path)}


def _redraw_zero_weights(module, seed: int) -> None:
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


def _apply_task(loaded: LoadedModel, task: str) -> LoadedModel:
    loaded.task = task
    if task == "features":
        from vit_edge.features import features_module

        loaded.module = features_module(loaded)
        loaded.labels = None
    return loaded
