"""Endurance: one Runtime shared by N threads for many predictions; checks every result against a
sequential run of the same input and reports throughput and process RSS growth.

    python benchmarks/endurance.py [ARTIFACT] --threads 8 --predictions 10000

Without ARTIFACT the demo model is converted to FP32 ONNX in a temporary folder first. Prints one JSON
object; exits 1 when a result differs from the sequential one or RSS grew by 5% or more after warm-up.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from vit_edge import runtimes

MAX_RSS_GROWTH = 0.05
DISTINCT_INPUTS = 64


def _malloc_trim():
    """glibc's malloc_trim, or a no-op elsewhere."""
    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name) if name else None
    return getattr(libc, "malloc_trim", lambda pad: 0)


_trim = _malloc_trim()


def live_rss(process) -> int:
    """RSS after handing freed heap pages back to the OS. Eight threads allocating batches leave glibc
    arenas holding freed memory (OpenVINO: +5-7% early on, then flat); a leak is memory still in use,
    which trimming cannot return, so this measures what matters."""
    gc.collect()
    _trim(0)
    return process.memory_info().rss


def make_inputs(runtime, count: int, seed: int = 0) -> list:
    """Batch-1 inputs: half preprocessed NCHW float batches, half raw HWC uint8 images (so the shared
    preprocessing runs concurrently too)."""
    rng = np.random.default_rng(seed)
    h, w = runtime.preprocess.input_size
    inputs = []
    for i in range(count):
        if i % 2:
            inputs.append(rng.integers(0, 256, (h + 7, w + 3, 3), dtype=np.uint8))
        else:
            inputs.append(rng.standard_normal((1, 3, h, w)).astype(np.float32))
    return inputs


def endurance(runtime, *, threads: int, predictions: int, warmup: int = 1000) -> dict:
    """Run ``predictions`` batch-1 predictions on ``threads`` threads; compare each with a sequential run."""
    inputs = make_inputs(runtime, DISTINCT_INPUTS)
    expected = [runtime.predict(x) for x in inputs]  # sequential reference, one input at a time
    process = psutil.Process()
    lock = threading.Lock()
    state = {"next": 0, "done": 0, "mismatches": 0, "rss_after_warmup": None}

    def worker() -> None:
        # Threads pull work from a shared counter: no per-prediction futures pile up while the run goes on
        # (queued futures would read as memory growth).
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= predictions:
                return
            k = i % DISTINCT_INPUTS
            same = np.array_equal(runtime.predict(inputs[k]), expected[k])
            with lock:
                state["done"] += 1
                state["mismatches"] += not same
                if state["done"] == warmup:
                    state["rss_after_warmup"] = live_rss(process)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    seconds = time.perf_counter() - started
    rss_end = live_rss(process)
    rss_warm = state["rss_after_warmup"] or rss_end
    return {"artifact": runtime.name, "target": runtime.target, "precision": runtime.precision,
            "threads": threads, "predictions": predictions, "seconds": round(seconds, 2),
            "predictions_per_second": round(predictions / seconds, 1), "mismatches": state["mismatches"],
            "rss_after_warmup_mib": round(rss_warm / 2**20, 1), "rss_end_mib": round(rss_end / 2**20, 1),
            "rss_growth": round(rss_end / rss_warm - 1, 4),
            "modules": sorted(m for m in ("torch", "onnxruntime", "openvino") if m in sys.modules)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?", help="artifact file or --out folder (default: the demo, as ONNX)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--predictions", type=int, default=10_000)
    parser.add_argument("--backend-threads", type=int, default=None,
                        help="threads each inference may use inside the backend (default: the backend's)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact
        if artifact is None:
            from vit_edge.convert import convert

            artifact = convert(None, out=Path(tmp) / "demo-onnx").out
        runtime = runtimes.load(artifact, threads=args.backend_threads)
        result = endurance(runtime, threads=args.threads, predictions=args.predictions)
        result["backend_threads"] = args.backend_threads
    print(json.dumps(result, indent=2))
    return int(result["mismatches"] > 0 or result["rss_growth"] >= MAX_RSS_GROWTH)


if __name__ == "__main__":
    sys.exit(main())
