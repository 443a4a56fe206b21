"""Parity of a converted model against its FP32 reference, on real data; a report whose truth is pass/fail."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vit_edge import metrics
from vit_edge.errors import DataError, VitEdgeError
from vit_edge.metrics import Thresholds

log = logging.getLogger("vit_edge")

DEFAULT_THRESHOLDS = Thresholds()


@dataclass
class ParityReport:
    """Metrics of candidate vs reference. ``bool(report)`` is whether every threshold held."""

    reference: dict
    candidate: dict
    samples: int
    top1_agreement: float
    mean_cosine: float
    min_cosine: float
    max_abs_error: float
    thresholds: Thresholds
    max_rel_error: float = float("nan")  # max abs error / max(1, max |reference output|)
    task: str = "classify"
    data: str = ""
    skipped: int = 0
    failures: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> dict:
        return {"passed": self.passed, "samples": self.samples, "top1_agreement": self.top1_agreement,
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "reference": self.reference, "candidate": self.candidate,
                "thresholds": self.thresholds.to_dict(), "failures": self.failures, "task": self.task, "data": self.data,
                "skipped_files": self.skipped}

    def to_markdown(self) -> str:
        ref, cand = self.reference, self.candidate
        pct = lambda v: "-" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        lines = [f"# Parity report: {'PASSED' if self.passed else 'FAILED'}", "",
                 f"Data: `{self.data}`, {self.samples} samples" + (f" ({self.skipped} files skipped)"
                                                                   if self.skipped else ""), "",
                 "| | reference | candidate |", "|---|---|---|",
                 f"| model | {ref['name']} | {cand['name']} |",
                 f"| backend / precision | {_precision(ref)} | {_precision(cand)} |",
                 f"| top-1 | {pct(ref.get('top1'))} | {pct(cand.get('top1'))} |", "",
                 "| metric | value | threshold |", "|---|---|---|"]
        th = self.thresholds.to_dict()
        if self.task == "classify":
            lines.append(f"| top-1 agreement | {pct(self.top1_agreement)} | >= {pct(th['min_agreement'])} |")
            if ref.get("top1") is not None:
                drop = 100 * (ref["top1"] - cand["top1"])
                lines.append(f"| top-1 drop | {drop:.2f} pts | <= {th['max_top1_drop']} pts |")
        lines += [f"| mean cosine | {self.mean_cosine:.6f} | " +
                  (f">= {th['min_cosine']} |" if self.task == "features" else "- |"),
                  f"| max abs error | {self.max_abs_error:.4g} | - |"]
        if self.failures:
            lines += ["", "Failures:"] + [f"- {f}" for f in self.failures]
        return "\n".join(lines) + "\n"

    def to_text(self) -> str:
        """The terminal rendering: both sides in columns, the metrics, PASSED or FAILED."""
        pct = lambda v: "   -   " if v is None else f"{100 * v:6.2f}%"  # noqa: E731
        ref, cand = self.reference, self.candidate
        lines = [f"{'':18}{'reference':>24}  {'candidate':>24}",
                 f"{'model':18}{ref['name'][-24:]:>24}  {cand['name'][-24:]:>24}",
                 f"{'backend':18}{ref['target'] + '/' + ref['precision']:>24}  {_backend(cand):>24}",
                 f"{'top-1':18}{pct(ref['top1']):>24}  {pct(cand['top1']):>24}",
                 f"samples {self.samples}  agreement {100 * self.top1_agreement:.2f}%  "
                 f"mean cosine {self.mean_cosine:.6f}  max abs error {self.max_abs_error:.3g}"
                 + (f"  skipped files {self.skipped}" if self.skipped else ""),
                 "PASSED" if self.passed else "FAILED: " + "; ".join(self.failures)]
        return "\n".join(lines)

    def to_junit(self) -> str:
        from xml.sax.saxutils import escape, quoteattr

        name = quoteattr(f"parity {self.candidate['name']} vs {self.reference['name']}")
        body = ""
        if self.failures:
            body = f"<failure message={quoteattr('; '.join(self.failures))}>{escape(self.to_markdown())}</failure>"
        return ('<?xml version="1.0" encoding="utf-8"?>\n'
                f'<testsuite name="vit-edge validate" tests="1" failures="{int(not self.passed)}">'
                f'<testcase classname="vit_edge.validate" name={name}>{body}</testcase></testsuite>\n')


def _backend(side: dict) -> str:
    """target/precision, plus the precision the backend really ran when it reports one (OpenVINO)."""
    ran = side.get("inference_precision")
    return f"{side['target']}/{side['precision']}" + (f" ({ran})" if ran else "")


def _precision(side: dict) -> str:
    ran = side.get("inference_precision")
    return f"{side['target']} / {side['precision']}" + (f" (ran {ran} on {side.get('device', '?')})" if ran else "")


def _side(runtime, top1) -> dict:
    info = runtime.info()
    return {"name": info["name"], "target": info["target"], "precision": info["precision"],
            "top1": top1, **({"device": info["device"]} if "device" in info else {}),
            **({"inference_precision": info["inference_precision"]} if "inference_precision" in info else {})}


def compare(candidate, reference, images, *, limit: int | None = None, batch_size: int = 32,
            thresholds: Thresholds | dict | None = None, progress: bool = True) -> ParityReport:
    """Run both runtimes on ``images`` (an ImageSet) with the candidate's preprocessing and compare."""
    from vit_edge.progress import progress_bar

    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_options(thresholds)
    total = len(images) if limit is None else min(limit, len(images))
    ref_out, cand_out, labels = [], [], []
    with progress_bar(desc="validate", total=total, enabled=progress) as bar:
        for batch, y in images.batches(candidate.preprocess, batch_size=batch_size, limit=limit):
            cand_out.append(candidate.run(batch))
            ref_out.append(reference.run(batch))
            if y is not None:
                labels.append(y)
            bar.update(len(batch))
    if not cand_out:
        raise DataError(f"{images.source}: no decodable images ({len(images.skipped)} files skipped)",
                        hint="point --data at a folder of images")
    cand, ref = np.concatenate(cand_out).astype(np.float64), np.concatenate(ref_out).astype(np.float64)
    if cand.shape != ref.shape:
        raise VitEdgeError("candidate and reference outputs differ in shape",
                           expected=f"reference {ref.shape}", got=f"candidate {cand.shape}")
    cos = metrics.row_cosines(cand, ref)
    agreement = metrics.agreement(cand, ref)
    ref_top1 = cand_top1 = None
    if labels:
        y = np.concatenate(labels)
        ref_top1, cand_top1 = float((ref.argmax(1) == y).mean()), float((cand.argmax(1) == y).mean())
    task = candidate.task
    report = ParityReport(reference=_side(reference, ref_top1), candidate=_side(candidate, cand_top1),
                          samples=len(cand), top1_agreement=agreement, mean_cosine=float(cos.mean()),
                          min_cosine=float(cos.min()), max_abs_error=metrics.max_abs_error(cand, ref),
                          max_rel_error=metrics.max_rel_error(cand, ref),
                          thresholds=th, task=task, data=images.source, skipped=len(images.skipped))
    if not np.isfinite(cand).all():
        report.failures.append("the candidate produced NaN or Inf")
    if task == "features":
        if report.mean_cosine < th.min_cosine:
            report.failures.append(f"mean cosine {report.mean_cosine:.5f} < {th.min_cosine}")
    else:
        if agreement < th.min_agreement:
            report.failures.append(f"top-1 agreement {100 * agreement:.2f}% < {100 * th.min_agreement:.2f}%")
        if ref_top1 is not None and 100 * (ref_top1 - cand_top1) > th.max_top1_drop:
            report.failures.append(f"top-1 dropped {100 * (ref_top1 - cand_top1):.2f} pts "
                                   f"({100 * ref_top1:.2f}% -> {100 * cand_top1:.2f}%) > {th.max_top1_drop} pts")
    return report


