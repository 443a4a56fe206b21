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

:func:`parse_spec` names the kind; :data:`FAMILIES` maps each kind to its loader, one module per family,
all called ``load(value, request)``. A new family is one module plus one line there. Nothing here imports
torch, timm, transformers or onnx until a model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from vit_edge.errors import ModelSpecError
from vit_edge.sources import channels, demo, hf, onnx_file, python_file, timm_models, torchvision_models
from vit_edge.sources.common import LoadedModel, LoadRequest
from vit_edge.sources.introspect import check_runs_at, patch_size, probe_sizes
from vit_edge.sources.labels import read_labels
from vit_edge.sources.repairs import open_layer_scales, redraw_zero_weights
from vit_edge.sources.spec import absolute_spec, parse_spec

__all__ = ["FAMILIES", "TASKS", "Family", "LoadRequest", "LoadedModel", "build_options", "load_model",
           "parse_spec", "patch_size", "probe_sizes", "read_labels"]

TASKS = ("classify", "features")


@dataclass(frozen=True)
class Family:
    """A model family's loader and what ``load_model`` must know about it before and after loading."""

    load: Callable[[str, LoadRequest], LoadedModel]
    # It builds a torch module: torch is required and seeded first, and the module is prepared for export
    # (eval, random-init repairs, task, --dynamic-size check). False: an existing graph (ONNX).
    torch_module: bool = True
    takes_checkpoint: bool = True  # False: its weights are built in, so --checkpoint is refused
    takes_model_kwargs: bool = False  # model keyword arguments reach its constructor
    built_at_size: bool = False  # --input-size (and --channels) change the built model, so manifests record them
    takes_num_classes: bool = False  # --num-classes rebuilds its classifier head


FAMILIES = {
    "demo": Family(demo.load, takes_checkpoint=False),
    "timm": Family(timm_models.load, takes_model_kwargs=True, built_at_size=True, takes_num_classes=True),
    "hf": Family(hf.load, built_at_size=True, takes_num_classes=True),
    "torchvision": Family(torchvision_models.load, takes_num_classes=True),
    "python": Family(python_file.load),
    "onnx": Family(onnx_file.load, torch_module=False, takes_checkpoint=False),
}


