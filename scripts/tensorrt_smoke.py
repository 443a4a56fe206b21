"""TensorRT smoke run for the day a machine has TensorRT and an NVIDIA GPU (a few minutes).

    python scripts/tensorrt_smoke.py [--out DIR] [--models demo,vit_small] [--precisions fp16,int8]

For the demo ViT and timm ViT-S/16 (random weights: speed and parity, not accuracy) it converts FP16 and
INT8 with ``--target tensorrt --require-engine`` (so the engine is built here), then per engine:

- parity against ONNX Runtime running the same TensorRT-ready ``model.onnx`` (top-1 agreement, mean
  cosine, max abs error) on real images (digits:test, the shared ImageNet samples);
- latency at batch 1, 8 and 32 (median of timed runs after warm-up) and images/s;
- the engine inspector's per-layer precisions (``<out>/<case>/layers.json``) and their counts.

It prints one table and exits 0, or 1 when a parity falls below the threshold. Without TensorRT it
prints one line saying so and exits 2.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SAMPLES = next((p / "shared" / "data" / "imagenet-samples" for p in REPO.parents
                if (p / "shared" / "data" / "imagenet-samples").is_dir()), None)
# name -> (MODEL spec, calibration data, calibration size, convert's --validate data, parity images)
MODELS = {"demo": (None, "digits:train", 64, "digits:test", "digits:test"),
          "vit_small": ("timm:vit_small_patch16_224", str(SAMPLES) if SAMPLES else None, 8, None,
                        str(SAMPLES) if SAMPLES else None)}
MIN_AGREEMENT = {"fp16": 0.99, "int8": 0.95}  # random ViT-S logits are flat: looser than the trained demo's
BATCHES = (1, 8, 32)


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=None, help="where the artifacts go (default: a temporary folder)")
    p.add_argument("--models", default="demo,vit_small", help=f"comma list of {', '.join(MODELS)}")
    p.add_argument("--precisions", default="fp16,int8")
    p.add_argument("--iterations", type=int, default=30, help="timed runs per batch size")
    p.add_argument("--images", type=int, default=64, help="images for the parity check")
    return p.parse_args(argv)


def images(data, preprocess, limit: int):
    import numpy as np

    from vit_edge.data import load_images

    if data is None:  # no images for this model here: seeded noise in the model's input range
        h, w = preprocess.input_size
        return np.random.default_rng(0).normal(size=(min(limit, 32), preprocess.channels, h, w)).astype(np.float32)
    return np.concatenate([b for b, _ in load_images(data).batches(preprocess, 32, limit)])


def parity(engine, onnx_runtime, batch) -> dict:
    from vit_edge import metrics

    got, want = engine.run(batch), onnx_runtime.run(batch)
    return {"agreement": metrics.agreement(got, want), "cosine": float(metrics.row_cosines(got, want).mean()),
            "max_abs": metrics.max_abs_error(got, want)}


def latency(runtime, batch, iterations: int) -> dict:
    import numpy as np

    out = {}
    for n in BATCHES:
        x = np.resize(batch, (n, *batch.shape[1:])).astype(np.float32)
        for _ in range(5):
            runtime.run(x)
        times = []
        for _ in range(iterations):
            start = time.perf_counter()
            runtime.run(x)
            times.append(time.perf_counter() - start)
        ms = 1000 * float(np.median(times))
        out[n] = {"ms": ms, "images_per_s": n / (ms / 1000)}
    return out


def layer_report(directory: Path) -> dict:
    import tensorrt as trt

    from vit_edge.artifact import read_manifest
    from vit_edge.convert.tensorrt.layers import inspect_engine, summarize

    engine_info = read_manifest(directory).tensorrt.engine
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    if engine_info.get("dla_core") is not None:
        runtime.DLA_core = int(engine_info["dla_core"])
    engine = runtime.deserialize_cuda_engine((directory / "model.engine").read_bytes())
    layers = inspect_engine(engine, engine_info["input"], engine_info["profile"]["opt"])
    (directory / "layers.json").write_text(json.dumps(layers, indent=1))
    return summarize(layers)


def run_case(name: str, precision: str, out: Path, args) -> dict:
    from vit_edge import runtimes
    from vit_edge.convert import convert

    spec, calib, calib_size, validate, data = MODELS[name]
    if precision == "int8" and calib is None:
        raise SystemExit(f"error: tensorrt_smoke: no calibration images for {name} (shared/data/imagenet-samples)")
    options = {"calib": calib, "calib_size": calib_size} if precision == "int8" else {}
    if validate:
        options.update(validate=validate, validate_limit=args.images)
    started = time.time()
    result = convert(spec, target="tensorrt", precision=precision, out=out, force=True, batch=(1, 8, 32),
                     require_engine=True, **options)
    build_s = time.time() - started
    engine = runtimes.load(out)
    reference = runtimes.load(out, target="onnx")  # the same TensorRT-ready model.onnx, in ONNX Runtime
    try:
        batch = images(data, engine.preprocess, args.images)
        row = {"case": f"{name} {precision}", "build_s": build_s, **parity(engine, reference, batch),
               "latency": latency(engine, batch, args.iterations), "layers": layer_report(out)}
    finally:
        engine.close()
        reference.close()
    row["passed"] = row["agreement"] >= MIN_AGREEMENT[precision]
    row["validation"] = result.report.summary()["top1_agreement"] if result.report is not None else None
    return row


def table(rows: list) -> str:
    head = (f"{'case':<18} {'build s':>7} {'agree':>7} {'cosine':>8} {'max abs':>8} "
            + " ".join(f"{'b' + str(n) + ' ms':>8} {'img/s':>7}" for n in BATCHES)
            + f" {'layers':>6} {'int8':>5} {'fp16':>5} {'fp32':>5} {'int8 gemm':>9}  ok")
    lines = [head, "-" * len(head)]
    for r in rows:
        lat, lay = r["latency"], r["layers"]
        lines.append(f"{r['case']:<18} {r['build_s']:>7.1f} {r['agreement']:>7.2%} {r['cosine']:>8.5f} "
                     f"{r['max_abs']:>8.3f} "
                     + " ".join(f"{lat[n]['ms']:>8.2f} {lat[n]['images_per_s']:>7.0f}" for n in BATCHES)
                     + f" {lay.get('layers', 0):>6} {lay.get('int8', 0):>5} {lay.get('fp16', 0):>5} "
                       f"{lay.get('fp32', 0):>5} {lay.get('int8_gemms', 0):>9}  {'yes' if r['passed'] else 'NO'}")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse(argv)
    from vit_edge.convert.tensorrt.engine import unavailable_reason

    reason = unavailable_reason()
    if reason:
        print(f"error: tensorrt_smoke: cannot run here: {reason}; run it where TensorRT >= 10 and an NVIDIA GPU "
              "are installed (pip install 'vit-edge[tensorrt-cu12]', or JetPack's TensorRT on a Jetson)",
              file=sys.stderr)
        return 2
    models = [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        print(f"error: tensorrt_smoke: unknown model(s) {', '.join(unknown)}; use {', '.join(MODELS)}", file=sys.stderr)
        return 2
    root = args.out or Path(tempfile.mkdtemp(prefix="trt-smoke-"))
    rows = []
    for name in models:
        for precision in [p for p in args.precisions.split(",") if p]:
            rows.append(run_case(name, precision, root / f"{name}-{precision}", args))
            print(f"done {rows[-1]['case']} in {rows[-1]['build_s']:.0f} s", file=sys.stderr)
    print(table(rows))
    (root / "smoke.json").write_text(json.dumps(rows, indent=1, default=str))
    print(f"artifacts, layers.json and smoke.json in {root}", file=sys.stderr)
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
