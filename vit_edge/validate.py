"""Parity of a converted model against its FP32 reference, on real data; a report whose truth is pass/fail.

``compare`` streams both runtimes over an image set (:mod:`vit_edge.streaming`), :func:`build_report` turns
the outputs into metrics, the gate (:mod:`vit_edge.gate`: the paired CI of the top-1 drop, McNemar, what
flipped) and the failures; ``validate_artifact`` adds the reference cache (:mod:`vit_edge.reference_cache`),
Ray (:mod:`vit_edge.ray_shards`) and the contact sheet. Renderings live in :mod:`vit_edge.report_render`.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vit_edge import gate, metrics, report_render, streaming
from vit_edge.errors import VitEdgeError
from vit_edge.metrics import Thresholds
from vit_edge.progress import phase

log = logging.getLogger("vit_edge")


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
    top1_drop: dict | None = None  # labelled data: value, ci95, mcnemar_p, ... (gate.top1_verdict)
    agreement_ci95: list | None = None
    flip_count: int = 0
    flips: list = field(default_factory=list)
    per_class: list | None = None
    agreement_by_margin: list | None = None
    notes: list = field(default_factory=list)
    timing: dict | None = None  # seconds; only when asked (reports of identical runs stay identical)
    inputs: dict | None = None  # validate_artifact: whether the decoded images came from the input cache
    contact_sheet: str | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def __bool__(self) -> bool:
        return self.passed

    def summary(self) -> dict:
        """The compact record (what convert keeps in the manifest as ``validation``)."""
        return {"passed": self.passed, "samples": self.samples, "top1_agreement": self.top1_agreement,
                "mean_cosine": self.mean_cosine, "min_cosine": self.min_cosine,
                "max_abs_error": self.max_abs_error, "max_rel_error": self.max_rel_error,
                "reference": self.reference, "candidate": self.candidate,
                "thresholds": self.thresholds.to_dict(), "failures": self.failures, "task": self.task, "data": self.data,
                "skipped_files": self.skipped, "top1_drop": self.top1_drop, "agreement_ci95": self.agreement_ci95,
                "flip_count": self.flip_count, "notes": self.notes}

    def to_dict(self) -> dict:
        """The whole report (``--json``): the summary, the flipped images and the tables."""
        out = {**self.summary(), "flips": self.flips, "per_class": self.per_class,
               "agreement_by_margin": self.agreement_by_margin}
        if self.timing is not None:
            out["timing"] = self.timing
        if self.inputs is not None:
            out["inputs"] = self.inputs
        if self.contact_sheet:
            out["contact_sheet"] = self.contact_sheet
        return out

    def to_markdown(self) -> str:
        return report_render.markdown(self)

    def to_text(self) -> str:
        """The terminal rendering: both sides in columns, the metrics, PASSED or FAILED."""
        return report_render.text(self)

    def to_junit(self) -> str:
        return report_render.junit(self)


def side_info(runtime) -> dict:
    info = runtime.info()
    return {"name": info["name"], "target": info["target"], "precision": info["precision"],
            **({"device": info["device"]} if "device" in info else {}),
            **({"inference_precision": info["inference_precision"]} if "inference_precision" in info else {})}


def build_report(cand: np.ndarray, ref: np.ndarray, labels, indices, *, images, candidate: dict, reference: dict,
                 thresholds: Thresholds, task: str, total: int, names=None) -> ParityReport:
    """Metrics, gate and flips from the two sides' outputs (rows in data order)."""
    cand, ref = np.asarray(cand).astype(np.float64), np.asarray(ref).astype(np.float64)
    if cand.shape != ref.shape:
        raise VitEdgeError("candidate and reference outputs differ in shape",
                           expected=f"reference {ref.shape}", got=f"candidate {cand.shape}")
    th = thresholds
    cos = metrics.row_cosines(cand, ref)
    agreement = metrics.agreement(cand, ref)
    ref_top1 = cand_top1 = None
    if labels is not None:
        y = np.asarray(labels)
        ref_top1, cand_top1 = float((ref.argmax(1) == y).mean()), float((cand.argmax(1) == y).mean())
    report = ParityReport(reference={**reference, "top1": ref_top1}, candidate={**candidate, "top1": cand_top1},
                          samples=len(cand), top1_agreement=agreement, mean_cosine=float(cos.mean()),
                          min_cosine=float(cos.min()), max_abs_error=metrics.max_abs_error(cand, ref),
                          max_rel_error=metrics.max_rel_error(cand, ref),
                          thresholds=th, task=task, data=images.source, skipped=total - len(cand))
    if not np.isfinite(cand).all():
        report.failures.append("the candidate produced NaN or Inf")
    if task == "features":
        if report.mean_cosine < th.min_cosine:
            report.failures.append(f"mean cosine {report.mean_cosine:.5f} < {th.min_cosine}")
        return report
    agreeing = int((cand.argmax(1) == ref.argmax(1)).sum())
    report.agreement_ci95 = gate.agreement_ci(agreeing, len(cand))
    if agreement < th.min_agreement:
        lo, hi = report.agreement_ci95
        report.failures.append(f"top-1 agreement {100 * agreement:.2f}% < {100 * th.min_agreement:.2f}% "
                               f"(95% CI {100 * lo:.2f}..{100 * hi:.2f}%)")
    if labels is not None:
        y = np.asarray(labels)
        record, failure, note = gate.top1_verdict(ref.argmax(1) == y, cand.argmax(1) == y, th.max_top1_drop)
        report.top1_drop = record
        if failure:
            report.failures.append(failure)
        if note:
            report.notes.append(note)
    flips = gate.flip_analysis(ref, cand, labels, indices, images.item_id, images.class_names or names)
    report.flips, report.flip_count = flips["flips"], flips["flip_count"]
    report.per_class, report.agreement_by_margin = flips["per_class"], flips["agreement_by_margin"]
    return report


