#!/usr/bin/env python
"""What checking the recorded sha256 of every loaded file costs a load (issue 16 item 6), on ViT-S.

    python benchmarks/load_hash_cost.py [ARTIFACT...] [--repeats 7]

Without ARTIFACT, timm's ViT-S/16 (random weights: only the file sizes matter here) is converted to FP32 ONNX
and FP16 OpenVINO IR in a temporary folder. Per artifact, alternating in one process: ``runtimes.load`` of the
folder (checks every file) and of the same files with the check skipped, plus ``verify_files`` on its own.
The page cache is warm for all of them (the files were just read), as for any load after the first. Prints
medians as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure(folder: Path, repeats: int) -> dict:
    from vit_edge import runtimes
    from vit_edge.artifact import read_manifest
    from vit_edge.runtimes import _artifact
    from vit_edge.runtimes.trust import loaded_files, verify_files

    manifest = read_manifest(folder)
    file = folder / manifest.artifact
    times = {"load_checked": [], "load_unchecked": [], "verify": []}
    extra = {"cache_dir": False} if file.suffix == ".xml" else {}  # compile each time, as a first load does
    for _ in range(repeats):
        started = time.perf_counter()
        runtimes.load(folder, **extra).close()
        times["load_checked"].append(time.perf_counter() - started)
        started = time.perf_counter()
        _artifact(file, manifest.target, manifest, None, dict(extra), verify=False).close()
        times["load_unchecked"].append(time.perf_counter() - started)
        started = time.perf_counter()
        verify_files(file, manifest)
        times["verify"].append(time.perf_counter() - started)
    medians = {k: round(1000 * statistics.median(v), 1) for k, v in times.items()}
    size = sum((folder / n).stat().st_size for n in loaded_files(file, manifest))
    return {"artifact": str(folder), "bytes_hashed": size, **{f"{k}_ms": v for k, v in medians.items()},
            "verify_share_of_load": round(medians["verify"] / medians["load_checked"], 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="*")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folders = [Path(a) for a in args.artifacts]
        if not folders:
            for target, precision in (("onnx", "fp32"), ("openvino", "fp16")):
                out = Path(tmp) / f"vit-s-{target}-{precision}"
                subprocess.run([sys.executable, "-m", "vit_edge", "convert", "timm:vit_small_patch16_224",
                                "--target", target, "--precision", precision, "--out", str(out)],
                               check=True, capture_output=True)
                folders.append(out)
        print(json.dumps([measure(f, args.repeats) for f in folders], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
