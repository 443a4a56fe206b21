"""The debug report: one record (:meth:`DebugReport.to_dict`, the ``--json`` schema of docs/DEBUG.md) and its
terminal and Markdown renderings."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge.debug.points import label

FORMAT = 1
WORST_SHOWN = 15
LABEL = 80  # characters of a point's name in the terminal table, at most


@dataclass
class DebugReport:
    candidate: dict
    reference: dict
    data: str
    images: int
    thresholds: dict
    output: dict  # the candidate's final output against the reference's: agreement, cosine, gate
    noise_floor_db: float
    noise_spread_db: float
    first_divergence: dict | None
    largest_jump: dict | None
    points: list
    culprits: list
    suggestion: dict
    verdict: str
    timing: dict = field(default_factory=dict)
    skipped: int = 0
    ranked_on: dict | None = None  # the images the culprits were ranked on, and the output there

    @classmethod
    def build(cls, sides, images, decoded, result, thresholds, seconds, *, data) -> "DebugReport":
        from vit_edge.debug.advice import advise

        points, analysis = result["points"], result["analysis"]
        first = analysis["first_divergence"]
        floor = analysis["noise_floor_db"]
        for p in points:
            p["label"] = label(p)
        base = result["base"]
        output = {**base, "min_agreement": thresholds.min_agreement, "min_cosine": thresholds.min_cosine,
                  "passes": base["agreement"] >= thresholds.min_agreement and (
                      sides.manifest.task != "features" or base["cosine"] >= thresholds.min_cosine)}
        candidate = {"path": str(sides.path), "backend": sides.backend, "target": sides.manifest.target,
                     "precision": sides.precision, "runs": result["configs"]}
        if "noise_floor_f32_db" in analysis:
            candidate["noise_floor_f32_db"] = analysis["noise_floor_f32_db"]
        report = cls(candidate=candidate, reference=sides.reference, data=images.source + (f" ({images.selection})" if images.selection else ""),
                     images=int(len(decoded)),
                     thresholds=thresholds.to_dict(), output=output, noise_floor_db=floor,
                     noise_spread_db=analysis["noise_spread_db"],
                     first_divergence=_brief(points[first]) if first is not None else None,
                     largest_jump=_brief(points[analysis["largest_jump"]]) if first is not None else None,
                     points=points,
                     culprits=result["culprits"], suggestion={}, verdict="", timing=seconds,
                     skipped=len(images.skipped), ranked_on=result.get("ranked_on"))
        report.suggestion, report.verdict = advise(report, sides, result, data)
        return report

    # ------------------------------------------------------------ renderings

    def to_dict(self) -> dict:
        keep = ("name", "label", "module", "traced", "after", "kind", "node", "port", "index", "op_type", "tensor", "position",
                "snr_db", "cosine", "max_abs_error", "rel_error", "upstream_snr_db", "drop_db", "local_snr_db",
                "excess_db", "injects", "diverges", "inherited_non_finite", "non_finite", "beyond_fp16", "ref_beyond_fp16", "values", "f32")
        return _finite({"format": FORMAT, "candidate": self.candidate, "reference": self.reference, "data": self.data,
                        "images": self.images, "skipped_files": self.skipped, "thresholds": self.thresholds,
                        "output": self.output, "noise_floor_db": self.noise_floor_db,
                        "noise_spread_db": self.noise_spread_db, "first_divergence": self.first_divergence,
                        "largest_jump": self.largest_jump,
                        "points": [{k: p[k] for k in keep if k in p} for p in self.points],
                        "culprits": self.culprits, "ranked_on": self.ranked_on, "suggestion": self.suggestion,
                        "verdict": self.verdict,
                        "timing": self.timing})

    def worst(self, n: int = WORST_SHOWN) -> list:
        """The points adding the most noise beyond the floor, worst first (non-finite values first; points
        that only carry the noise of others after those that inject their own)."""
        ranked = sorted(self.points, key=lambda p: (not p["injects"], -p["excess_db"], p["position"]))
        return ranked[:n]

    def _lines_head(self) -> list:
        c, o = self.candidate, self.output
        ref = self.reference.get("name") or self.reference.get("given") or "?"
        ran = {"onnx": "ONNX Runtime", "openvino": "OpenVINO"}[c["backend"]]
        at = [v for v in c["runs"].values() if v]
        ran += f" at {' and '.join(at)}" if at else ""
        return [f"debug {Path(c['path']).name} ({c['target']} {c['precision']}, run in {ran}) against the "
                f"FP32 reference {ref} ({self.reference.get('kind')}) on {self.images} images of {self.data}",
                f"final output: agreement {100 * o['agreement']:.2f}%, mean cosine {o['cosine']:.5f} "
                f"(gate: agreement >= {100 * o['min_agreement']:.2f}%: {'passes' if o['passes'] else 'FAILS'})",
                f"noise floor: {self.noise_floor_db:.1f} dB (noise one step adds, median over the first third of "
                f"{len(self.points)} points)" + (f"; at f32: {c['noise_floor_f32_db']:.1f} dB"
                                                 if "noise_floor_f32_db" in c else "")]

    def to_text(self) -> str:
        lines = self._lines_head() + ["", "worst points (most noise added first):"]
        worst = self.worst()
        width = min(LABEL, max([len("point")] + [len(p["label"]) for p in worst]))
        f32 = "f32" in self.candidate["runs"]  # OpenVINO: also run at f32
        head = f"  {'point':{width}} {'kind':17} {'SNR dB':>7} {'drop':>6} {'added':>6} {'cosine':>9} {'max abs':>9}"
        head += f" {'f32 SNR':>7}" if f32 else ""
        head += f" {'overflow':>8}" if self._fp16 else ""
        lines.append(head)
        for p in worst:
            row = (f"  {_cut(p['label'], width):{width}} {p['kind']:17} {_db(p['snr_db']):>7} {_db(p['drop_db'], '-'):>6} "
                   f"{_db(p['local_snr_db'], '-'):>6} {_num(p['cosine'], '.5f'):>9} "
                   f"{_num(p['max_abs_error'], '.3g'):>9}")
            row += f" {_db(p['f32']['snr_db']):>7}" if f32 else ""
            row += f" {p['non_finite'] + p['beyond_fp16']:>8}" if self._fp16 else ""
            lines.append(row + ("  <- jumps" if p["diverges"] else ""))
        lines.append("")
        lines.append(_first_text(self.first_divergence))
        if self.largest_jump and self.largest_jump["name"] != self.first_divergence["name"]:
            lines.append(_first_text(self.largest_jump, "largest jump"))
        if self.culprits:
            on = self.ranked_on or {"images": self.images, **self.output}
            lines += ["", f"culprits (each returned to float alone, on the first {on['images']} images; there the "
                          f"output was at agreement {100 * on['agreement']:.2f}%, cosine {on['cosine']:.5f}):"]
            names = [_culprit_name(c) for c in self.culprits]
            width = min(LABEL, max(len(n) for n in names))
            for i, (c, name) in enumerate(zip(self.culprits, names), 1):
                lines.append(f"  {i}. {_cut(name, width):{width}} agreement {100 * c['recovered_agreement']:6.2f}%  "
                             f"cosine {c['recovered_cosine']:.5f}  recovers {100 * c['recovered_share']:3.0f}% of "
                             f"the gap" + ("  <- stands out" if c["stands_out"] else ""))
        lines += ["", self.verdict]
        if self.suggestion.get("command"):
            lines += [f"fix: {self.suggestion['command']}"]
            reached = self.suggestion.get("reached")
            if reached:
                lines.append(f"     reaches agreement {100 * reached['agreement']:.2f}%, mean cosine "
                             f"{reached['cosine']:.5f} on these images (measured with those quantizers bypassed)")
        return "\n".join(lines)

    @property
    def _fp16(self) -> bool:
        return self.candidate["precision"] == "fp16" or any(p["non_finite"] or p["beyond_fp16"] for p in self.points)

    def to_markdown(self) -> str:
        lines = ["# vit-edge debug", ""] + [f"- {line}" for line in self._lines_head()] + ["", f"**{self.verdict}**", ""]
        if self.suggestion.get("command"):
            lines += ["Fix:", "", "```bash", self.suggestion["command"], "```", ""]
            if self.suggestion.get("reached"):
                r = self.suggestion["reached"]
                lines += [f"Measured on the same images with those quantizers bypassed: agreement "
                          f"{100 * r['agreement']:.2f}%, mean cosine {r['cosine']:.5f}.", ""]
        lines += [_first_text(self.first_divergence), ""]
        if self.largest_jump and self.largest_jump["name"] != self.first_divergence["name"]:
            lines += [_first_text(self.largest_jump, "largest jump"), ""]
        if self.culprits:
            lines += ["## Culprits", "", "| # | operation | agreement | cosine | gap recovered | stands out |",
                      "|---|---|---|---|---|---|"]
            for i, c in enumerate(self.culprits, 1):
                lines.append(f"| {i} | {_culprit_name(c)} | {100 * c['recovered_agreement']:.2f}% | "
                             f"{c['recovered_cosine']:.5f} | {100 * c['recovered_share']:.0f}% | "
                             f"{'yes' if c['stands_out'] else ''} |")
            lines.append("")
        lines += ["## Worst points", ""] + _point_table(self.worst()) + ["", "## All points in graph order", ""]
        lines += _point_table(self.points)
        return "\n".join(lines) + "\n"

    def write(self, *, json_path=None, markdown_path=None, plot_path=None) -> list:
        from vit_edge.artifact.files import write_json, write_text

        written = []
        if json_path:
            write_json(Path(json_path), self.to_dict())
            written.append(str(json_path))
        if markdown_path:
            write_text(Path(markdown_path), self.to_markdown())
            written.append(str(markdown_path))
        if plot_path:
            from vit_edge.debug.plot import plot

            plot(self, Path(plot_path))
            written.append(str(plot_path))
        return written


def _brief(point: dict) -> dict:
    keys = ("name", "module", "kind", "node", "port", "index", "tensor", "position", "snr_db", "upstream_snr_db",
            "drop_db", "local_snr_db", "cosine", "non_finite", "beyond_fp16", "ref_beyond_fp16")
    return {"label": label(point), **{k: point.get(k) for k in keys}}


def _first_text(first, what: str = "first divergence") -> str:
    if first is None:
        return f"{what}: none (no point's error jumps above the noise floor)"
    text = f"{what}: {first['label']} ({first['name']}, tensor {first['tensor']})"
    if first["snr_db"] is None:
        return text + f": {first['non_finite']} non-finite values ({first['ref_beyond_fp16']} reference values " \
                      f"beyond +-65504)"
    return text + f": SNR {_db(first['upstream_snr_db'])} -> {_db(first['snr_db'])} dB"


def _culprit_name(c: dict) -> str:
    return f"{c['where']} ({c['name']})" if c.get("where") else f"{c['name']} (no torch module traced)"


def _point_table(points: list) -> list:
    lines = ["| # | point | kind | SNR dB | drop dB | added (SNR dB) | cosine | max abs error | rel error | "
             "non-finite / beyond FP16 | jumps |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['position']} | {p['label']} `{p['name']}` | {p['kind']} | {_db(p['snr_db'])} | "
                     f"{_db(p['drop_db'], '-')} | {_db(p['local_snr_db'], '-')} | {_num(p['cosine'], '.5f')} | "
                     f"{_num(p['max_abs_error'], '.3g')} | {_num(p['rel_error'], '.3g')} | "
                     f"{p['non_finite']} / {p['beyond_fp16']} | {'**yes**' if p['diverges'] else ''} |")
    return lines


def _db(value, missing: str = "-inf") -> str:
    if value is None:
        return missing
    if math.isinf(value):
        return "inf"
    return f"{value:.1f}"


def _num(value, spec: str) -> str:
    return "nan" if value is None else format(value, spec)


def _cut(text: str, width: int) -> str:
    """Shortened in the middle: the kind of op at the start and the module at the end both stay."""
    if len(text) <= width:
        return text
    head = (width - 3) // 3
    return text[:head] + "..." + text[len(text) - (width - 3 - head):]


def _finite(value):
    """JSON has no infinities: they become null (documented in docs/DEBUG.md)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(report: DebugReport) -> str:
    return json.dumps(report.to_dict(), indent=2, sort_keys=True)
