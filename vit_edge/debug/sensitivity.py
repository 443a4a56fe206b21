"""Which quantized operations are to blame, and the convert command that fixes it.

The ranking is the accuracy budget's (:func:`vit_edge.convert.stages.budget.rank_by_recovery`): an operation
is returned to float by bypassing its activation quantizer (its weight stays on the INT8 grid) and the final
output is compared with the FP32 reference. Only the ``RANKED`` operations whose points add the most noise
beyond the floor in the layer-wise pass are tried (a few graph edits instead of one per operation), each on the
first ``RANK_IMAGES`` images.

A culprit stands out when returning it alone to float recovers at least ``STANDS_OUT`` of the cosine gap to
FP32 (1 - mean cosine), or ``ALSO_JUMPS`` of it while its own points jump above the noise. The fix returns
the culprits that stand out to float, in ranked order, until ``ENOUGH`` of the gap is recovered, measures
that on the same images, and prints the ``vit-edge convert --ignore`` line that makes it real (NNCF then
keeps those operations in float). With no culprit and a failing gate it suggests ``--budget``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import shlex

import numpy as np

from vit_edge import metrics
from vit_edge.convert.stages import budget
from vit_edge.convert.stages.budget_backends import LAYOUT_OPS, onnx_backend, onnx_bypass, onnx_quantized_ops, \
    openvino_backend, openvino_bypass, openvino_quantized_ops
from vit_edge.debug.measure import excess_db
from vit_edge.debug.taps import OPENVINO_LAYOUT

RANKED = 8
RANK_IMAGES = 16  # images each single-operation edit is judged on (the fix is measured on all of them)
STANDS_OUT = 0.5
ALSO_JUMPS = 0.2
ENOUGH = 0.8


def backend_for(kind: str, reference_model):
    """The budget's backend with the bypass widened to every quantized input of every op type (LayerNorm
    and attention inputs too, through layout-only ops)."""
    if kind == "onnx":
        base = onnx_backend(reference_model)
        ops = functools.partial(onnx_quantized_ops, op_types=None, through=LAYOUT_OPS, every_input=True)
        bypass = functools.partial(onnx_bypass, through=LAYOUT_OPS, every_input=True)
    else:
        base = openvino_backend(reference_model)
        ops = functools.partial(openvino_quantized_ops, op_types=None, through=OPENVINO_LAYOUT, every_input=True)
        bypass = functools.partial(openvino_bypass, through=OPENVINO_LAYOUT, every_input=True)
    return _remembering(dataclasses.replace(base, quantized_ops=ops, bypass=bypass))


def _remembering(backend):
    """The backend, remembering each single-operation edit's outputs per batch: the fix's first step (the best
    culprit alone, on all images) then runs only the batches its ranking did not (the same edit on the same
    batch: the same numbers)."""
    edits, seen = {}, {}

    def bypass(model, names):
        edited = backend.bypass(model, names)
        edits[id(edited)] = (id(model), tuple(names), edited)  # the edit is kept alive: its id stays unique
        return edited

    def infer(model, batches):
        tag = edits.get(id(model), (None, ()))[:2]
        if len(tag[1]) != 1:
            return backend.infer(model, batches)
        keys = [(*tag, b.shape, hashlib.sha1(np.ascontiguousarray(b)).hexdigest()) for b in batches]
        missing = [i for i, k in enumerate(keys) if k not in seen]
        if missing:  # one call (one session or compiled model) for all of them
            got = backend.infer(model, [batches[i] for i in missing])
            for i, part in zip(missing, np.split(got, np.cumsum([len(batches[i]) for i in missing])[:-1])):
                seen[keys[i]] = part
        return np.concatenate([seen[k] for k in keys])

    return dataclasses.replace(backend, bypass=bypass, infer=infer)


def score(points: list, floor: float) -> dict:
    """ONNX node -> the most noise beyond the floor any of its points adds (dB)."""
    best = {}
    for p in points:
        if p.get("injects", True):
            best[p["node"]] = max(best.get(p["node"], -math.inf), excess_db(p, floor))
    return best


def outcome(out, reference) -> dict:
    return {"agreement": metrics.agreement(out, reference),
            "cosine": float(np.mean(metrics.row_cosines(out, reference)))}


def recovered_share(cosine: float, base: float) -> float:
    return 0.0 if base >= 1.0 else max(0.0, (cosine - base) / (1.0 - base))


def rank(backend, model, points: list, floor: float, batches, reference, base: dict, step=None) -> list:
    """The culprits, best recovery first (each a dict for the report)."""
    names = backend.quantized_ops(model)
    scores = score(points, floor)
    local = {n: scores.get(backend.onnx_name(n), -math.inf) for n in names}
    tried = sorted(names, key=lambda n: -local[n])[:RANKED]
    gains = budget.rank_by_recovery(model, backend, tried, batches, reference, key="cosine", step=step)
    modules = _modules(points)
    jumping = {p["node"] for p in points if p.get("diverges")}
    culprits = []
    for agreement, cosine, name in gains:
        share = recovered_share(cosine, base["cosine"])
        jump = local[name]
        culprits.append({"name": name, "onnx_node": backend.onnx_name(name),
                         "module": modules.get(backend.onnx_name(name), (None, None))[0],
                         "where": modules.get(backend.onnx_name(name), (None, None))[1],
                         "recovered_agreement": agreement,
                         "recovered_cosine": cosine, "recovered_share": share,
                         "local_excess_db": None if math.isinf(jump) else jump,
                         "stands_out": share >= STANDS_OUT or (share >= ALSO_JUMPS
                                                               and backend.onnx_name(name) in jumping)})
    return culprits


def _modules(points: list) -> dict:
    """ONNX node -> (its torch module (a GEMM's, a LayerNorm's) or None, what to call it: the module, else
    "OP after MODULE" with the nearest traced GEMM before it), from its points."""
    own, near = {}, {}
    for p in points:
        module = p.get("module")
        if module and not module.startswith("after "):
            own.setdefault(p["node"], module)
        elif module or p.get("after"):
            near.setdefault(p["node"], f"{p['op_type']} {module or 'after ' + p['after']}")
    return {node: (own.get(node), own.get(node) or near.get(node)) for node in set(own) | set(near)}


def fix(backend, model, culprits: list, batches, reference, base: dict) -> tuple[list, dict | None]:
    """Return the culprits that stand out to float, in order, until ENOUGH of the gap is back; the names
    chosen and what the edited model reached (None when nothing stands out)."""
    chosen, reached = [], None
    for culprit in [c for c in culprits if c["stands_out"]]:
        chosen.append(culprit["name"])
        reached = outcome(backend.infer(backend.bypass(model, chosen), batches), reference)
        if recovered_share(reached["cosine"], base["cosine"]) >= ENOUGH:
            break
    return chosen, reached


# ---------------------------------------------------------------- the command that fixes it


def convert_command(manifest, *, ignore=(), use_budget: bool = False, validate=None, out=None) -> str:
    """The ``vit-edge convert`` line that rebuilds this artifact as recorded, with ``--ignore`` entries added
    (or ``--budget``)."""
    from vit_edge.convert.job import DEFAULT_CALIB_SIZE, DEFAULT_OPSET

    source, q, export = manifest.source, manifest.quantization, manifest.export
    args = ["vit-edge", "convert"]
    if source.kind == "onnx" and source.onnx_file:
        args.append(source.onnx_file)
    elif source.spec and source.kind != "demo":
        args.append(source.spec)
    if source.checkpoint and source.kind != "demo":
        args += ["--checkpoint", source.checkpoint]
    args += ["--target", manifest.target, "--precision", manifest.precision or "fp32"]
    if manifest.task == "features":
        args += ["--task", "features"]
    build = source.build or {}
    if build.get("input_size"):
        args += ["--input-size", ",".join(str(v) for v in build["input_size"])]
    if build.get("dynamic_size") or (export is not None and export.dynamic_size):
        args.append("--dynamic-size")
    if export is not None and export.opset and int(export.opset) != DEFAULT_OPSET:
        args += ["--opset", str(export.opset)]
    if q is not None:
        calibration = q.calibration or {}
        if calibration.get("source"):
            args += ["--calib", str(calibration["source"])]
        if calibration.get("requested") and int(calibration["requested"]) != DEFAULT_CALIB_SIZE:
            args += ["--calib-size", str(calibration["requested"])]
        if manifest.seed:
            args += ["--seed", str(manifest.seed)]
        if q.smooth_quant_alpha is not None:  # the recipe measured here
            args += ["--smooth-quant-alpha", f"{q.smooth_quant_alpha:g}"]
        if q.bias_correction == "off":
            args.append("--no-bias-correction")
        for entry in list(q.ignore or []) + [n for n in ignore if n not in (q.ignore or [])]:
            args += ["--ignore", entry]
        if use_budget:
            args.append("--budget")
    if validate:
        args += ["--validate", str(validate)]
    if out:
        args += ["--out", str(out)]
    return shlex.join(args)
