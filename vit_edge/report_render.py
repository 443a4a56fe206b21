"""How a :class:`~vit_edge.validate.ParityReport` reads: terminal text, Markdown, JUnit XML."""

from __future__ import annotations

MARKDOWN_FLIPS = 50  # rows of the flipped-images table
MARKDOWN_CLASSES = 30  # beyond this many classes, only those with flips (most first)


def _pct(v, width: int = 0) -> str:
    return "-".center(width) if v is None else f"{100 * v:{width}.2f}%"


def _backend(side: dict) -> str:
    """target/precision, plus the precision the backend really ran when it reports one (OpenVINO)."""
    ran = side.get("inference_precision")
    return f"{side['target']}/{side['precision']}" + (f" ({ran})" if ran else "")


def _ran_note(side: dict) -> str | None:
    """Once, what the parenthesised precision after an OpenVINO backend means (users took "int8 (bf16)" for a
    contradiction)."""
    ran = side.get("inference_precision")
    if not ran or ran == "f32":
        return None
    return (f"({ran}): OpenVINO ran the layers INT8 leaves in floating point in {ran}, the fastest float this "
            "device has (runtimes.load(..., inference_precision='f32') runs them in f32)"
            if side["precision"] == "int8" else
            f"({ran}): the precision OpenVINO ran this {side['precision'].upper()} model in on this device")


def _precision(side: dict) -> str:
    ran = side.get("inference_precision")
    return f"{side['target']} / {side['precision']}" + (f" (ran {ran} on {side.get('device', '?')})" if ran else "")


def _drop(d: dict) -> str:
    lo, hi = d["ci95"]
    return (f"{100 * d['value']:.2f} pts (95% CI {100 * lo:.2f}..{100 * hi:.2f}; McNemar p={d['mcnemar_p']:.3g}; "
            f"{d['reference_only']} lost / {d['candidate_only']} gained)")


def _agreement(report) -> str:
    text = _pct(report.top1_agreement)
    if report.agreement_ci95:
        lo, hi = report.agreement_ci95
        text += f" (95% CI {100 * lo:.2f}..{100 * hi:.2f}%)"
    return text


def _reference_source(ref: dict) -> str:
    where = {"cache": "served from the cache", "computed": "computed"}.get(ref.get("source"), "computed")
    return f"{ref.get('runtime', ref['target'])}, {where}"


def _fit(name: str, width: int = 24) -> str:
    """A name cut to its column: the end is kept (a checkpoint tag or folder suffix tells artifacts apart), and
    a leading '...' says something was cut. The full names are in report.json."""
    return name if len(name) <= width else "..." + name[-(width - 3):]


def text(report) -> str:
    """Both sides in columns, the metrics, the gate's evidence, PASSED or FAILED."""
    ref, cand = report.reference, report.candidate
    pct = lambda v: "   -   " if v is None else f"{100 * v:6.2f}%"  # noqa: E731
    lines = [f"{'':18}{'reference':>24}  {'candidate':>24}",
             f"{'model':18}{_fit(ref['name']):>24}  {_fit(cand['name']):>24}",
             f"{'backend':18}{ref['target'] + '/' + ref['precision']:>24}  {_backend(cand):>24}",
             f"{'top-1':18}{pct(ref['top1']):>24}  {pct(cand['top1']):>24}",
             f"samples {report.samples}  agreement {100 * report.top1_agreement:.2f}%  "
             f"mean cosine {report.mean_cosine:.6f}  max abs error {report.max_abs_error:.3g}"
             + (f"  skipped files {report.skipped}" if report.skipped else "")]
    if report.agreement_ci95:
        lo, hi = report.agreement_ci95
        lines.append(f"agreement 95% CI {100 * lo:.2f}..{100 * hi:.2f}%  flips {report.flip_count}")
    if report.top1_drop:
        lines.append(f"top-1 drop {_drop(report.top1_drop)}: {report.top1_drop['decision']}")
    lines.append(f"reference: {_reference_source(ref)}")
    ran = _ran_note(cand)
    if ran:
        lines.append(ran)
    if report.contact_sheet:
        lines.append(f"flips contact sheet: {report.contact_sheet}")
    lines += [f"note: {n}" for n in report.notes]
    lines.append("PASSED" if report.passed else "FAILED: " + "; ".join(report.failures))
    return "\n".join(lines)


