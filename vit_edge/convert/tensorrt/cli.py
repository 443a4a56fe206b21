"""``vit-edge build-engine DIR``: build the TensorRT engine of a ``--target tensorrt`` directory on this machine.

Also the TensorRT flags of ``vit-edge convert`` (``CONVERT_OPTIONS``, read by the CLI from the target).
Registered by ``vit_edge.cli`` (it imports this module's ``command``). Engines are tied to the GPU and
TensorRT version, so on a Jetson this runs on the Jetson itself.
"""

from __future__ import annotations

import click

DEFAULT_BATCH = (1, 8, 32)


def parse_batch_profile(ctx, param, value):
    if value is None:
        return None
    try:
        parts = [int(x) for x in value.split(":")]
    except ValueError:
        raise click.BadParameter(f"use MIN:OPT:MAX, e.g. 1:8:32 (got {value!r})") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise click.BadParameter(f"use MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (got {value!r})")
    return tuple(parts)


CONVERT_OPTIONS = (
    click.option("--batch", callback=parse_batch_profile, help="TensorRT profile MIN:OPT:MAX (default 1:8:32)."),
    click.option("--workspace", type=click.FloatRange(0.01), default=None, help="TensorRT workspace limit in GB."),
    click.option("--dla-core", type=click.IntRange(0), default=None, help="TensorRT DLA core (Jetson)."),
    click.option("--timing-cache", type=click.Path(), default=None, help="TensorRT timing cache file."),
    click.option("--require-engine", is_flag=True, help="TensorRT: fail (exit 2) if no engine can be built here."),
)


@click.command("build-engine")
@click.argument("directory", type=click.Path())
@click.option("--batch", callback=parse_batch_profile, help="Profile MIN:OPT:MAX (default: as converted).")
@click.option("--workspace", type=click.FloatRange(0.01), default=None, help="Workspace limit in GB.")
@click.option("--dla-core", type=click.IntRange(0), default=None, help="DLA core (Jetson), GPU fallback on.")
@click.option("--timing-cache", type=click.Path(), default=None, help="Timing cache file (read and updated).")
def command(directory, batch, workspace, dla_core, timing_cache):
    """Build (or rebuild) DIRECTORY/model.engine from its TensorRT-ready model.onnx."""
    from vit_edge.convert.tensorrt import build_engine_in_dir

    info = build_engine_in_dir(directory, batch=batch, workspace_gb=workspace, dla_core=dla_core,
                               timing_cache=timing_cache)
    click.echo(f"wrote {directory}/{info['file']} (TensorRT {info['tensorrt_version']}, {info['gpu']}, "
               f"sm {info['compute_capability']}, batch {info['profile']['min'][0]}..{info['profile']['max'][0]})")
