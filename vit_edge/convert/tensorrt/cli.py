"""``vit-edge build-engine DIR``: build the TensorRT engine of a ``--target tensorrt`` directory on this machine.

Registered by ``vit_edge.cli`` (it imports this module's ``command``). Engines are tied to the GPU and
TensorRT version, so on a Jetson this runs on the Jetson itself.
"""

from __future__ import annotations

import click

from vit_edge.convert.tensorrt.options import parse_batch_profile


@click.command("build-engine")
@click.argument("directory", type=click.Path())
@click.option("--batch", callback=parse_batch_profile,
              help="Batch profile MIN,OPT,MAX, or N for a fixed batch (default: as converted; 1:8:32 also reads).")
@click.option("--workspace", type=click.FloatRange(0.01), default=None, help="Workspace limit in GB.")
@click.option("--dla-core", type=click.IntRange(0), default=None,
              help="DLA core (Jetson; fp16/int8 and a fixed --batch N), GPU fallback on.")
@click.option("--timing-cache", type=click.Path(), default=None, help="Timing cache file (read and updated).")
def command(directory, batch, workspace, dla_core, timing_cache):
    """Build (or rebuild) DIRECTORY/model.engine from its TensorRT-ready model.onnx.

    \b
    Example:
      vit-edge build-engine out/vit-trt
      vit-edge build-engine out/vit-trt --batch 1,4,16 --timing-cache /var/cache/vit.cache
    """
    from vit_edge.convert.tensorrt import build_engine_in_dir

    info = build_engine_in_dir(directory, batch=batch, workspace_gb=workspace, dla_core=dla_core,
                               timing_cache=timing_cache)
    dla = ""
    if info.get("dla_core") is not None:
        dla = f", {(info.get('layers') or {}).get('dla', 0)} layer(s) on DLA core {info['dla_core']}"
    board = info.get("board") or info["gpu"]
    click.echo(f"wrote {directory}/{info['file']} (TensorRT {info['tensorrt_version']}, {board}, "
               f"sm {info['compute_capability']}, batch {info['profile']['min'][0]}..{info['profile']['max'][0]}{dla})")
