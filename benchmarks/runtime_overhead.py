#!/usr/bin/env python
"""What vit-edge's OpenVINO runtime adds per call over OpenVINO's own ``benchmark_app`` (issue 18 item 2).

    python benchmarks/runtime_overhead.py [ARTIFACT] [--rounds 5] [--seconds 5]

Without ARTIFACT, the trained imagenette fixture (tests/models/imagenette_vit.py, 64x64, 4 blocks: a model so
small that per-call work shows) is converted to OpenVINO INT8 in a temporary folder. Then, alternating for
``--rounds`` rounds, each ``--seconds`` long:

- ``benchmark_app`` on the artifact's model.xml: throughput hint at batch 8 (img/s), latency hint at batch 1
  (median ms), each in a fresh process, as OpenVINO measures a model;
- vit-edge's runtime in a fresh process: ``runtimes.load(ARTIFACT, hint=...)``; batch 8 under the throughput
  hint: ``run_many`` over a stream of the same preprocessed batch, several in flight (img/s), as benchmark_app
  keeps its requests busy; batch 1 under the latency hint: ``run(batch)`` called back to back (median ms per
  call), what an application calling ``predict`` one image at a time gets.

Prints medians and the runtime's overhead (positive = slower than benchmark_app) as one JSON object.

Across fresh processes this machine's batch-1 latency of a sub-millisecond model moves by up to 2x (thread
placement), for benchmark_app as for us, which drowns a 5% question. So the same comparison is also made
inside one process (``same_process``), alternating blocks on the same compiled model: vit-edge's ``run`` against
a bare ``InferRequest.infer`` at batch 1 (median per call), and ``run_many`` against OpenVINO's own
``AsyncInferQueue`` with the plugin's optimal number of requests (what benchmark_app drives) at batch 8;
the overhead is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openvino_routes  # noqa: E402  (its benchmark_app runner)

REPO = Path(__file__).resolve().parents[1]
DATA = next((p / "shared" / "data" / "imagenette-64" for p in REPO.parents
             if (p / "shared" / "data" / "imagenette-64").is_dir()), None)

_TIMERS = """
import json, statistics, sys, time
import numpy as np
from vit_edge import runtimes
def median_call_ms(call, end):
    calls = []
    while time.perf_counter() < end:
        t = time.perf_counter(); call(); calls.append(time.perf_counter() - t)
    return 1000 * statistics.median(calls)
def run_many_fps(rt, x, end):
    def batches():
        while time.perf_counter() < end:
            yield x
    started, done = time.perf_counter(), 0
    for _ in rt.run_many(batches()):
        done += 1
    return len(x) * done / (time.perf_counter() - started)
"""

_RUNTIME = _TIMERS + """
artifact, hint, batch, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rt = runtimes.load(artifact, hint=hint)
h, w = rt.preprocess.input_size
x = np.random.default_rng(0).standard_normal((batch, rt.preprocess.channels, h, w)).astype(np.float32)
for _ in range(20):
    rt.run(x)
if hint == "throughput":  # a stream of batches, several in flight: run_many, as an application streaming images
    print(json.dumps({"fps": run_many_fps(rt, x, time.perf_counter() + seconds)}))
else:
    print(json.dumps({"median_ms": median_call_ms(lambda: rt.run(x), time.perf_counter() + seconds)}))
