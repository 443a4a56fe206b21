"""The debug pass itself: points, the layer-wise comparison, the sensitivity ranking and the suggested fix."""

from __future__ import annotations

import logging
import time

import numpy as np

import vit_edge.debug.measure as measure
import vit_edge.debug.points as points_module
import vit_edge.debug.sensitivity as sensitivity
from vit_edge.debug.sides import NoSharedPoints
from vit_edge.progress import progress_bar

log = logging.getLogger("vit_edge")

F32 = {"INFERENCE_PRECISION_HINT": "f32"}
BATCH = 8  # images per layer-wise batch: every point of a ViT-S batch is held at once
RUN_BATCH = 16  # images per call when only the final output is needed
MIN_SHARED_GEMMS = 0.5  # share of the reference's GEMMs the candidate must hold (by node name and op type)


def _graphs(sides):
    """(the FP32 ONNX, the reference taps, the candidate taps, the candidate model for bypass edits, the
    reference model the bypass backend runs)."""
    import onnx

    from vit_edge.debug.taps import OnnxTaps, OpenVINOTaps

    fp32 = onnx.load(str(sides.fp32_path))
    if sides.backend == "onnx":
        candidate = onnx.load(str(sides.path))
        return fp32, OnnxTaps(fp32), OnnxTaps(candidate), candidate, fp32
    import openvino as ov

    core = ov.Core()
    reference = OpenVINOTaps(ov.convert_model(str(sides.fp32_path)))
    return fp32, reference, OpenVINOTaps(core.read_model(str(sides.path))), core.read_model(str(sides.path)), \
        reference.model


def shared_points(fp32, ref_taps, cand_taps) -> list:
    """[(PointSpec, reference handle, candidate handle)] found in both graphs, in graph order."""
    facts = cand_taps.facts({n.name for n in fp32.graph.node})
    found, seen = [], set()
    for spec in points_module.select(fp32, facts):
        ref, cand = ref_taps.resolve(spec), cand_taps.resolve(spec)
        if ref is not None and cand is not None and (ref, cand) not in seen:
            seen.add((ref, cand))
            found.append((spec, ref, cand))
    return found


def _require_same_graph(sides, fp32, shared) -> None:
    """Refuse a reference the candidate was not made from: exporter names (``node_MatMul_12``) recur across
    models, so a few shared names prove nothing; most of the reference's GEMMs must be found."""
    from vit_edge.convert.stages.opmap import GEMM_OPS

    gemms = {n.name for n in fp32.graph.node if n.op_type in GEMM_OPS}
    found = {spec.node for spec, _, _ in shared if spec.op_type in GEMM_OPS}
    if not shared or len(found) < MIN_SHARED_GEMMS * max(1, len(gemms)):
        raise NoSharedPoints(f"{sides.path.name} shares {'no' if not shared else 'too few'} comparison points with "
                             f"the reference {sides.reference.get('name')} ({len(found)} of its {len(gemms)} GEMMs): "
                             "it was not converted from this model",
                             hint="pass the FP32 model it was converted from as --reference")