def markdown(report) -> str:
    ref, cand = report.reference, report.candidate
    lines = [f"# Parity report: {'PASSED' if report.passed else 'FAILED'}", "",
             f"Data: `{report.data}`, {report.samples} samples" + (f" ({report.skipped} files skipped)"
                                                                   if report.skipped else ""), "",
             "| | reference | candidate |", "|---|---|---|",
             f"| model | {ref['name']} | {cand['name']} |",
             f"| backend / precision | {_precision(ref)} | {_precision(cand)} |",
             f"| top-1 | {_pct(ref.get('top1'))} | {_pct(cand.get('top1'))} |", "",
             f"Reference outputs: {_reference_source(ref)}.", "",
             "| metric | value | threshold |", "|---|---|---|"]
    th = report.thresholds.to_dict()
    if report.task == "classify":
        lines.append(f"| top-1 agreement | {_agreement(report)} | >= {_pct(th['min_agreement'])} |")
        if report.top1_drop:
            lines.append(f"| top-1 drop | {_drop(report.top1_drop)} | <= {th['max_top1_drop']} pts "
                         f"({report.top1_drop['decision']}) |")
    lines += [f"| mean cosine | {report.mean_cosine:.6f} | " +
              (f">= {th['min_cosine']} |" if report.task == "features" else "- |"),
              f"| max abs error | {report.max_abs_error:.4g} | - |"]
    if report.failures:
        lines += ["", "Failures:"] + [f"- {f}" for f in report.failures]
    if report.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in report.notes]
    if report.task == "classify":
        lines += _flips_table(report) + _class_table(report) + _margin_table(report)
    return "\n".join(lines) + "\n"


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def _flips_table(report) -> list:
    lines = ["", f"## Flipped images ({report.flip_count} of {report.samples})", ""]
    if not report.flip_count:
        return lines + ["None: both sides agree on every image."]
    if report.contact_sheet:
        lines += [f"Contact sheet of the worst: `{report.contact_sheet}`", ""]
    labelled = "label" in report.flips[0]
    lines += ["Worst first (the most confident reference overturned)."
              + (f" The first {MARKDOWN_FLIPS} of {report.flip_count}." if report.flip_count > MARKDOWN_FLIPS else ""),
              "", "| image | " + ("label | kind | " if labelled else "") +
              "reference (p) | candidate (p) | reference margin |",
              "|---|" + ("---|---|" if labelled else "") + "---|---|---|"]
    for f in report.flips[:MARKDOWN_FLIPS]:
        r, c = f["reference"], f["candidate"]
        lines.append(f"| `{_cell(f['path'])}` | " + (f"{_cell(f['label'])} | {f['kind']} | " if labelled else "") +
                     f"{_cell(r['label'])} ({r['p']:.3f}) | {_cell(c['label'])} ({c['p']:.3f}) | "
                     f"{f['reference_margin']:.3f} |")
    return lines


def _class_table(report) -> list:
    if not report.per_class:
        return []
    rows = report.per_class
    note = ""
    if len(rows) > MARKDOWN_CLASSES:
        rows = sorted((r for r in rows if r["flips"]), key=lambda r: (-r["flips"], r["class"]))[:MARKDOWN_CLASSES]
        note = f" ({len(rows)} of {len(report.per_class)} classes: those with the most flips)"
    lines = ["", f"## Per class{note}", "", "| class | images | reference top-1 | candidate top-1 | flips | "
             "lost | gained |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {_cell(r['label'])} | {r['samples']} | {_pct(r['reference_top1'])} | "
                     f"{_pct(r['candidate_top1'])} | {r['flips']} | {r['lost']} | {r['gained']} |")
    return lines


def _margin_table(report) -> list:
    if not report.agreement_by_margin:
        return []
    lines = ["", "## Agreement by the reference's confidence", "",
             "Images in quartiles of the reference's top-1 margin (p1 - p2 of its softmax), least confident first.",
             "", "| quartile | reference margin | images | agreement (95% CI) | flips |", "|---|---|---|---|---|"]
    for q in report.agreement_by_margin:
        lo, hi = q["agreement_ci95"]
        lines.append(f"| Q{q['quartile']} | {q['margin'][0]:.3f}..{q['margin'][1]:.3f} | {q['samples']} | "
                     f"{_pct(q['agreement'])} ({100 * lo:.1f}..{100 * hi:.1f}%) | {q['flips']} |")
    return lines


def junit(report) -> str:
    from xml.sax.saxutils import escape, quoteattr

    name = quoteattr(f"parity {report.candidate['name']} vs {report.reference['name']}")
    body = ""
    if report.failures:
        body = f"<failure message={quoteattr('; '.join(report.failures))}>{escape(markdown(report))}</failure>"
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<testsuite name="vit-edge validate" tests="1" failures="{int(not report.passed)}">'
            f'<testcase classname="vit_edge.validate" name={name}>{body}</testcase></testsuite>\n')
