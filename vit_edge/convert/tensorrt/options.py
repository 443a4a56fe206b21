"""The TensorRT flags of ``vit-edge convert`` (the CLI reads them from the target) and their parsers."""

from __future__ import annotations

import click

from vit_edge.batch_list import batch_sizes

DEFAULT_BATCH = (1, 8, 32)
# JetPack 6 (the Jetson Orin release most boards run) ships TensorRT 10.3, the oldest parser we check for.
DEFAULT_TRT_VERSION = "10.3"


PROFILE = "MIN,OPT,MAX with 1 <= MIN <= OPT <= MAX, e.g. 1,8,32, or one batch size N"


def parse_batch_profile(ctx, param, value):
    """``--batch 1,8,32`` (bench's list syntax; the older ``1:8:32`` still reads) or ``--batch N`` (N,N,N)."""
    if value is None:
        return None
    parts = batch_sizes(value, PROFILE)
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not parts[0] <= parts[1] <= parts[2]:
        raise click.BadParameter(f"use {PROFILE} (got {value!r})")
    return tuple(parts)


def version_tuple(text) -> tuple:
    """``"10.3"`` / ``"10.3.0.26"`` / ``"11"`` -> ``(10, 3)``; ValueError for anything else or < 10.0."""
    parts = str(text).strip().split(".")
    if not all(p.isdigit() for p in parts[:2]):
        raise ValueError(f"not a TensorRT version: {text!r}")
    major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    if major < 10:
        raise ValueError(f"TensorRT {text} is older than 10.0 (no strongly typed networks)")
    return major, minor


def parse_trt_version(ctx, param, value):
    if value is None:
        return None
    try:
        major, minor = version_tuple(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; use MAJOR.MINOR, e.g. 10.3 (JetPack 6) or 10.15") from None
    return f"{major}.{minor}"


CONVERT_OPTIONS = (
    click.option("--batch", callback=parse_batch_profile,
                 help="TensorRT batch profile MIN,OPT,MAX, or N for a fixed batch (default 1,8,32; 1:8:32 also reads)."),
    click.option("--workspace", type=click.FloatRange(0.01), default=None, help="TensorRT workspace limit in GB."),
    click.option("--dla-core", type=click.IntRange(0), default=None,
                 help="TensorRT DLA core (Jetson AGX/NX Orin; fp16/int8 and a fixed --batch N only)."),
    click.option("--timing-cache", type=click.Path(), default=None, help="TensorRT timing cache file."),
    click.option("--require-engine", is_flag=True, help="TensorRT: fail (exit 2) if no engine can be built here."),
    click.option("--trt-version", callback=parse_trt_version, default=None,
                 help=f"Oldest TensorRT the engine will be built with; the ONNX is checked against its parser "
                      f"(default {DEFAULT_TRT_VERSION}, JetPack 6)."),
)
