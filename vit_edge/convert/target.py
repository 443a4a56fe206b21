"""The target protocol: what every ``convert/<target>`` module declares, and how convert finds it.

A target is a class with a name, the precisions it builds, a frozen ``Options`` dataclass for its own
flags, the click options that set them (their parameter names are the dataclass's fields), ``check`` (fail
fast on bad flags, before the slow part) and ``build`` (write the artifact into ``job.workdir`` and say
what was written). The shared stages (export + parity, FP16, INT8, Q/DQ) live in ``convert/stages``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import ClassVar

from vit_edge import targets
from vit_edge.errors import VitEdgeError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class NoOptions:
    """For targets without flags of their own."""


@dataclass
class Built:
    """What a target's ``build`` wrote: the file its runtime loads, other runtimes' files, its own record."""

    artifact: str
    record: object = None  # an artifact.records.Record stored under the target's name, or None
    artifacts: dict | None = None  # e.g. a TensorRT folder's ONNX, runnable in ONNX Runtime


class Target:
    """Base class of every target (subclass it and set the class attributes)."""

    name: ClassVar[str] = "?"
    precisions: ClassVar[tuple] = PRECISIONS
    Options: ClassVar[type] = NoOptions
    cli_options: ClassVar[tuple] = ()  # click.option(...) decorators for its own flags
    summary: ClassVar[str] = ""  # one line for --help

    def check(self, precision: str, options) -> None:
        """Refuse flags that cannot work (``options`` is a ``job.ConvertOptions``); default: the INT8 checks."""
        from vit_edge.convert.stages.quantize import check_int8_options

        check_int8_options(precision, options)

    def build(self, job) -> Built:  # pragma: no cover - abstract
        raise NotImplementedError


def get(name: str) -> Target:
    """The registered target ``name``; a one-line error listing the targets otherwise."""
    entry = targets.TARGETS.get(name)
    if entry is None:
        raise VitEdgeError(f"unknown target {name!r}", hint=f"use one of {', '.join(targets.names())}")
    target = importlib.import_module(entry.convert).TARGET
    return target
