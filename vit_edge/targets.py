"""The target registry: each target's name -> the module that builds it and the module that runs it.

The one place a target is declared: ``vit_edge.convert`` finds its builder here, ``vit_edge.runtimes`` its
runtime, and the CLI its ``--target`` choice, precisions and flags. It holds module names only, so reading
it imports nothing heavy, and ``runtimes`` can use it without importing ``convert``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TargetEntry:
    name: str
    convert: str  # module with ``TARGET`` (a ``vit_edge.convert.target.Target``)
    runtime: str  # module with ``from_artifact(path, manifest, preprocess, **options) -> Runtime``
    suffixes: tuple = ()  # artifact file suffixes this runtime loads when given a bare file


TARGETS: dict[str, TargetEntry] = {}


def register(name: str, *, convert: str, runtime: str, suffixes: tuple = ()) -> TargetEntry:
    """Add (or replace) a target: a new target is one module on each side plus this one call."""
    entry = TargetEntry(name, convert, runtime, tuple(s.lower() for s in suffixes))
    TARGETS[name] = entry
    return entry


def names() -> list:
    return list(TARGETS)


def for_suffix(suffix: str) -> str | None:
    """The target whose runtime loads a bare file with this suffix."""
    return next((e.name for e in TARGETS.values() if suffix.lower() in e.suffixes), None)


register("onnx", convert="vit_edge.convert.onnx", runtime="vit_edge.runtimes.onnx", suffixes=(".onnx",))
register("openvino", convert="vit_edge.convert.openvino", runtime="vit_edge.runtimes.openvino", suffixes=(".xml",))
register("tensorrt", convert="vit_edge.convert.tensorrt", runtime="vit_edge.runtimes.tensorrt",
         suffixes=(".engine", ".plan"))
