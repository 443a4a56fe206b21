"""The accuracy budget: return the fewest quantized operations to float until the gate's thresholds hold.

The same thresholds the gate checks (``--min-agreement``, ``--max-top1-drop``, ``--min-cosine``) become a
target with ``--budget``, on ``--validate`` data or the calibration hold-out, labelled or not (agreement and
cosine need no labels). NNCF's accuracy control only looks at top-1, which cannot help when what drifts is
agreement.

How: each quantized GEMM is ranked by how much the final output recovers when that one operation's input
is taken out of INT8 (a cheap graph edit: the quantize/dequantize pair in front of it is bypassed, its weight
stays on the INT8 grid); then operations are returned to float in that order until the edited model meets
the budget, and the model is quantized again by NNCF with exactly those operations in its ignored scope
(exact: the recipe's own float path), and checked. If the budget needs more than half the GEMM MACs in
float, the convert stops with exit 1 and says what it reached.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from vit_edge import metrics
from vit_edge.errors import ParityError

log = logging.getLogger("vit_edge")

RANK_IMAGES = 128  # images the per-operation ranking runs on (the check of the result uses all of them)
MIN_INT8_MAC_SHARE = 0.5
BUDGET_IMAGES = 1000  # at most this many images judge the budget unless --validate-limit says otherwise


@dataclass
class Backend:
    """What the budget search needs from one quantization backend (ONNX Q/DQ or OpenVINO)."""

    quantized_ops: object  # model -> [op names whose activation input is quantized]
    bypass: object  # (model, names) -> a copy with those ops' activation quantization removed
    infer: object  # (model, batches) -> outputs
    requantize: object  # (ignored names) -> a freshly quantized model with those ops in float
    onnx_name: object  # backend op name -> the ONNX node it came from


def judge(thresholds, task: str, out, reference, labels) -> tuple[bool, dict]:
    """Whether outputs meet the thresholds, and the numbers (the gate's own definitions)."""
    reached = {"top1_agreement": metrics.agreement(out, reference),
               "mean_cosine": float(np.mean(metrics.row_cosines(out, reference)))}
    ok = reached["mean_cosine"] >= thresholds.min_cosine if task == "features" else \
        reached["top1_agreement"] >= thresholds.min_agreement
    if labels is not None and task != "features":
        drop = 100 * float((reference.argmax(1) == labels).mean() - (out.argmax(1) == labels).mean())
        reached["top1_drop_points"] = drop
        ok = ok and drop <= thresholds.max_top1_drop
    return ok, reached


def mac_share(ops: dict, quantized: list, onnx_name) -> float:
    """Share of the graph's GEMM MACs whose activation input is INT8."""
    total = sum(op.macs for op in ops.values())
    int8 = sum(ops[onnx_name(n)].macs for n in quantized if onnx_name(n) in ops)
    return int8 / total if total else 0.0


def rank_by_recovery(model, backend: Backend, names, batches, reference, *, key: str = "agreement",
                     step=None) -> list:
    """Return each named operation alone to float (its activation quantization bypassed) and measure the final
    output against ``reference``: ``[(agreement, mean cosine, name)]``, the best recovery first. ``key``:
    "agreement" (cosine breaks ties) or "cosine" (agreement breaks ties); ``step()`` is called after each."""
    gains = []
    for name in names:
        out = backend.infer(backend.bypass(model, [name]), batches)
        gains.append((metrics.agreement(out, reference), float(np.mean(metrics.row_cosines(out, reference))), name))
        if step is not None:
            step()
    gains.sort(key=lambda g: (g[1], g[0]) if key == "cosine" else (g[0], g[1]), reverse=True)
    return gains


def apply(model, backend: Backend, ops: dict, data: np.ndarray, labels, thresholds, task: str,
          data_source: str) -> tuple[object, dict]:
    """Meet the budget starting from the quantized ``model``; return the model and the record."""
    from vit_edge.convert.stages.opmap import describe

    batches = [data[i:i + 16] for i in range(0, len(data), 16)]
    reference = backend.infer(None, batches)  # None: the FP32 model
    record = {"thresholds": thresholds.to_dict(), "data": data_source, "images": int(len(data))}
    quantized = backend.quantized_ops(model)
    ok, reached = judge(thresholds, task, backend.infer(model, batches), reference, labels)
    record["before"] = reached
    if ok:
        record.update(reached=reached, returned_to_float=[],
                      int8_mac_share=mac_share(ops, quantized, backend.onnx_name))
        return model, record
    rank = batches[: max(1, RANK_IMAGES // 16)]
    rank_ref = reference[:sum(len(b) for b in rank)]
    gains = rank_by_recovery(model, backend, quantized, rank, rank_ref, key="cosine" if task == "features" else
                             "agreement")
    order = [name for _, _, name in gains]
    record["ranking"] = [{"name": n, "module": getattr(ops.get(backend.onnx_name(n)), "module", None),
                          "agreement": a, "mean_cosine": c} for a, c, n in gains[:10]]
    chosen, best = [], (model, reached)
    for name in order:
        chosen.append(name)
        share = mac_share(ops, [n for n in quantized if n not in chosen], backend.onnx_name)
        if share < MIN_INT8_MAC_SHARE:
            break
        ok, reached = judge(thresholds, task, backend.infer(backend.bypass(model, chosen), batches), reference,
                            labels)
        if not ok:
            continue
        exact = backend.requantize(list(chosen))
        ok, reached = judge(thresholds, task, backend.infer(exact, batches), reference, labels)
        best = (exact, reached)
        if ok:
            record.update(reached=reached, int8_mac_share=mac_share(ops, backend.quantized_ops(exact),
                                                                    backend.onnx_name),
                          returned_to_float=[{"name": n, "module": getattr(ops.get(backend.onnx_name(n)), "module",
                                                                            None),
                                              "macs": getattr(ops.get(backend.onnx_name(n)), "macs", 0)}
                                             for n in chosen])
            log.info("budget met by returning %s to float", ", ".join(describe(ops.get(backend.onnx_name(n)), n)
                                                                       for n in chosen))
            return exact, record
    reached = best[1]
    what = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in reached.items())
    raise ParityError(f"the INT8 budget cannot be met with at least {MIN_INT8_MAC_SHARE:.0%} of the GEMM MACs in "
                      f"INT8: best reached {what} on {len(data)} images of {data_source} (needed "
                      f"{_needed(thresholds, task, labels)})",
                      hint="relax the thresholds, use --precision fp16, or drop --budget")


def data_for(job, calibration) -> tuple:
    """What the budget is judged on: --validate data, else the labelled calibration hold-out, else the
    scoring images sampled after the calibration ones. Returns (images, labels or None, description)."""
    from vit_edge.data import load_images

    limit = job.validation.limit or BUDGET_IMAGES
    images = load_images(job.validation.data, job.loaded.labels) if job.validation.data else calibration.holdout
    if images is None:
        return calibration.scoring if calibration.scoring is not None else calibration.images, None, \
            f"{calibration.source} (images calibration did not use)"
    xs, ys = [], []
    for batch, y in images.batches(job.loaded.preprocess, batch_size=32, limit=limit):
        xs.append(batch)
        if y is not None:
            ys.append(y)
    labels = np.concatenate(ys) if ys and sum(len(y) for y in ys) == sum(len(x) for x in xs) else None
    return np.concatenate(xs), labels, images.source


def needed_text(thresholds, task, labels) -> str:
    return _needed(thresholds, task, labels)


def _needed(thresholds, task, labels) -> str:
    if task == "features":
        return f"mean cosine >= {thresholds.min_cosine}"
    text = f"agreement >= {thresholds.min_agreement}"
    return text + (f", top-1 drop <= {thresholds.max_top1_drop} pts" if labels is not None else "")
