"""The preprocessing a command runs an artifact with. A vit-edge artifact records it (its manifest, or the
metadata vit-edge writes into an ONNX), and nothing may override that: it is what the artifact was converted and
validated with. An artifact another tool wrote (an IR from ``ov.convert_model`` + ``nncf.quantize``, an ONNX
from ``torch.onnx.export``) records nothing: it is fed as the model it came from declares
(``--preprocess-from MODEL``) and as the preprocessing flags (``--input-size``, ``--mean``, ...) say, the flags
winning. What its input shape fixes (channels, a static size) is read from the graph; what decides its numbers
but no graph says (the normalisation, a dynamic size) must be given, or the command refuses in one line naming
it -- a guess would make every number it prints wrong without a sign.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

from vit_edge.errors import InputError

# What decides an artifact's numbers: predict and validate need all three, bench only the size (its speed
# does not depend on the statistics).
DECISIVE = ("input_size", "mean", "std")
FLAGS = {"input_size": "--input-size", "mean": "--mean", "std": "--std"}


def for_artifact(path, overrides: dict | None = None, preprocess_from=None, need=None):
    """The :class:`PreprocessConfig` to load the artifact at ``path`` with, or None to let it use what it
    records (then nothing may be given: a recorded preprocessing is what it was converted and validated
    with). ``overrides``: the preprocessing flags' values (None = not given); ``preprocess_from``: a MODEL spec whose declared preprocessing is the base; ``need``: what an
    artifact recording none must be given (default :data:`DECISIVE`)."""
    from vit_edge.preprocess import PreprocessConfig, default_statistics, fit_channels

    from vit_edge.artifact import MANIFEST

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = Path(path)
    if path.is_dir() and not (path / MANIFEST).is_file() or not (path.is_dir() or path.is_file()):
        return None  # not an artifact: loading it says why
    own = recorded(path)
    if own is not None:
        if overrides or preprocess_from is not None:
            from vit_edge.errors import flags_apply

            names = [*overrides, *(["preprocess_from"] if preprocess_from is not None else [])]
            raise InputError(f"{flags_apply(names)} to a MODEL spec or an artifact that records no preprocessing, "
                             f"not to {path}", hint="drop them: it records the preprocessing it was converted with")
        return None
    base = preprocess_of(preprocess_from) if preprocess_from is not None else None
    if base is None:
        channels, size = graph_input(path)
        known = {"input_size"} if size else set()
        missing = [k for k in need or DECISIVE if k not in overrides and k not in known]
        if missing:
            flags = "/".join(FLAGS[k] for k in missing)
            raise InputError(f"{path} records no preprocessing (no vit-edge manifest) and its "
                             f"{', '.join(k.replace('_', ' ') for k in missing)} cannot be read from the graph",
                             hint=f"pass --preprocess-from MODEL (the timm/HF model it was converted from) or {flags}")
        base = PreprocessConfig(input_size=size or (224, 224), **default_statistics(channels or 3))
    channels = overrides.get("channels") or base.channels
    fitted = {}
    for what in ("mean", "std"):
        values = fit_channels(overrides.get(what) or getattr(base, what), channels)
        if values is None:
            raise InputError(f"--{what} has {len(overrides.get(what) or getattr(base, what))} values for "
                             f"{channels} input channels", hint=f"give {channels} values, or one for all")
        fitted[what] = values
    rest = {k: tuple(v) if k == "input_size" else v for k, v in overrides.items() if k not in ("mean", "std")}
    return base.replace(**{**rest, "channels": channels, **fitted})


def recorded(path: Path):
    """The preprocessing the artifact records, None when it records none."""
    from vit_edge.artifact import MANIFEST, read_manifest

    folder = path if path.is_dir() else path.parent
    if (folder / MANIFEST).is_file():
        return read_manifest(folder).preprocess
    if path.suffix.lower() == ".onnx":
        from vit_edge.artifact import Manifest
        from vit_edge.onnx_meta import read_metadata

        meta = read_metadata(path)
        if meta and meta.get("preprocess"):
            return Manifest.from_dict({**meta, "target": "onnx", "artifact": path.name}).preprocess
    return None


def graph_input(path: Path) -> tuple:
    """(channels, (height, width)) that the artifact's first input fixes; None for each dimension it leaves
    dynamic (or when the graph cannot say)."""
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        from vit_edge.onnx_meta import input_dims

        dims = input_dims(path)
    elif suffix == ".xml":
        from vit_edge.errors import require

        ov = require("openvino", "openvino")
        try:
            shape = ov.Core().read_model(str(path)).inputs[0].get_partial_shape()
        except Exception:  # unreadable: the runtime that loads it next says why, in one line
            return None, None
        dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else []
    else:
        return None, None
    if len(dims) != 4:
        return None, None
    size = tuple(dims[2:]) if None not in dims[2:] else None
    return dims[1], size


def preprocess_of(spec):
    """The preprocessing MODEL ``spec`` declares (a timm name's pretrained config, an HF directory's
    preprocessor_config.json, ...)."""
    return _declared(str(spec))[0]


def labels_of(spec):
    """The label names MODEL ``spec`` declares (None when it has none): for an artifact that records none."""
    return _declared(str(spec))[1]


@functools.lru_cache(maxsize=4)
def _declared(spec: str):
    """(preprocessing, labels) that MODEL ``spec`` declares. Built without a checkpoint, so the random-weights
    warning would be noise here and is not shown; cached, since a command asks for both."""
    from vit_edge.sources import load_model

    with _quiet_loader():
        loaded = load_model(spec)
    return loaded.preprocess, loaded.labels


@contextlib.contextmanager
def _quiet_loader():
    log = logging.getLogger("vit_edge")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)