def compare(candidate, reference, images, *, limit: int | None = None, batch_size: int = 32,
            thresholds: Thresholds | dict | None = None, progress: bool = True, seed: int = 0) -> ParityReport:
    """Run both runtimes on ``images`` (an ImageSet) with the candidate's preprocessing and compare.
    ``reference`` is a runtime, or a :class:`~vit_edge.reference_cache.CachedReference` (its outputs, for
    the same images). ``limit``: a seeded sample of that many, stratified by class when labelled (as
    validate's ``--limit``), never the first N of a folder."""
    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_options(thresholds)
    images = images.sample(limit, seed)
    got = _collect(candidate, reference, images, limit=limit, batch_size=batch_size, progress=progress)
    return _report(got, candidate, reference, images, th, limit)


def _collect(candidate, reference, images, *, limit, batch_size, progress, inputs=None) -> streaming.Collected:
    from vit_edge.progress import progress_bar
    from vit_edge.reference_cache import CachedReference

    cached = isinstance(reference, CachedReference)
    runners = {"candidate": candidate} if cached else {"candidate": candidate, "reference": reference}
    with progress_bar(desc="validate", total=streaming.considered(images, limit), enabled=progress) as bar:
        got = streaming.run_windows(images if inputs is None else inputs, candidate.preprocess, runners,
                                    batch_size=batch_size, limit=limit, bar=bar)
    streaming.require_images(got, images, streaming.considered(images, limit))
    if cached:
        if not np.array_equal(got.indices, reference.indices):
            raise StaleReference(f"{reference.path}: the cached reference covers other images")
        got.outputs["reference"] = reference.outputs
    return got


class StaleReference(VitEdgeError):
    """A cache entry that does not line up with the images decoded now (recomputed, never served)."""


def _report(got, candidate, reference, images, th, limit, ref_info=None) -> ParityReport:
    from vit_edge.reference_cache import CachedReference

    if ref_info is None:
        if isinstance(reference, CachedReference):
            ref_info = {**reference.info, "source": "cache", "cache_key": reference.key[:16]}
        else:
            ref_info = {**side_info(reference), "source": "computed"}
    ref_info.setdefault("runtime", ref_info["target"])
    return build_report(got.outputs["candidate"], got.outputs["reference"], got.labels, got.indices, images=images,
                        candidate=side_info(candidate), reference=ref_info, thresholds=th, task=candidate.task,
                        total=streaming.considered(images, limit), names=candidate.labels)


def reference_for(candidate_path: Path, manifest, reference=None, *, trust_source: bool = False,
                  code_named: bool = False, **options):
    """The reference runtime: what the user named (an artifact or a MODEL spec), else the source recorded
    in the candidate's manifest, rebuilt only as far as :func:`vit_edge.runtimes.reference_from_manifest`
    allows (``trust_source``: convert's own manifest; ``code_named``: the user named the recorded model)."""
    from vit_edge import runtimes

    if reference is not None:
        runtime = runtimes.load_any(reference, **options)
        try:
            check_reference_size(runtime, options.get("preprocess"), reference)
        except VitEdgeError:
            runtime.close()
            raise
        return runtime
    if manifest is None:
        raise VitEdgeError(f"{candidate_path}: no reference recorded (no manifest)", hint="pass --reference")
    folder = candidate_path if candidate_path.is_dir() else candidate_path.parent
    return runtimes.reference_from_manifest(manifest, directory=folder, trusted=trust_source, code_named=code_named,
                                            **options)


