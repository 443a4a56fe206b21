"""Parity of a converted model against its FP32 reference, on real data; a report whose truth is pass/fail."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vit_edge.errors import DataError, VitEdgeError

log = logging.getLogger("vit_edge")

DEFAULT_THRESHOLDS = {"max_top1_drop": 0.5, "min_agreement": 0.98, "min_cosine": 0.99}


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
    thresholds: dict
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
                "thresholds": self.thresholds, "failures": self.failures, "task": self.task, "data": self.data,
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
        th = self.thresholds
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

    def to_junit(self) -> str:
        from xml.sax.saxutils import escape, quoteattr

        name = quoteattr(f"parity {self.candidate['name']} vs {self.reference['name']}")
        body = ""
        if self.failures:
            body = f"<failure message={quoteattr('; '.join(self.failures))}>{escape(self.to_markdown())}</failure>"
        return ('<?xml version="1.0" encoding="utf-8"?>\n'
                f'<testsuite name="vit-edge validate" tests="1" failures="{int(not self.passed)}">'
                f'<testcase classname="vit_edge.validate" name={name}>{body}</testcase></testsuite>\n')


def _precision(side: dict) -> str:
    ran = side.get("inference_precision")
    return f"{side['target']} / {side['precision']}" + (f" (ran {ran} on {side.get('device', '?')})" if ran else "")


def _side(runtime, top1) -> dict:
    info = runtime.info()
    return {"name": info["name"], "target": info["target"], "precision": info["precision"],
            "top1": top1, **({"device": info["device"]} if "device" in info else {}),
            **({"inference_precision": info["inference_precision"]} if "inference_precision" in info else {})}


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (outputs of one image each)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def compare(candidate, reference, images, *, limit: int | None = None, batch_size: int = 32,
            thresholds: dict | None = None, progress: bool = True) -> ParityReport:
    """Run both runtimes on ``images`` (an ImageSet) with the candidate's preprocessing and compare."""
    from vit_edge.progress import progress_bar

    th = {**DEFAULT_THRESHOLDS, **{k: v for k, v in (thresholds or {}).items() if v is not None}}
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
    cos = row_cosines(cand, ref)
    agreement = float((cand.argmax(1) == ref.argmax(1)).mean())
    ref_top1 = cand_top1 = None
    if labels:
        y = np.concatenate(labels)
        ref_top1, cand_top1 = float((ref.argmax(1) == y).mean()), float((cand.argmax(1) == y).mean())
    task = candidate.task
    report = ParityReport(reference=_side(reference, ref_top1), candidate=_side(candidate, cand_top1),
                          samples=len(cand), top1_agreement=agreement, mean_cosine=float(cos.mean()),
                          min_cosine=float(cos.min()), max_abs_error=float(np.abs(cand - ref).max()),
                          max_rel_error=float(np.abs(cand - ref).max() / max(1.0, np.abs(ref).max())),
                          thresholds=th, task=task, data=images.source, skipped=len(images.skipped))
    if not np.isfinite(cand).all():
        report.failures.append("the candidate produced NaN or Inf")
    if task == "features":
        if report.mean_cosine < th["min_cosine"]:
            report.failures.append(f"mean cosine {report.mean_cosine:.5f} < {th['min_cosine']}")
    else:
        if agreement < th["min_agreement"]:
            report.failures.append(f"top-1 agreement {100 * agreement:.2f}% < {100 * th['min_agreement']:.2f}%")
        if ref_top1 is not None and 100 * (ref_top1 - cand_top1) > th["max_top1_drop"]:
            report.failures.append(f"top-1 dropped {100 * (ref_top1 - cand_top1):.2f} pts "
                                   f"({100 * ref_top1:.2f}% -> {100 * cand_top1:.2f}%) > {th['max_top1_drop']} pts")
    return report


def reference_for(candidate_path: Path, manifest: dict, reference=None, **options):
    """The reference runtime: what the user named, else the torch source recorded in the manifest."""
    from vit_edge import runtimes

    if reference is not None:
        return runtimes.load(reference, **options)
    source = manifest.get("source") or {}
    spec = source.get("spec")
    if source.get("kind") == "onnx":
        onnx_file = source.get("onnx_file")
        if onnx_file and Path(onnx_file).exists():
            return runtimes.load(onnx_file, **options)
        raise VitEdgeError("the candidate was converted from an ONNX file that is gone",
                           hint="pass --reference")
    if spec is None:
        raise VitEdgeError(f"{candidate_path}: no reference recorded in its manifest", hint="pass --reference")
    from vit_edge.sources import build_options, load_model

    checkpoint = source.get("checkpoint") if source.get("kind") not in ("demo",) else None
    if checkpoint and not Path(checkpoint).exists():
        raise VitEdgeError(f"the reference checkpoint {checkpoint} recorded in the manifest is gone",
                           hint="pass --reference MODEL with --checkpoint available")
    loaded = load_model(spec, checkpoint=checkpoint, task=manifest.get("task", "classify"),
                        seed=manifest.get("seed", 0), **build_options(source))
    return runtimes.load(loaded, **options)


def validate_artifact(candidate, *, data, reference=None, limit=None, thresholds=None, write_to=None,
                      progress: bool = True, candidate_options: dict | None = None) -> ParityReport:
    """Load the candidate artifact and its reference, compare them on ``data``; write reports if asked."""
    from vit_edge import runtimes
    from vit_edge.data import load_images

    cand_rt = runtimes.load(candidate, **(candidate_options or {}))
    ref_rt = reference_for(Path(candidate), cand_rt.manifest, reference, preprocess=cand_rt.preprocess)
    images = load_images(data, cand_rt.labels)
    report = compare(cand_rt, ref_rt, images, limit=limit, thresholds=thresholds, progress=progress)
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
