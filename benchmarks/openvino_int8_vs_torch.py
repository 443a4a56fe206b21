"""OpenVINO INT8 (vit-edge) vs PyTorch eager FP32 throughput on ViT-S/16, side by side in one process.

    python benchmarks/openvino_int8_vs_torch.py [--threads 2] [--batch 8] [--rounds 15] [--onnx-path]

Converts ``timm:vit_small_patch16_224`` (random weights; vit-edge re-draws the head, seeded) to an OpenVINO
INT8 IR calibrated on the shared ImageNet sample photos, then times the IR and the torch module on the
same batch of real photos, alternating the two so that machine noise hits both alike, and reports medians.
``--onnx-path`` also times the other INT8 route (NNCF on the ONNX, then ``ov.convert_model`` of the Q/DQ
graph) so the choice of the OpenVINO-native route can be re-checked.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from shared_data import shared_data  # noqa: E402

SAMPLES = shared_data("imagenet-samples")
SAMPLES = SAMPLES if SAMPLES.is_dir() else None
MODEL = "timm:vit_small_patch16_224"


def timed(fn, batch) -> float:
    start = time.perf_counter()
    fn(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calib-size", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=None, help="Keep artifacts here (reused if present).")
    parser.add_argument("--onnx-path", action="store_true", help="Also time the ONNX Q/DQ -> OpenVINO route.")
    args = parser.parse_args()
    if SAMPLES is None:
        sys.exit("error: shared/data/imagenet-samples not found")

    import openvino as ov
    import torch

    from vit_edge import runtimes
    from vit_edge.convert import convert
    from vit_edge.data import load_images
    from vit_edge.sources import load_model

    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="vit-edge-bench-"))
    loaded = load_model(MODEL, seed=0)
    ir = work / "ov-int8"
    if not ir.exists():
        t = time.time()
        convert(loaded, target="openvino", precision="int8", out=ir, calib=str(SAMPLES),
                calib_size=args.calib_size)
        print(f"converted OpenVINO INT8 in {time.time() - t:.0f} s -> {ir}")
    runners = {"pytorch eager fp32": lambda b: loaded.module(torch.from_numpy(b))}
    ov_int8 = runtimes.load(ir, threads=args.threads, hint="latency")
    runners["openvino int8 (vit-edge)"] = ov_int8.run
    if args.onnx_path:
        qdq = work / "onnx-int8"
        if not qdq.exists():
            t = time.time()
            convert(loaded, target="onnx", precision="int8", out=qdq, calib=str(SAMPLES),
                    calib_size=args.calib_size)
            print(f"converted ONNX INT8 (Q/DQ) in {time.time() - t:.0f} s -> {qdq}")
        core = ov.Core()
        compiled = core.compile_model(ov.convert_model(str(qdq / "model.onnx")), "CPU",
                                      {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads})
        runners["openvino int8 via onnx q/dq"] = lambda b: compiled(b)[0]

    images = load_images(str(SAMPLES))
    batch = next(images.batches(loaded.preprocess, batch_size=args.batch))[0]
    everything = np.concatenate([b for b, _ in images.batches(loaded.preprocess, batch_size=32)])
    with torch.inference_mode():
        reference = loaded.module(torch.from_numpy(everything)).numpy()
        for fn in runners.values():  # warm-up: first calls compile kernels and allocate
            for _ in range(3):
                fn(batch)
        seconds = {name: [] for name in runners}
        for _ in range(args.rounds):  # alternate so that noise lands on every runner alike
            for name, fn in runners.items():
                seconds[name].append(timed(fn, batch))

    torch_ips = args.batch / statistics.median(seconds["pytorch eager fp32"])
    print(f"\n{MODEL}, batch {args.batch}, {args.threads} threads, {args.rounds} alternated rounds, "
          f"OpenVINO {ov.__version__}, torch {torch.__version__}, inference precision of the IR: "
          f"{ov_int8.info()['inference_precision']}")
    print(f"{'runner':30}{'median img/s':>14}{'min..max img/s':>20}{'vs torch':>10}{'top-1 agree':>13}")
    for name, fn in runners.items():
        s = seconds[name]
        ips = args.batch / statistics.median(s)
        with torch.inference_mode():
            agree = float((np.asarray(fn(everything)).argmax(1) == reference.argmax(1)).mean())
        print(f"{name:30}{ips:14.1f}{args.batch / max(s):>10.1f}..{args.batch / min(s):<8.1f}"
              f"{ips / torch_ips:9.2f}x{100 * agree:12.1f}%")
    print(f"(top-1 agreement with torch on {len(everything)} photos; random-weight model, so agreement is "
          "the only accuracy signal)")


if __name__ == "__main__":
    main()
