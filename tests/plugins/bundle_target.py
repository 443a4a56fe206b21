"""Convert side of the test-only ``bundle`` target: the FP32 ONNX under another name, with its own flag
and its own manifest record. Uses only vit-edge's public building blocks."""

from __future__ import annotations

from dataclasses import dataclass

import click

from vit_edge.artifact.records import Record
from vit_edge.convert.target import Built, Target


@dataclass(frozen=True)
class BundleOptions:
    bundle_note: str | None = None


@dataclass(kw_only=True)
class BundleRecord(Record):
    note: str | None = None
    exported_with: str | None = None


class BundleTarget(Target):
    name = "bundle"
    precisions = ("fp32",)
    Options = BundleOptions
    cli_options = (click.option("--bundle-note", default=None, help="A note stored in the bundle record."),)
    summary = "test-only: the FP32 ONNX as model.bundle"

    def build(self, job) -> Built:
        from vit_edge.convert.stages.export import export_fp32

        record = export_fp32(job, job.workdir / "model.bundle")
        return Built(artifact="model.bundle",
                     record=BundleRecord(note=job.target_options.bundle_note, exported_with=record.exporter))


TARGET = BundleTarget()
