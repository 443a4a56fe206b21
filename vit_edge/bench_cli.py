"""``vit-edge bench``: parse, call :func:`vit_edge.bench.benchmark`, print the table, write the reports."""

from __future__ import annotations

import click

from vit_edge import cli_options
from vit_edge.batch_list import batch_sizes


def parse_batches(ctx, param, value):
    batches = batch_sizes(value, "comma-separated positive integers, e.g. 1,8")
    return list(dict.fromkeys(batches))


@click.command("bench")
@click.argument("artifacts", nargs=-1, required=True)
@click.option("--batch", "batches", default="1,8", show_default=True, callback=parse_batches,
              help="Batch sizes, comma-separated (as convert's --batch; 1:8 is read as 1,8).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Inference threads (default: the backend's).")
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Measured seconds per artifact and batch size (split over the rounds).")
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True,
              help="Alternating rounds: each artifact runs once per round, in turn.")
@click.option("--device", default=None, help="OpenVINO device (CPU, GPU, NPU, AUTO).")
@click.option("--hint", type=click.Choice(["latency", "throughput"]), default=None,
              help="OpenVINO performance hint (default: the artifact's).")
@click.option("--json", "json_path", type=click.Path(), help="Write the results as JSON.")
@click.option("--markdown", "markdown_path", type=click.Path(), help="Write the results as a Markdown table.")
@click.option("--plot", "plot_path", type=click.Path(), help="Write a PNG chart.")
@cli_options.apply(*cli_options.source_options("the MODEL spec among ARTIFACTS", task=False),
                   *cli_options.PREPROCESS, cli_options.PREPROCESS_FROM)
def command(artifacts, batches, threads, duration, rounds, device, hint, json_path, markdown_path, plot_path,
            **source):
    """Latency (p50/p90/p99), throughput and peak memory of ARTIFACTS (or MODEL specs, run in torch).

    The first one is the reference for the speedup column. Artifacts run in turns, each in its own
    process, so noise from other programs hits all of them alike.

    \b
    Example:
      vit-edge bench out/demo-onnx-fp32 out/demo-openvino-int8 demo --batch 1,8 --duration 4
      vit-edge bench out/demo-openvino-int8 --batch 1,8,32 --json bench.json --plot bench.png
    """
    from vit_edge.bench import benchmark
    from vit_edge.bench_report import check_outputs, write_reports

    check_outputs(json_path, markdown_path, plot_path)
    report = benchmark(artifacts, batches=batches, threads=threads, duration=duration, rounds=rounds,
                       device=device, options={"hint": hint} if hint else None, source_options=source)
    click.echo(report.table())
    for warning in report.warnings:  # on stderr: the table on stdout stays parseable
        click.echo(f"warning: {warning}", err=True)
    write_reports(report, json_path=json_path, markdown_path=markdown_path, plot_path=plot_path)
    for path in (json_path, markdown_path, plot_path):
        if path:
            click.echo(f"wrote {path}")