def run(sides, images: np.ndarray, *, progress: bool = True, seconds: dict) -> dict:
    """Everything the report needs: the points with their metrics, the analysis, the culprits, the fix."""
    clock = time.perf_counter()
    fp32, ref_taps, cand_taps, cand_model, ref_model = _graphs(sides)
    shared = shared_points(fp32, ref_taps, cand_taps)
    _require_same_graph(sides, fp32, shared)
    configs = {"as_run": F32 if sides.precision == "fp32" and sides.backend == "openvino" else {}}
    if sides.backend == "openvino":
        configs["f32"] = F32
    log.info("debug: comparing %d points on %d images (%s)", len(shared), len(images), ", ".join(configs))
    points, outputs = _layerwise(shared, ref_taps, cand_taps, images, configs, progress)
    naming = sides.names or points_module.naming(fp32, sides.module)  # an ONNX reference: no torch module
    names = points_module.describe_points([s for s, _, _ in shared], fp32, naming["gemm_modules"],
                                          naming["modules"])
    fp16, int8 = sides.precision == "fp16", sides.precision == "int8"
    quantized = cand_taps.facts_cache.quantized_nodes
    for point in points:
        point.update(names[point["name"]])
        # Where the candidate computes something of its own: a quantized or cast value, the inputs (also those
        # quantized before a layout op) and outputs of an op reading one (a quantizer's damage shows at the
        # output), a quantized weight's GEMM output, any FP16 op.
        point["injects"] = fp16 or point["reference_tensor"] != point["candidate_tensor"] or (int8 and (
            point["kind"] == "gemm_output" or point["node"] in quantized))
    upstream = _upstream(shared, cand_taps)
    analysis = measure.analyse(points, upstream)
    for point in points:
        point["excess_db"] = measure.excess_db(point, analysis["noise_floor_db"])
        point["diverges"] = measure.diverges(point, analysis["noise_floor_db"], analysis["margin_db"])
    if "f32" in configs:
        f32_points = [{"snr_db": p["f32"]["snr_db"], "injects": p["injects"]} for p in points]
        f32_analysis = measure.analyse(f32_points, upstream)
        for p, q in zip(points, f32_points):
            p["f32"]["local_snr_db"] = q["local_snr_db"]
        analysis["noise_floor_f32_db"] = f32_analysis["noise_floor_db"]
    seconds["layerwise"] = time.perf_counter() - clock
    result = {"points": points, "analysis": analysis, "reference_output": outputs["reference"],
              "configs": {name: getattr(cand_taps, "ran_at", {}).get(str(sorted(config.items())))
                          for name, config in configs.items()}, "culprits": [], "fix": None}
    backend = sensitivity.backend_for(sides.backend, ref_model)
    batches = [images[i:i + RUN_BATCH] for i in range(0, len(images), RUN_BATCH)]
    reference = outputs["reference"]
    clock = time.perf_counter()
    base_out = backend.infer(cand_model, batches)
    base = sensitivity.outcome(base_out, reference)
    result["base"] = base
    quantized_ops = backend.quantized_ops(cand_model)
    if quantized_ops:
        tried = min(sensitivity.RANKED, len(quantized_ops))
        n = min(len(images), sensitivity.RANK_IMAGES)
        rank_batches = [images[i:min(n, i + RUN_BATCH)] for i in range(0, n, RUN_BATCH)]
        rank_base = sensitivity.outcome(base_out[:n], reference[:n])
        log.info("debug: returning %d of %d quantized operations to float, one at a time, on %d images", tried,
                 len(quantized_ops), n)
        with progress_bar(desc="debug: returning operations to float", total=tried, enabled=progress) as bar:
            result["culprits"] = sensitivity.rank(backend, cand_model, points, analysis["noise_floor_db"],
                                                  rank_batches, reference[:n], rank_base, step=lambda: bar.update(1))
        result["ranked_on"] = {"images": n, **rank_base}
        seconds["ranking"] = time.perf_counter() - clock
        clock = time.perf_counter()
        chosen, reached = sensitivity.fix(backend, cand_model, result["culprits"], batches, reference, base)
        result["fix"] = {"ignore": chosen, "reached": reached} if chosen else None
        seconds["fix"] = time.perf_counter() - clock
    return result


def _layerwise(shared, ref_taps, cand_taps, images, configs: dict, progress: bool):
    """Run both sides batch by batch and accumulate every point's metrics (as run, and at f32 for OpenVINO)."""
    batches = [images[i:i + BATCH] for i in range(0, len(images), BATCH)]
    ref_handles = list(dict.fromkeys(r for _, r, _ in shared))
    cand_handles = list(dict.fromkeys(c for _, _, c in shared))
    acc = {name: [measure.Accumulator() for _ in shared] for name in configs}
    ref_run = ref_taps.run(ref_handles, batches, F32)
    cand_runs = {name: cand_taps.run(cand_handles, batches, config) for name, config in configs.items()}
    reference = []
    with progress_bar(desc="debug: layer-wise comparison", total=len(images), enabled=progress) as bar:
        for batch in batches:
            ref = next(ref_run)
            reference.append(np.asarray(ref[None], np.float64))
            for name, runner in cand_runs.items():
                cand = next(runner)
                for i, (_, r, c) in enumerate(shared):
                    acc[name][i].add(cand[c], ref[r])
            bar.update(len(batch))
    points = []
    for i, (spec, r, c) in enumerate(shared):
        point = {"name": spec.name, "node": spec.node, "port": spec.port, "index": spec.index, "tensor": spec.tensor,
                 "kind": spec.kind, "op_type": spec.op_type, "position": i, "reference_tensor": r,
                 "candidate_tensor": c, **acc["as_run"][i].metrics()}
        if "f32" in acc:
            point["f32"] = {k: v for k, v in acc["f32"][i].metrics().items()
                            if k in ("snr_db", "cosine", "max_abs_error", "rel_error", "non_finite")}
        points.append(point)
    return points, {"reference": np.concatenate(reference)}


def _upstream(shared, cand_taps) -> dict:
    index = {}
    for i, (_, _, c) in enumerate(shared):
        index.setdefault(c, i)
    targets = set(index)
    return {i: sorted(index[h] for h in cand_taps.upstream(c, targets)) for i, (_, _, c) in enumerate(shared)}
