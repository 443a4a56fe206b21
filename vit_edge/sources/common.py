"""What every family loader shares: the request it gets, the model it returns, and the checkpoint and
warning helpers. Kept apart from ``__init__`` so the loaders import it without a cycle."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge.preprocess import PreprocessConfig

log = logging.getLogger("vit_edge")


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


@dataclass(frozen=True)
class LoadRequest:
    """What the caller asked of a family loader besides the spec's value. A loader uses what applies to
    its family; ``load_model`` has already refused what the family's registry entry says it cannot take."""

    checkpoint: object = None  # a path, or None: built-in weights or random initialisation
    trust_checkpoint: bool = False
    task: str | None = None  # None: the model's own
    input_size: tuple | None = None  # build the model at this size where its family can
    dynamic_size: bool = False  # build it to accept any height/width where its family can
    model_kwargs: dict = field(default_factory=dict)  # for timm.create_model
    channels: int | None = None  # --channels: build the model with that many inputs where its family can
    num_classes: int | None = None  # --num-classes: rebuild the classifier head with that many classes
    # The preprocessing overrides given (input_size, mean, ...): a loader that has to assume preprocessing
    # says so only for what the caller did not set (see note_assumed).
    preprocess_given: frozenset = frozenset()


def warn(loaded_warnings: list, message: str) -> None:
    log.warning(message)
    loaded_warnings.append(message)


# Without these three a model's numbers are guesswork; interpolation and crop only nudge them.
DECISIVE_PREPROCESSING = ("input_size", "mean", "std")


def note_assumed(what: str, assumed: dict, given, warnings: list | None, advice: str = "") -> None:
    """Say what preprocessing was assumed for ``what``: ``assumed`` maps each override name (input_size, mean,
    std, interpolation, crop_pct) to how the assumption reads ("224x224"). What the caller ``given`` is left
    out; a warning (and a note in ``warnings``) when size, mean or std is still assumed, else INFO only."""
    left = {name: text for name, text in assumed.items() if name not in given}
    if not left:
        return
    flags = "/".join("--" + name.replace("_", "-") for name in left)
    message = f"{what}: assuming {', '.join(left.values())} (set {flags}{advice})"
    if not any(name in left for name in DECISIVE_PREPROCESSING):
        log.info(message)
    elif warnings is None:
        log.warning(message)
    else:
        warn(warnings, message)


def load_checkpoint_into(module, checkpoint, trust: bool, source: dict, adapt=None, warnings=None) -> None:
    """Read ``checkpoint`` into ``module``, wrapper prefixes (DDP, Lightning, torch.compile) stripped first
    and said so in ``warnings`` (printed as a note)."""
    from vit_edge.checkpoints import (WRAPPER_PREFIXES, apply_state_dict, checkpoint_info, read_state_dict,
                                      strip_wrapper_prefixes)

    state, stripped = strip_wrapper_prefixes(read_state_dict(checkpoint, trust=trust), module.state_dict())
    if stripped:
        note = (f"checkpoint {Path(checkpoint).name}: stripped the prefix {''.join(stripped)!r} that "
                f"{' and '.join(WRAPPER_PREFIXES[p] for p in stripped)} put on every key")
        log.info(note)
        if warnings is not None:
            warnings.append(note)
    if adapt is not None:
        state = adapt(state)
    apply_state_dict(module, state, checkpoint)
    source.update(checkpoint_info(checkpoint))
    source["random_init"] = False


def no_checkpoint(source: dict, warnings: list, what: str) -> None:
    source["random_init"] = True
    warn(warnings, f"no --checkpoint: {what} is RANDOMLY INITIALISED; its predictions are meaningless "
                   "(fine for trying the pipeline, not for deployment)")
