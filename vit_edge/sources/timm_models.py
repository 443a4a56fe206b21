"""``timm:NAME``: a timm model, built at the requested input size; ``--checkpoint`` loads its weights
(random initialisation without one)."""

from __future__ import annotations

import logging
import sys

from vit_edge.errors import ModelSpecError, first_line
from vit_edge.preprocess import PreprocessConfig
from vit_edge.sources.channels import declared, module_channels
from vit_edge.sources.common import LoadedModel, LoadRequest, load_checkpoint_into, no_checkpoint
from vit_edge.sources.introspect import FIXED_SIZE_HINT, check_runs_at, size_text
from vit_edge.sources.spec import timm_suggestion

log = logging.getLogger("vit_edge")


def load(name: str, request: LoadRequest) -> LoadedModel:
    from vit_edge.errors import require

    timm = require("timm", "export")
    if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
        raise ModelSpecError(f"timm has no model {name!r}{timm_suggestion(name)}",
                             hint="list them with: python -c 'import timm; print(timm.list_models(\"*vit*\"))'")
    module = _create(timm, name, request)
    source, warnings = {"kind": "timm", "name": name}, []
    if request.checkpoint is not None:
        load_checkpoint_into(module, request.checkpoint, request.trust_checkpoint, source,
                             adapt=_checkpoint_filter(module), warnings=warnings)
    else:
        no_checkpoint(source, warnings, f"timm:{name}")
    data_cfg = timm.data.resolve_data_config({}, model=module)
    # The pretrained config keeps (3, H, W) and RGB statistics when the model is built with in_chans=1.
    chans = module_channels(module) or int(data_cfg["input_size"][0])
    pre = PreprocessConfig(
        input_size=tuple(data_cfg["input_size"][1:]),
        **declared(chans, data_cfg["mean"], data_cfg["std"], name=f"timm:{name}", warnings=warnings),
        interpolation=data_cfg.get("interpolation", "bicubic") if data_cfg.get("interpolation") in
        ("bilinear", "bicubic", "nearest") else "bicubic",
        crop_pct=float(data_cfg.get("crop_pct", 0.875)),
        resize_mode="squash" if data_cfg.get("crop_mode") == "squash" else "shorter",
    )
    labels = _labels(module)
    if labels is not None and len(labels) != getattr(module, "num_classes", len(labels)):
        labels = None  # ImageNet's names for a head rebuilt with --num-classes
    return LoadedModel(module, pre, labels, source, warnings=warnings)


def _create(timm, name: str, request: LoadRequest):
    """``timm.create_model`` at the requested input size (``img_size``) and with ``dynamic_img_size``.

    Families whose constructor takes no ``img_size`` (convolutional stems such as EfficientViT-B) are
    built at their default and must then prove they run at the requested size."""
    kwargs = dict(request.model_kwargs)
    size = request.input_size
    if size is not None:
        kwargs["img_size"] = tuple(size)
    if request.dynamic_size:
        kwargs["dynamic_img_size"] = True
    if request.channels is not None:
        kwargs["in_chans"] = int(request.channels)
    if request.num_classes is not None:
        kwargs["num_classes"] = int(request.num_classes)
    while True:
        try:
            module = timm.create_model(name, pretrained=False, **kwargs)
            break
        except TypeError as exc:
            dropped = next((k for k in ("dynamic_img_size", "img_size") if k in kwargs and repr(k) in str(exc)),
                           None)
            if dropped is None:
                raise ModelSpecError(f"timm:{name} rejected its arguments ({exc})") from None
            # The family has no such switch: its graph is either size-agnostic already or it is not; the
            # size check below and the export's multi-size parity check tell which.
            log.info("timm:%s takes no %s; building it without", name, dropped)
            kwargs.pop(dropped)
        except (AssertionError, ValueError, RuntimeError) as exc:
            raise ModelSpecError(f"timm:{name} cannot be built at input size {size_text(size)}: "
                                 f"{first_line(exc)}", hint=FIXED_SIZE_HINT) from None
    if size is not None:
        check_runs_at(module, size, problem=f"timm:{name} cannot run", channels=module_channels(module) or 3)
    return module


def _checkpoint_filter(module):
    """timm's own per-family checkpoint filter (resamples position embeddings to the built size)."""
    filter_fn = getattr(sys.modules.get(type(module).__module__), "checkpoint_filter_fn", None)
    return (lambda state: filter_fn(state, module)) if filter_fn else None


def _labels(module):
    try:
        from timm.data import ImageNetInfo, infer_imagenet_subset

        subset = infer_imagenet_subset(module)
        if subset:
            info = ImageNetInfo(subset)
            return [info.index_to_description(i) for i in range(info.num_classes())]
    except Exception as exc:  # labels are a convenience; never fail a conversion over them
        log.debug("no timm labels: %s", exc)
    return None