def load_model(spec: str | None = None, *, checkpoint=None, task: str | None = None, labels_file=None,
               trust_checkpoint: bool = False, seed: int = 0, dynamic_size: bool = False,
               model_kwargs: dict | None = None, num_classes: int | None = None,
               **preprocess_overrides) -> LoadedModel:
    """Load MODEL ``spec``; keyword overrides (input_size, mean, std, channels, interpolation, crop_pct) win
    over what the model declares (mean/std: one value per input channel, or one for all; ``channels`` must be
    one the model runs with, and builds a timm model with that ``in_chans``). ``task`` None means the model's own: classify, or what an ONNX file records.

    ``input_size`` is more than preprocessing: a timm model is built at that size (its position
    embedding resampled) and a Hugging Face model interpolates its position encoding, so the graph really
    runs at that size. ``dynamic_size`` builds the model to accept any height/width where its family can
    (timm ``dynamic_img_size``). ``model_kwargs`` go to ``timm.create_model`` (e.g. depth, embed_dim).
    ``num_classes`` rebuilds a timm, torchvision or Hugging Face classifier head with that many classes before
    the checkpoint is loaded into it (a model fine-tuned on another class count)."""
    if task is not None and task not in TASKS:
        raise ModelSpecError(f"unknown task {task!r}", hint=f"use one of {', '.join(TASKS)}")
    kind, value = parse_spec(spec)
    family = FAMILIES[kind]
    if checkpoint is not None and not family.takes_checkpoint:
        raise ModelSpecError(f"--checkpoint does not apply to a {kind} model (its weights are built in)",
                             hint="drop --checkpoint, or name the architecture, e.g. timm:NAME")
    if model_kwargs and not family.takes_model_kwargs:
        takers = ", ".join(k for k, f in FAMILIES.items() if f.takes_model_kwargs)
        raise ModelSpecError(f"model keyword arguments only apply to {takers} models, not {kind}")
    if num_classes is not None:
        takers = ", ".join(k for k, f in FAMILIES.items() if f.takes_num_classes)
        if not family.takes_num_classes:
            raise ModelSpecError(f"--num-classes does not apply to a {kind} model (its head is what it is)",
                                 hint=f"drop --num-classes; it rebuilds the head of {takers} models")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ModelSpecError("--num-classes must be a positive integer", got=num_classes)
    request = LoadRequest(checkpoint=checkpoint, trust_checkpoint=trust_checkpoint, task=task,
                          input_size=preprocess_overrides.get("input_size"), dynamic_size=dynamic_size,
                          model_kwargs=dict(model_kwargs or {}), channels=preprocess_overrides.get("channels"),
                          num_classes=num_classes,
                          preprocess_given=frozenset(k for k, v in preprocess_overrides.items() if v is not None))
    if family.torch_module:
        loaded = _load_module(family, value, request, seed)
    else:
        loaded = family.load(value, request)
    if labels_file is not None:
        loaded.labels = read_labels(labels_file)
    overrides = {k: v for k, v in preprocess_overrides.items() if v is not None}
    own_size = loaded.preprocess.input_size
    loaded.preprocess = channels.resolve(loaded, overrides, str(spec or "demo"))
    if family.torch_module and not family.built_at_size and request.input_size is not None:
        # Only preprocessing changes here (the family is not rebuilt at a size): a model that cannot run there
        # must fail now in one line, not after an export with pages of exporter output.
        check_runs_at(loaded.module, tuple(request.input_size), problem=f"{spec or 'demo'} cannot run",
                      hint=f"{kind} models are not rebuilt at another size; drop --input-size (it runs at "
                           f"{own_size[0]}x{own_size[1]})", channels=loaded.preprocess.channels)
    if family.torch_module and request.dynamic_size:
        size = tuple(request.input_size or loaded.preprocess.input_size)
        for other in probe_sizes(size, patch_size(loaded.module)):
            check_runs_at(loaded.module, other, problem=f"{spec} does not support --dynamic-size: "
                          "it cannot run", hint="export it at a fixed size (without --dynamic-size)",
                          channels=loaded.preprocess.channels)
    loaded.source["spec"] = absolute_spec(kind, value, spec)
    return loaded


def _load_module(family: Family, value: str, request: LoadRequest, seed: int) -> LoadedModel:
    """Load a torch-module family and make the module ready for export."""
    from vit_edge.errors import require

    require("torch", "export")
    import torch

    # Random initialisation is seeded so the same command gives the same artifact.
    torch.manual_seed(seed)
    loaded = family.load(value, request)
    loaded.module.eval()
    if loaded.source.get("random_init"):
        redraw_zero_weights(loaded.module, seed)
        open_layer_scales(loaded.module)
    loaded = _apply_task(loaded, request.task or loaded.task)
    _record_build(loaded.source, request, family)
    return loaded


def _apply_task(loaded: LoadedModel, task: str) -> LoadedModel:
    loaded.task = task
    if task == "features":
        from vit_edge.features import features_module

        loaded.module = features_module(loaded)
        loaded.labels = None
    return loaded


def _record_build(source: dict, request: LoadRequest, family: Family) -> None:
    """Keep how the model was built in its source record, so validation rebuilds the same reference."""
    recorded = {}
    if request.input_size is not None and family.built_at_size:
        recorded["input_size"] = list(request.input_size)
    if request.channels is not None and family.built_at_size:
        recorded["channels"] = int(request.channels)
    if request.num_classes is not None:
        recorded["num_classes"] = int(request.num_classes)
    if request.dynamic_size:
        recorded["dynamic_size"] = True
    if request.model_kwargs:
        recorded["model_kwargs"] = request.model_kwargs
    if recorded:
        source["build"] = recorded


def build_options(source: dict) -> dict:
    """The ``load_model`` keyword arguments that rebuild the model a manifest's ``source`` describes."""
    build = source.get("build") or {}
    options = {"dynamic_size": bool(build.get("dynamic_size")), "model_kwargs": build.get("model_kwargs")}
    if build.get("input_size"):
        options["input_size"] = tuple(build["input_size"])
    if build.get("channels"):
        options["channels"] = int(build["channels"])
    if build.get("num_classes"):
        options["num_classes"] = int(build["num_classes"])
    return options
