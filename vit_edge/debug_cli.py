"""``vit-edge debug``: parse, call :func:`vit_edge.debug.debug_artifact`, print the report, write the files."""

from __future__ import annotations

import click

from vit_edge import cli_options

GATE = ("min_agreement", "min_cosine")
DEFAULT_LIMIT = 64  # vit_edge.debug.DEFAULT_LIMIT (not imported here: the CLI loads no backend to start)


@click.command("debug")
@click.argument("candidate", type=click.Path())
@click.option("--reference", help="The FP32 model: a MODEL spec or an FP32 ONNX (default: the source recorded in "
                                  "the manifest, re-exported to ONNX).")
@click.option("--data", required=True, help="Image folder, .npy/.npz, or digits:test.")
@click.option("--limit", type=click.IntRange(1), default=DEFAULT_LIMIT, show_default=True,
              help="Use at most N images.")
@cli_options.apply(*cli_options.THRESHOLDS[1:])  # agreement and cosine: debug needs no labels
@click.option("--json", "json_path", type=click.Path(), help="Write the report as JSON (schema: docs/DEBUG.md).")
@click.option("--markdown", "markdown_path", type=click.Path(), help="Write the report as Markdown.")
@click.option("--plot", "plot_path", type=click.Path(), help="Write a PNG of SNR against depth.")
def command(candidate, reference, data, limit, json_path, markdown_path, plot_path, **thresholds):
    """Find where CANDIDATE (an INT8/FP16 artifact) drifts from its FP32 reference, layer by layer, which
    quantized operations are to blame, and the convert command that fixes it.

    \b
    Example:
      vit-edge debug out/demo-openvino-int8 --data digits:test --markdown debug.md --plot snr.png
    """
    from vit_edge.bench_report import check_outputs
    from vit_edge.debug import debug_artifact

    check_outputs(json_path, markdown_path, plot_path)
    report = debug_artifact(candidate, data=data, reference=reference, limit=limit,
                            thresholds=cli_options.pop(thresholds, GATE))
    click.echo(report.to_text())
    for path in report.write(json_path=json_path, markdown_path=markdown_path, plot_path=plot_path):
        click.echo(f"wrote {path}")
