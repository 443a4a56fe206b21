#!/usr/bin/env python
"""How far apart the OpenVINO runtime's static-shape and dynamic compiles put the same input's logits.

The runtime compiles the first MAX_STATIC_SHAPES batch shapes it sees static and runs later shapes on the
dynamic model (vit_edge/runtimes/openvino.py says why: the static compile is faster). The two are different
kernels, so one input can get slightly different logits depending on which shapes ran before.

    python benchmarks/openvino_static_vs_dynamic.py [ARTIFACT] [--batches 4,16,32,64,128]

Without ARTIFACT the demo model is converted to OpenVINO INT8 (calibrated on digits:train) in a temporary
folder. Input: the first images of digits:test (or of --data). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np


def static_vs_dynamic(artifact, batch: np.ndarray, sizes) -> dict:
    """Per batch size b: logits of ``batch[:b]`` from a runtime that compiled b static against one whose
    static slots were already taken by other shapes (so b runs on the dynamic model)."""
    from vit_edge import runtimes
    from vit_edge.runtimes.openvino import MAX_STATIC_SHAPES

    rows = []
    for b in sizes:
        with runtimes.load(artifact, cache_dir="off") as fresh:
            static = fresh.predict(batch[:b])
        with runtimes.load(artifact, cache_dir="off") as busy:
            for other in (2, 3, 5, 6, 7)[:MAX_STATIC_SHAPES]:  # batch 1 is compiled at load time
                if other != b:
                    busy.predict(batch[:other])
            dynamic = busy.predict(batch[:b])
            assert [b, *batch.shape[1:]] not in busy.info()["static_shapes"]
        rows.append({"batch": int(b), "max_abs_diff": float(np.abs(static - dynamic).max()),
                     "top1_differs": int((static.argmax(1) != dynamic.argmax(1)).sum()),
                     "max_abs_logit": float(np.abs(static).max())})
    return {"rows": rows, "max_abs_diff": max(r["max_abs_diff"] for r in rows),
            "top1_differs": sum(r["top1_differs"] for r in rows)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", nargs="?")
    parser.add_argument("--data", default="digits:test")
    parser.add_argument("--batches", default="4,16,32,64,128")
    args = parser.parse_args(argv)
    from vit_edge import runtimes
    from vit_edge.data import load_images

    sizes = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        artifact = args.artifact
        if artifact is None:
            from vit_edge.convert import convert

            artifact = Path(tmp) / "demo-openvino-int8"
            convert(None, target="openvino", precision="int8", calib="digits:train", out=artifact)
        with runtimes.load(artifact, cache_dir="off") as runtime:
            batch = next(load_images(args.data).indexed_batches(runtime.preprocess, batch_size=max(sizes)))[0]
        result = static_vs_dynamic(artifact, batch, sizes)
    print(json.dumps({"artifact": str(args.artifact or "demo OpenVINO INT8"), **result}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