"""


_SAME_PROCESS = _TIMERS + """
import openvino as ov
artifact, rounds, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
result = {}
for hint, batch in (("latency", 1), ("throughput", 8)):
    rt = runtimes.load(artifact, hint=hint)
    h, w = rt.preprocess.input_size
    x = np.random.default_rng(0).standard_normal((batch, rt.preprocess.channels, h, w)).astype(np.float32)
    list(rt.run_many([x, x]))  # compiles the model for this whole batch, as both paths below run it
    compiled = rt._compiled[tuple(x.shape)].compiled  # the very model vit-edge runs (static shape)
    if hint == "latency":
        request = compiled.create_infer_request()
        def bare(end):
            return median_call_ms(lambda: request.infer({0: x}, share_inputs=True, share_outputs=True), end)
        def ours(end):
            return median_call_ms(lambda: rt.run(x), end)
    else:
        queue = ov.AsyncInferQueue(compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        def bare(end):
            started, done = time.perf_counter(), 0
            while time.perf_counter() < end:
                queue.start_async({0: x}, share_inputs=True); done += 1
            queue.wait_all()
            return batch * done / (time.perf_counter() - started)
        def ours(end):
            return run_many_fps(rt, x, end)
    sides = {"bare": [], "runtime": []}
    for r in range(rounds):
        for name in (("bare", "runtime") if r % 2 == 0 else ("runtime", "bare")):
            sides[name].append((bare if name == "bare" else ours)(time.perf_counter() + seconds))
    ratios = [(o / b - 1) if hint == "latency" else (b / o - 1) for o, b in zip(sides["runtime"], sides["bare"])]
    result[f"b{batch}"] = {"unit": "median ms" if hint == "latency" else "img/s",
                           "bare": round(statistics.median(sides["bare"]), 4),
                           "runtime": round(statistics.median(sides["runtime"]), 4),
                           "overhead": round(statistics.median(ratios), 4),
                           "per_round_overhead": [round(q, 4) for q in ratios]}
print(json.dumps(result))
"""


def same_process(artifact: Path, rounds: int, seconds: float) -> dict:
    out = subprocess.run([sys.executable, "-c", _SAME_PROCESS, str(artifact), str(rounds), str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def benchmark_app(xml: Path, hint: str, batch: int, seconds: float, shape: tuple) -> dict:
    """benchmark_app's throughput (FPS) or median latency (ms) for ``xml`` at ``batch``."""
    value = openvino_routes.bench_once(str(xml), [batch, *shape], hint, int(seconds))
    return {"fps": value} if hint == "throughput" else {"median_ms": value}


def runtime(artifact: Path, hint: str, batch: int, seconds: float) -> dict:
    out = subprocess.run([sys.executable, "-c", _RUNTIME, str(artifact), hint, str(batch), str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def convert_fixture(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "vit_edge", "convert", f"{REPO}/tests/models/imagenette_vit.py:build",
                    "--target", "openvino", "--precision", "int8", "--calib", str(DATA / "train"),
                    "--calib-size", "300", "--out", str(out)], check=True, capture_output=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    from vit_edge.artifact import read_manifest

    with tempfile.TemporaryDirectory() as tmp:
        artifact = Path(args.artifact) if args.artifact else convert_fixture(Path(tmp) / "int8")
        manifest = read_manifest(artifact)
        xml = artifact / manifest.artifact
        pre = manifest.preprocess
        shape = (pre.channels, *pre.input_size)
        runs = {k: [] for k in ("app_b8", "rt_b8", "app_b1", "rt_b1")}
        for _ in range(args.rounds):  # alternated: the machine's noise hits both sides alike
            runs["app_b8"].append(benchmark_app(xml, "throughput", 8, args.seconds, shape)["fps"])
            runs["rt_b8"].append(runtime(artifact, "throughput", 8, args.seconds)["fps"])
            runs["app_b1"].append(benchmark_app(xml, "latency", 1, args.seconds, shape)["median_ms"])
            runs["rt_b1"].append(runtime(artifact, "latency", 1, args.seconds)["median_ms"])
        med = {k: statistics.median(v) for k, v in runs.items()}
        result = {"artifact": str(artifact), "rounds": args.rounds, "seconds": args.seconds,
                  "benchmark_app_b8_fps": round(med["app_b8"], 1), "runtime_b8_fps": round(med["rt_b8"], 1),
                  "overhead_b8": round(med["app_b8"] / med["rt_b8"] - 1, 4),
                  "benchmark_app_b1_ms": round(med["app_b1"], 4), "runtime_b1_ms": round(med["rt_b1"], 4),
                  "overhead_b1": round(med["rt_b1"] / med["app_b1"] - 1, 4),
                  "per_round": {k: [round(x, 3) for x in v] for k, v in runs.items()},
                  "same_process": same_process(artifact, 2 * args.rounds, args.seconds / 2)}
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