def reference_for(candidate_path: Path, manifest, reference=None, **options):
    """The reference runtime: what the user named (an artifact or a MODEL spec), else the source recorded
    in the candidate's manifest."""
    from vit_edge import runtimes

    if reference is not None:
        return runtimes.load_any(reference, **options)
    if manifest is None:
        raise VitEdgeError(f"{candidate_path}: no reference recorded (no manifest)", hint="pass --reference")
    return runtimes.reference_from_manifest(manifest, **options)


def validate_artifact(candidate, *, data, reference=None, limit=None, thresholds=None, write_to=None,
                      progress: bool = True, candidate_options: dict | None = None) -> ParityReport:
    """Load the candidate artifact and its reference, compare them on ``data``; write reports if asked."""
    from vit_edge import runtimes
    from vit_edge.data import load_images

    cand_rt = runtimes.load(candidate, **(candidate_options or {}))
    ref_rt = reference_for(Path(candidate), cand_rt.manifest, reference, preprocess=cand_rt.preprocess)
    try:
        images = load_images(data, cand_rt.labels)
        report = compare(cand_rt, ref_rt, images, limit=limit, thresholds=thresholds, progress=progress)
    finally:
        cand_rt.close()
        ref_rt.close()
    if write_to is not None:
        write_reports(report, json_path=Path(write_to) / "report.json", markdown_path=Path(write_to) / "report.md")
    return report


def write_reports(report: ParityReport, *, json_path=None, markdown_path=None, junit_path=None) -> None:
    from vit_edge.artifact import write_json, write_text

    if json_path:
        write_json(json_path, report.summary())
    if markdown_path:
        write_text(markdown_path, report.to_markdown())
    if junit_path:
        write_text(junit_path, report.to_junit())
