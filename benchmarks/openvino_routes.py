#!/usr/bin/env python
"""The two routes to an OpenVINO IR compared: the FP32 ONNX export (torch dynamo) vs OpenVINO's PyTorch frontend.

    python benchmarks/openvino_routes.py [--models fixture,fixture-hf,vit-s] [--rounds 3] [--seconds 4]
                                         [--work DIR] [--search] [--doc docs/BENCHMARKS.md]

For each model, ``vit-edge convert --target openvino`` builds FP32 and INT8 IRs by both routes (``--route onnx``,
``--route pytorch``) plus the frontend's INT8 with attention kept out of NNCF (``--ignore
ScaledDotProductAttention``: no FakeQuantize on the query/key inputs of the fused op), and validates each against
torch FP32 (top-1 agreement, mean cosine). Two more rows are graph surgery on the ONNX route's IRs: every
``Select(IsNaN(x), 0, x)`` replaced by ``x`` (what torch's ``_safe_softmax`` adds after each attention softmax), to
time what that guard costs. Speed: ``benchmark_app`` at batch 8 with the throughput hint (FPS) and at batch 1 with
the latency hint (median ms), static shapes, alternated rounds in a rotating order, medians reported.

Models: ``fixture`` = tests/models/imagenette_vit.py:build with its trained checkpoint (64x64; calibration on
imagenette-64/train, validation on imagenette-64/val), ``fixture-hf`` = the same weights as a Hugging Face
``ViTForImageClassification`` (tests/models/imagenette_hf.py), ``vit-s`` = timm:vit_small_patch16_224 with random
weights (calibrated and validated on the imagenet-samples photos: fidelity vs FP32 only). INT8 uses one fixed
recipe on every route (``--preset mixed``, SmoothQuant off) so the routes are compared alike; ``--search`` runs
vit-edge's default recipe search instead. ``--work DIR`` keeps the IRs and reuses them on a rerun. Prints JSON.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("VIT_EDGE_SHARED", "/work/shared/data"))
BENCHMARK_APP = str(Path(sys.executable).parent / "benchmark_app")

MODELS = {
    "fixture": {"spec": str(ROOT / "tests/models/imagenette_vit.py:build"),
                "checkpoint": str(ROOT / "tests/models/imagenette_vit.safetensors"),
                "calib": str(SHARED / "imagenette-64/train"), "val": str(SHARED / "imagenette-64/val"),
                "calib_size": 300, "limit": 400, "size": 64},
    "fixture-hf": {"spec": "hf:{work}/imagenette-hf", "calib": str(SHARED / "imagenette-64/train"),
                   "val": str(SHARED / "imagenette-64/val"), "calib_size": 300, "limit": 400, "size": 64},
    "vit-s": {"spec": "timm:vit_small_patch16_224", "calib": str(SHARED / "imagenet-samples"),
              "val": str(SHARED / "imagenet-samples"), "calib_size": 120, "limit": None, "size": 224},
}
# (name, route, precision, extra convert options)
VARIANTS = [("onnx-fp32", "onnx", "fp32", {}), ("pytorch-fp32", "pytorch", "fp32", {}),
            ("onnx-int8", "onnx", "int8", {}), ("pytorch-int8", "pytorch", "int8", {}),
            ("pytorch-int8-attn-float", "pytorch", "int8", {"ignore": ("ScaledDotProductAttention",)})]
COUNTED = ("ScaledDotProductAttention", "MatMul", "Softmax", "IsNaN", "Select", "FakeQuantize")


def convert_variant(model: dict, name: str, route: str, precision: str, extra: dict, work: Path, search: bool) -> dict:
    from vit_edge.convert import convert

    out = work / model["key"] / name
    if not (out / "manifest.json").exists():
        options = dict(route=route, validate=model["val"], validate_limit=model["limit"], **extra)
        if precision == "int8":
            options.update(calib=model["calib"], calib_size=model["calib_size"])
            if not search:
                options.update(preset="mixed", smooth_quant_alpha=-1.0)
        convert(model["spec"], target="openvino", precision=precision, out=out, force=True,
                checkpoint=model.get("checkpoint"), **options)
    manifest = json.loads((out / "manifest.json").read_text())
    validation = manifest.get("validation") or {}
    row = {"model": model["key"], "variant": name, "route": manifest["openvino"].get("route"),
           "precision": precision, "xml": str(out / "model.xml"),
           "convert_seconds": manifest.get("convert_seconds"), "ops": op_counts(out / "model.xml"),
           "samples": validation.get("samples"), "top1_agreement": validation.get("top1_agreement"),
           "mean_cosine": validation.get("mean_cosine"),
           "top1": [(validation.get(side) or {}).get("top1") for side in ("reference", "candidate")],
           "recipe": (manifest.get("quantization") or {}).get("recipe")}
    return row


def op_counts(xml) -> dict:
    import openvino as ov

    counts = collections.Counter(op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ops())
    return {kind: counts.get(kind, 0) for kind in COUNTED}


def strip_nan_guard(xml: Path) -> Path | None:
    """A copy of the IR with every ``Select(IsNaN(x), c, x)`` replaced by ``x``; None when there is none."""
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    stripped = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Select":
            continue
        cond = op.input_value(0).get_node()
        while cond.get_type_name() in ("Convert", "LogicalNot", "LogicalOr", "LogicalAnd") and cond.get_input_size():
            cond = cond.input_value(0).get_node()
        if cond.get_type_name() != "IsNaN":
            continue
        x = cond.input_value(0)
        keep = next((op.input_value(i) for i in (2, 1) if op.input_value(i).get_node() is x.get_node()
                     or op.input_value(i).get_node().get_friendly_name() == x.get_node().get_friendly_name()), None)
        if keep is None:
            continue
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(keep)
        stripped += 1
    if not stripped:
        return None
    model.validate_nodes_and_infer_types()
    out = xml.with_name("model-no-nan-guard.xml")
    ov.save_model(model, str(out), compress_to_fp16=False)
    return out


def bench_once(xml: str, shape: list, hint: str, seconds: float) -> float:
    """One benchmark_app run: FPS for the throughput hint, median latency (ms) for the latency hint."""
    cmd = [BENCHMARK_APP, "-m", xml, "-d", "CPU", "-hint", hint, "-t", str(seconds),
           "-shape", "[" + ",".join(map(str, shape)) + "]"]
    pattern = r"Throughput:\s+([\d.]+)\s*FPS" if hint == "throughput" else r"Median:\s+([\d.]+)\s*(ms|us)"
    for _ in range(3):  # on a busy machine a run now and then ends without its statistics: run it again
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        found = re.search(pattern, done.stdout + done.stderr)
        if found:  # benchmark_app prints a latency under 1 ms in us
            return float(found.group(1)) / (1000 if found.group(0).endswith("us") else 1)
    raise RuntimeError(f"benchmark_app printed no {pattern!r}: {done.stdout[-500:]} {done.stderr[-500:]}")


def speed(rows: list, rounds: int, seconds: float) -> None:
    """benchmark_app on every row's IR, alternated: each round runs all rows, in a rotated order."""
    jobs = [(row, key, shape, hint) for row in rows for key, shape, hint in
            (("fps_b8", [8, 3, row["size"], row["size"]], "throughput"),
             ("latency_b1_ms", [1, 3, row["size"], row["size"]], "latency"))]
    samples = collections.defaultdict(list)
    for r in range(rounds):
        shift = r % len(jobs)
        for i, (row, key, shape, hint) in enumerate(jobs[shift:] + jobs[:shift]):
            samples[(id(row), key)].append(bench_once(row["xml"], shape, hint, seconds))
            print(f"round {r + 1}/{rounds} {row['model']} {row['variant']} {key}: "
                  f"{samples[(id(row), key)][-1]}", file=sys.stderr, flush=True)
    for row, key, _, _ in jobs:
        row[key] = round(statistics.median(samples[(id(row), key)]), 3)
        row[key + "_runs"] = samples[(id(row), key)]


