"""How many channels a model's input has, and preprocessing that fits them.

A model says it in several places: timm's ``in_chans``, Hugging Face's ``num_channels``, a ``pretrained_cfg``
``input_size`` of ``(C, H, W)``, its first convolution's weight, an ONNX file's input shape. Configs go stale
(a timm model built with ``in_chans=1`` keeps the ``(3, 224, 224)`` of its pretrained config), so what the
module really runs with wins over what a config declares, and ``--channels`` must agree with the module.
Mean and std follow: one value per channel, one value for all, or an RGB statistic averaged for grayscale.
"""

from __future__ import annotations

from vit_edge.errors import ModelSpecError
from vit_edge.preprocess import fit_channels
from vit_edge.sources.common import warn


def declared(channels: int, mean, std, *, name: str, warnings: list) -> dict:
    """``channels``/``mean``/``std`` for a :class:`PreprocessConfig` from what a model's config declares,
    the statistics fitted to the channel count (a warning when RGB values are averaged for grayscale)."""
    fitted = {}
    for what, values in (("mean", mean), ("std", std)):
        value = fit_channels(values, channels)
        if value is None:
            raise ModelSpecError(f"{name} declares {len(values)} {what} values for {channels} input channels",
                                 hint=f"pass --mean and --std with {channels} values (or one for all)")
        fitted[what] = value
    if channels == 1 and (len(mean) == 3 or len(std) == 3):
        warn(warnings, f"{name} takes 1 input channel but declares RGB mean/std: using their averages (mean "
                       f"{fitted['mean'][0]}, std {fitted['std'][0]}); set --mean/--std to your data's")
    return {"channels": int(channels), **fitted}


def module_channels(module) -> int | None:
    """The input channels a torch module declares: timm's ``in_chans``, else its first Conv2d's
    ``in_channels`` (the patch embedding of every ViT family); None when it has neither."""
    import torch

    chans = getattr(module, "in_chans", None)
    if isinstance(chans, int) and not isinstance(chans, bool) and chans > 0:
        return chans
    for sub in module.modules():
        if isinstance(sub, torch.nn.Conv2d):
            return int(sub.in_channels)
    return None


def runs_with(module, channels: int, size) -> bool:
    """Whether one forward of a zero batch of ``channels`` x ``size`` runs."""
    import torch

    try:
        with torch.no_grad():
            module(torch.zeros(1, channels, *size))
    except Exception:  # models raise anything on a wrong input; only whether it ran matters here
        return False
    return True


def resolve(loaded, overrides: dict, name: str):
    """``loaded.preprocess`` with ``overrides`` (input_size, mean, std, channels, ...) applied and checked
    against the channels the model really takes; a one-line ModelSpecError when they cannot fit."""
    pre = loaded.preprocess
    size = tuple(overrides.get("input_size") or pre.input_size)
    wanted = overrides.get("channels")
    if loaded.module is not None:
        channels = _torch_channels(loaded.module, pre.channels, wanted, size, name)
    elif loaded.onnx_path is not None:
        channels = _onnx_channels(loaded.onnx_path, pre.channels if wanted is None else wanted, size, wanted)
    else:
        channels = wanted or pre.channels
    fitted = {}
    for what in ("mean", "std"):
        given = overrides.get(what)
        values = fit_channels(given if given is not None else getattr(pre, what), channels)
        if values is None and given is not None:
            raise ModelSpecError(f"--{what} has {len(given)} values but {name} takes {channels} input channels",
                                 hint=f"give {channels} comma-separated values, or one for every channel")
        fitted[what] = values
    if fitted["mean"] is None or fitted["std"] is None:
        raise ModelSpecError(f"{name} takes {channels} input channels but its preprocessing has "
                             f"{len(pre.mean)} mean/std values", hint=f"pass --mean and --std with {channels} values")
    if channels == 1 and pre.channels == 3 and (overrides.get("mean") is None or overrides.get("std") is None):
        warn(loaded.warnings, f"{name} takes 1 input channel: images are read as grayscale, with the average of "
                              f"its RGB mean/std (mean {fitted['mean'][0]}, std {fitted['std'][0]}) unless "
                              "--mean/--std are given")
    rest = {k: v for k, v in overrides.items() if k not in ("mean", "std", "channels")}
    return pre.replace(**rest, channels=channels, **fitted)


def _torch_channels(module, declared_channels: int, wanted, size, name: str) -> int:
    found = module_channels(module)
    if wanted is not None:
        if found is not None and found != wanted and not runs_with(module, wanted, size):
            raise ModelSpecError(f"{name} does not run with --channels {wanted}: its first convolution takes "
                                 f"{found} input channels", hint=f"drop --channels (or pass --channels {found})")
        return int(wanted)
    if found is None or found == declared_channels:
        return declared_channels
    # A config and the weights disagree: the count the module really runs with wins (stale configs are common).
    return found if runs_with(module, found, size) or not runs_with(module, declared_channels, size) \
        else declared_channels


def _onnx_channels(path, channels: int, size, wanted) -> int:
    """Check the preprocessing against the ONNX input shape before anything is converted."""
    from vit_edge.onnx_meta import input_dims

    dims = input_dims(path)
    if len(dims) != 4:
        return channels
    graph_c, graph_hw = dims[1], dims[2:]
    if graph_c is not None and graph_c != channels:
        asked = f"--channels {wanted}" if wanted is not None else f"{channels} (its recorded preprocessing)"
        raise ModelSpecError(f"{path} takes {graph_c}-channel input, not {asked}",
                             hint=f"pass --channels {graph_c}" if wanted is not None else
                             f"pass --channels {graph_c} with --mean/--std for it, or re-export the model")
    if None not in graph_hw and tuple(graph_hw) != tuple(size):
        raise ModelSpecError(f"{path} takes {graph_hw[0]}x{graph_hw[1]} input but the preprocessing gives "
                             f"{size[0]}x{size[1]}", hint=f"pass --input-size {graph_hw[0]},{graph_hw[1]}")
    return channels
