"""What to do about it: the one-sentence verdict and the suggestion (with the command that applies it)."""

from __future__ import annotations

from pathlib import Path

import vit_edge.debug.sensitivity as sensitivity


def advise(report, sides, result, data) -> tuple[dict, str]:
    """(suggestion, verdict) for a built report."""
    first, output, largest = report.first_divergence, report.output, report.largest_jump
    where = f"the error jumps first at {first['label']} ({first['name']})" if first else \
        f"no point's error jumps above the {report.noise_floor_db:.1f} dB floor"
    if largest and largest["name"] != first["name"]:
        where += f", most at {largest['label']} ({largest['name']})"
    out = _fixed_out(sides)
    validate = data if isinstance(data, (str, Path)) else None
    overflow = [p for p in report.points if p["non_finite"] and not p.get("inherited_non_finite")]
    if overflow:
        p = overflow[0]
        return ({"action": "keep_in_fp32", "command": None, "ignore": [], "reached": None, "node": p["node"],
                 "op_type": p["op_type"],
                 "text": f"keep {p['op_type']} in FP32 (convert(..., fp32_ops=({p['op_type']!r},)) from Python), "
                         f"or convert to --precision int8 / fp32: FP16 cannot hold these values"},
                f"{sides.precision.upper()} overflows at {p['label']} ({p['name']}): {p['non_finite']} non-finite "
                f"values over {report.images} images, where the FP32 reference holds {p['ref_beyond_fp16']} values "
                f"beyond +-65504" + (_as_run_note(sides) if output["passes"] and _finite(output) else ""))
    fix = result.get("fix")
    if fix:
        names = fix["ignore"]
        standing = [c for c in report.culprits if c["name"] in names]
        who = ", ".join(_who(c) for c in standing)
        reached = fix["reached"]
        enough = _passes(reached, report, sides)  # else --budget returns more operations to float on top
        command = sensitivity.convert_command(sides.manifest, ignore=names, use_budget=not enough, validate=validate,
                                              out=out)
        return ({"action": "ignore" if enough else "ignore_and_budget", "ignore": names, "command": command,
                 "reached": reached, "text": f"keep {who} in float" + ("" if enough else
                                                                         ", and let --budget do the rest")},
                f"{where}; returning {who} to float brings the output from agreement "
                f"{100 * output['agreement']:.2f}% / cosine {output['cosine']:.5f} to {100 * reached['agreement']:.2f}%"
                f" / {reached['cosine']:.5f}" + ("" if enough else
                                                 "; the gate still fails there, so --budget does the rest"))
    if report.culprits:
        best = report.culprits[0]
        calm = (f"no culprit above the measured noise: {where}" if first is None else
                f"{where}, but no single quantized operation explains it")
        calm += f", and the best single operation ({_who(best)}) recovers {100 * best['recovered_share']:.0f}% of the gap"
        if output["passes"]:
            return ({"action": "none", "command": None, "ignore": [], "reached": None,
                     "text": "nothing to fix: the INT8 error is spread evenly over the quantized operations"},
                    calm + "; the gate passes")
        command = sensitivity.convert_command(sides.manifest, use_budget=True, validate=validate, out=out)
        return ({"action": "budget", "command": command, "ignore": [], "reached": None,
                 "text": "let --budget return the fewest operations to float until the gate holds"},
                calm + "; the gate fails, so let --budget spread the fix")
    if first is not None:
        return ({"action": "none", "command": None, "ignore": [], "reached": None,
                 "text": "nothing quantized to return to float"},
                f"{where} ({sides.precision} has no quantized operation to return to float)")
    return ({"action": "none", "command": None, "ignore": [], "reached": None, "text": "nothing to fix"},
            f"no point's error jumps above the {report.noise_floor_db:.1f} dB noise floor")


def _passes(reached: dict, report, sides) -> bool:
    """The gate validate applies (agreement; cosine for feature models), on what the fix reached."""
    t = report.thresholds
    return reached["agreement"] >= t["min_agreement"] and (
        sides.manifest.task != "features" or reached["cosine"] >= t["min_cosine"])


def _who(culprit: dict) -> str:
    return f"{culprit['where']} ({culprit['name']})" if culprit.get("where") else culprit["name"]


def _fixed_out(sides) -> str:
    folder = sides.path.parent
    return str(folder.with_name(folder.name + "-fixed"))


def _finite(output: dict) -> bool:
    import math

    return math.isfinite(output["cosine"])


def _as_run_note(sides) -> str:
    return (f"; the output as {'ONNX Runtime' if sides.backend == 'onnx' else 'OpenVINO'} runs it here is finite (ONNX Runtime's CPU kernels compute FP16 ops "
            "in FP32 where they have no FP16 kernel), but FP16 hardware (TensorRT, GPUs) computes this tensor in FP16")