def check_reference_size(runtime, preprocess, name) -> None:
    """Both sides are fed the candidate's preprocessing, so a reference built for another input size (and not
    for any size) cannot be compared: refused in one line instead of failing inside its backend."""
    if preprocess is None:
        return
    loaded = getattr(runtime, "loaded", None)  # a MODEL spec run in torch: the size it was built at
    if loaded is not None:
        own, dynamic = loaded.preprocess.input_size, bool((loaded.source.get("build") or {}).get("dynamic_size"))
    else:
        recorded = getattr(runtime.manifest, "preprocess", None)
        own, dynamic = (recorded.input_size if recorded is not None else None), runtime.dynamic_size
    if own is None or dynamic or tuple(own) == tuple(preprocess.input_size):
        return
    raise VitEdgeError(f"--reference {name} runs at {own[0]}x{own[1]}, the candidate at "
                       f"{preprocess.input_size[0]}x{preprocess.input_size[1]}; both are fed the candidate's input",
                       hint="pass a reference of the candidate's input size (an artifact converted with that "
                            "--input-size), or drop --reference to rebuild the recorded source")


def validate_artifact(candidate, *, data, reference=None, limit=None, thresholds=None, write_to=None,
                      progress: bool = True, candidate_options: dict | None = None, cache: bool = False,
                      ray: str | None = None, flips_dir=None, batch_size: int = 32,
                      timing: bool = False, trust_source: bool = False, reference_options: dict | None = None,
                      seed: int = 0) -> ParityReport:
    """Load the candidate artifact and its reference, compare them on ``data``; write reports if asked.

    ``cache``: serve the reference's outputs from (and store them in) the reference cache, and the decoded
    images from (and into) the input cache (:mod:`vit_edge.input_cache`, local runs only). ``ray``: run
    inference as Ray tasks ("local" or a cluster address). ``flips_dir``: write a contact sheet of the worst
    flips there. ``timing``: record seconds in the report (off by default: identical runs, identical files).
    ``trust_source``: the manifest was written by this process from the user's command line (convert), so
    its recorded source is rebuilt as is; any other manifest's is rebuilt only if that runs no code it names.
    A ``reference`` naming the recorded model itself rebuilds it with the recorded recipe (checkpoint, size).
    ``reference_options``: how a MODEL spec ``reference`` is built (checkpoint, trust_checkpoint, task,
    labels_file), as ``convert`` takes them; it is built at the candidate's input size and channels unless they
    say otherwise. ``limit``: a sample of that many items, stratified by class when labelled, drawn with ``seed``
    (the report's notes say so)."""
    from vit_edge import input_cache, ray_shards, reference_cache, runtimes
    from vit_edge.data import load_images

    started = time.perf_counter()
    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_options(thresholds)
    reference_options = {k: v for k, v in (reference_options or {}).items() if v not in (None, False)}
    if reference_options and reference is None:
        from vit_edge.errors import flags_apply

        raise VitEdgeError(f"{flags_apply(reference_options)} to --reference MODEL, and no --reference was given",
                           hint="pass --reference MODEL (the recorded source is rebuilt as recorded)")
    cand_rt = runtimes.load(candidate, **(candidate_options or {}))
    if reference_options and not runtimes.is_artifact(reference):
        # Built like convert built the candidate: at its input size and channels (both sides get its input).
        reference_options = {"input_size": tuple(cand_rt.preprocess.input_size),
                             "channels": cand_rt.preprocess.channels, **reference_options}  # the caller's is kept
    code_named = reference is not None and not reference_options and \
        runtimes.names_recorded_source(reference, cand_rt.manifest)
    if code_named:  # the user named the recorded model: rebuild it as recorded (and cache it as such)
        reference = None
    trust = {"trust_source": trust_source, "code_named": code_named}
    make_reference = functools.partial(reference_for, Path(candidate), cand_rt.manifest, reference,
                                       preprocess=cand_rt.preprocess, **trust, **reference_options)
    inputs = None  # the input cache's entry, once open (closed in finally, whatever fails before)
    try:
        if reference is None and not trust_source and cand_rt.manifest is not None:
            from vit_edge.runtimes.trust import check_source

            check_source(cand_rt.manifest, code_named=code_named)  # refused before a cached answer could hide it
        images = load_images(data, cand_rt.labels).sample(limit, seed)
        phase(f"validating on {streaming.considered(images, limit)} images of {images.source}")
        key = parts = cached = None
        if cache:
            identity = reference_cache.reference_identity(cand_rt.manifest, reference, reference_options)
            data_id = reference_cache.data_identity(images)
            key, parts = reference_cache.make_key(identity, cand_rt.preprocess, data_id, limit=limit,
                                                  batch_size=batch_size)
            cached = reference_cache.load(key)
            inputs = None if ray is not None else input_cache.open_inputs(
                images, cand_rt.preprocess, data_id, limit=limit, count=streaming.considered(images, limit))
        if ray is not None:  # workers may run elsewhere: paths made absolute
            named = str(Path(reference).resolve()) if reference is not None and Path(str(reference)).exists() \
                else reference
            ray_reference = functools.partial(reference_for, Path(candidate).resolve(), cand_rt.manifest, named,
                                              preprocess=cand_rt.preprocess, **trust,
                                              **{k: str(Path(v).resolve()) if k in ("checkpoint", "labels_file")
                                                 else v for k, v in reference_options.items()})
            got, ref_info = ray_shards.validate_collect(ray, candidate, candidate_options, ray_reference, cached,
                                                        images, cand_rt, batch_size, limit)
        else:
            got, ref_info = _collect_here(cand_rt, make_reference, cached, images, batch_size, limit, progress,
                                          inputs)
        report = _report(got, cand_rt, None, images, th, limit, ref_info=ref_info)
        report.inputs = inputs.info() if inputs is not None else {
            "source": "decoded" if images.preprocessed is None else "array"}
        report.notes += data_notes(images, cand_rt.manifest)
        if cache and ref_info["source"] == "computed":  # a miss (or a stale entry, replaced)
            stored = reference_cache.store(key, parts, got.outputs["reference"], got.indices,
                                           {k: v for k, v in ref_info.items() if k != "source"})
            if stored:
                report.reference["cache_key"] = key[:16]
        if timing:
            report.timing = {"seconds": round(time.perf_counter() - started, 3), "executor": "ray" if ray else "local",
                             **{f"{k}_seconds": round(v, 3) for k, v in got.seconds.items()}}
        if flips_dir is not None:
            from vit_edge.contact_sheet import write_contact_sheet

            report.contact_sheet = str(write_contact_sheet(report, images, cand_rt.preprocess, flips_dir))
    finally:
        cand_rt.close()
        if inputs is not None:
            inputs.close()
    if write_to is not None:
        write_reports(report, json_path=Path(write_to) / "report.json", markdown_path=Path(write_to) / "report.md")
    return report