MARK_BEGIN, MARK_END = "<!-- openvino_routes.py: begin -->", "<!-- openvino_routes.py: end -->"


def markdown(result: dict) -> str:
    """The table for docs/BENCHMARKS.md: each row's speed relative to the ONNX route at the same precision."""
    m = result["machine"]
    lines = [MARK_BEGIN, "## OpenVINO: ONNX route vs PyTorch frontend route", "",
             f"Generated by `python benchmarks/openvino_routes.py --rounds {result['rounds']} --seconds "
             f"{result['seconds_per_run']} --doc docs/BENCHMARKS.md` (OpenVINO {m['openvino']}, {m['cpus']} CPUs; "
             f"load average {m['load_before'][0]:.1f} before, {m['load_after'][0]:.1f} after: a shared, busy "
             "machine, so absolute numbers are low and noisy; rows were alternated so noise hits them alike). "
             f"INT8 recipe: {result['fixed_recipe'] or 'vit-edge default search'}. Fidelity is against torch FP32 "
             "on the validation images (imagenette-64/val sample; for ViT-S the 120 decodable imagenet-samples photos, which are also its calibration set; random weights, so its agreement only means so much).", "",
             "| model | variant | SDPA ops | FakeQuantize | MatMul | IsNaN | top-1 agreement | mean cosine "
             "| batch 8 FPS (throughput hint) | vs onnx | batch 1 median ms (latency hint) | vs onnx |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {(r["model"], r["precision"]): r for r in result["rows"] if r["variant"] == f"onnx-{r['precision']}"}
    for r in result["rows"]:
        b, ops = base.get((r["model"], r["precision"]), r), r["ops"]
        agreement = "-" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.2f}%"
        cosine = "-" if r["mean_cosine"] is None else f"{r['mean_cosine']:.5f}"
        lines.append(f"| {r['model']} | {r['variant']} | {ops['ScaledDotProductAttention']} | {ops['FakeQuantize']} "
                     f"| {ops['MatMul']} | {ops['IsNaN']} | {agreement} ({r['samples'] or '-'}) | {cosine} "
                     f"| {r['fps_b8']:.1f} | {r['fps_b8'] / b['fps_b8']:.2f}x | {r['latency_b1_ms']:.3f} "
                     f"| {b['latency_b1_ms'] / r['latency_b1_ms']:.2f}x |")
    return "\n".join(lines + ["", MARK_END])


