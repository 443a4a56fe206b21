#!/usr/bin/env python
"""Peak RSS of ``vit-edge predict`` on many images vs few: it streams batches, so memory must not grow with
the number of images (issue 16 item 8: 500 ViT-Ti images in one batch peaked at 2.6 GB).

    python benchmarks/predict_memory.py [ARTIFACT] [--few 10] [--many 500] [--batch-size 8] [--size 320x240]

Without ARTIFACT the demo model is converted to FP32 ONNX in a temporary folder first. Writes ``--many``
synthetic photos-sized PNGs to a temporary folder; each run is a fresh ``python -m vit_edge predict`` process
whose peak RSS is read with ``getrusage(RUSAGE_CHILDREN)`` in a wrapper process of its own. Also runs
``--many`` with ``--batch-size`` = ``--many`` (the old one-batch behaviour) for comparison. Prints one JSON
object; exits 1 when many/few exceeds ``--max-ratio`` (default 1.3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

_WRAPPER = """
import resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
if proc.returncode:
    sys.exit(proc.stderr[-2000:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
"""


def peak_rss_mb(artifact, images, batch_size: int) -> float:
    """Peak RSS (MB) of one fresh ``vit-edge predict ARTIFACT IMAGES... --batch-size B`` process."""
    command = [sys.executable, "-m", "vit_edge", "predict", str(artifact), *map(str, images),
               "--batch-size", str(batch_size)]
    out = subprocess.run([sys.executable, "-c", _WRAPPER, *command], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1]) / 1024


def write_images(folder: Path, n: int, size: tuple) -> list:
    """``n`` distinct PNGs of ``size`` (w, h): smooth colour fields with noise, roughly a photo's entropy."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    paths = []
    for i in range(n):
        base = np.stack([(xx * (i % 7 + 1) + yy) % 256, (yy * (i % 5 + 1)) % 256, (xx + i * 13) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"img{i:04d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?")
    parser.add_argument("--few", type=int, default=10)
    parser.add_argument("--many", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=8)  # predict's default
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--max-ratio", type=float, default=1.3)
    args = parser.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        artifact = args.artifact
        if artifact is None:
            from vit_edge.convert import convert

            artifact = tmp / "demo-onnx"
            convert(None, target="onnx", precision="fp32", out=artifact)
        (tmp / "images").mkdir()
        images = write_images(tmp / "images", args.many, size)
        few = peak_rss_mb(artifact, images[: args.few], args.batch_size)
        many = peak_rss_mb(artifact, [tmp / "images"], args.batch_size)  # the folder: predict lists it itself
        one_batch = peak_rss_mb(artifact, [tmp / "images"], args.many)
    result = {"artifact": str(args.artifact or "demo (FP32 ONNX)"), "image_size": list(size),
              "batch_size": args.batch_size, f"peak_rss_mb_{args.few}": round(few, 1),
              f"peak_rss_mb_{args.many}": round(many, 1), "ratio": round(many / few, 3),
              f"peak_rss_mb_{args.many}_in_one_batch": round(one_batch, 1)}
    print(json.dumps(result, indent=2))
    return 0 if many / few <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