def data_notes(images, manifest) -> list:
    """What the report must say about its data: how a --limit sample was drawn, and which images the
    candidate's INT8 calibration (or recipe scoring) already used, found by content (the manifest's hashes)."""
    from vit_edge.calibration import DIGESTS_KEY

    notes = [f"limited to {images.selection}"] if images.selection else []
    quantization = getattr(manifest, "quantization", None)
    recorded = set(((quantization.calibration or {}) if quantization is not None else {}).get(DIGESTS_KEY) or [])
    if recorded:
        shared = sum(1 for i in range(len(images)) if images.digest(i) in recorded)
        if shared:
            notes.append(f"WARNING: {shared} of the {len(images)} validation images are images INT8 calibration "
                         "used (identical content): parity on them is optimistic; validate on images calibration "
                         "never saw")
    return notes


def _collect_here(cand_rt, make_reference, cached, images, batch_size, limit, progress, inputs=None):
    """One process: the candidate and (unless cached) the reference, batch by batch (the images decoded, or
    served by ``inputs``: :class:`vit_edge.input_cache.Inputs`)."""
    collect = functools.partial(_collect, limit=limit, batch_size=batch_size, progress=progress, inputs=inputs)
    if cached is not None:
        try:
            got = collect(cand_rt, cached, images)
            return got, {**cached.info, "source": "cache", "cache_key": cached.key[:16]}
        except StaleReference as exc:
            log.warning("%s; recomputing it", exc.message)
    ref_rt = make_reference()
    try:
        got = collect(cand_rt, ref_rt, images)
        return got, {**side_info(ref_rt), "source": "computed"}
    finally:
        ref_rt.close()


def write_reports(report: ParityReport, *, json_path=None, markdown_path=None, junit_path=None) -> None:
    """Write the renderings asked for. All are rendered before the first is written, so a rendering that
    fails leaves none behind; paths that are not valid UTF-8 (a folder named in Latin-1: Python holds its bytes
    as surrogates) are written with those bytes escaped (``\\xff``), so the report names the file and every
    report is valid UTF-8."""
    import json

    from vit_edge.artifact import write_text

    texts = {}
    if json_path:
        texts[json_path] = json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n"  # as write_json writes
    if markdown_path:
        texts[markdown_path] = report.to_markdown()
    if junit_path:
        texts[junit_path] = report.to_junit()
    for path, text in texts.items():
        write_text(path, _utf8(text))


def _utf8(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of file names) replaced by their byte escapes."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no file name decodes to: escaped as itself
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