def write_doc(path: Path, section: str, begin: str = MARK_BEGIN, end: str = MARK_END) -> None:
    """Put ``section`` in ``path`` in place of the last run's (between the markers), or at its end."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fixture,fixture-hf,vit-s")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--work", default=None, help="keep the IRs here (reused on a rerun)")
    parser.add_argument("--search", action="store_true", help="INT8: vit-edge's recipe search, not one fixed recipe")
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file (docs/BENCHMARKS.md)")
    parser.add_argument("--from-json", type=Path, help="only render --doc from an earlier run's printed JSON")
    args = parser.parse_args(argv)
    if args.from_json:
        write_doc(args.doc, markdown(json.loads(args.from_json.read_text())))
        return 0
    work = Path(args.work or tempfile.mkdtemp(prefix="openvino-routes-"))
    rows = []
    for key in args.models.split(","):
        model = {**MODELS[key], "key": key}
        model["spec"] = model["spec"].format(work=work)
        if key == "fixture-hf" and not (work / "imagenette-hf" / "config.json").exists():
            sys.path.insert(0, str(ROOT / "tests/models"))
            import imagenette_hf

            imagenette_hf.write(work / "imagenette-hf")
        for name, route, precision, extra in VARIANTS:
            print(f"converting {key} {name}", file=sys.stderr, flush=True)
            rows.append({**convert_variant(model, name, route, precision, extra, work, args.search),
                         "size": model["size"]})
            if route == "onnx":
                stripped = strip_nan_guard(Path(rows[-1]["xml"]))
                if stripped is not None:
                    rows.append({**rows[-1], "variant": name + "-no-nan-guard", "xml": str(stripped),
                                 "ops": op_counts(stripped), "samples": None, "top1_agreement": None,
                                 "mean_cosine": None, "top1": None})
    load_before = os.getloadavg()
    speed(rows, args.rounds, args.seconds)
    import openvino

    result = {"machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                          "openvino": openvino.__version__},
              "rounds": args.rounds, "seconds_per_run": args.seconds, "work": str(work),
              "fixed_recipe": None if args.search else "mixed, SmoothQuant off", "rows": rows}
    print(json.dumps(result, indent=1))
    if args.doc:
        write_doc(args.doc, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
