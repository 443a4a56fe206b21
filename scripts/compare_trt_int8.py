"""Compare INT8 ONNX files for TensorRT: rule checks, where the Q/DQ sit, and parity vs the FP32 reference.

Usage (from the repo root):
    PYTHONPATH=. python scripts/compare_trt_int8.py --reference MODEL_SPEC [--checkpoint CKPT] --data digits:test \
        --preprocess-from OUT_DIR/manifest.json A.onnx B.onnx ...

Each ONNX runs in ONNX Runtime (CPU) on the data; the reference is the torch model. Used for the NNCF vs
nvidia-modelopt comparison in docs/TENSORRT.md (modelopt itself runs in its own venv, see there).
"""

import argparse
import json

import onnx

from vit_edge import runtimes
from vit_edge.convert.stages import qdq
from vit_edge.convert.tensorrt import checks as trt_checks
from vit_edge.data import load_images
from vit_edge.preprocess import PreprocessConfig
from vit_edge.runtimes.onnx import ONNXRuntime
from vit_edge.sources import load_model
from vit_edge.validate import compare


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("onnx", nargs="+")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--checkpoint")
    ap.add_argument("--data", default="digits:test")
    ap.add_argument("--preprocess-from", required=True, help="a manifest.json with the model's preprocessing")
    args = ap.parse_args()
    cfg = PreprocessConfig.from_dict(json.load(open(args.preprocess_from))["preprocess"])
    loaded = load_model(args.reference, checkpoint=args.checkpoint)
    reference = runtimes.reference(loaded, preprocess=cfg)
    images = load_images(args.data, loaded.labels)
    print("| model | TensorRT rule problems | Q/DQ nodes | INT8 weight GEMMs | INT8 attention MatMuls | "
          "top-1 ref -> cand | agreement | mean cosine |")
    print("|---|---|---|---|---|---|---|---|")
    for path in args.onnx:
        model = onnx.load(path)
        problems = trt_checks.check_tensorrt_ready(model, "int8")
        s = qdq.summary(model)
        cand = ONNXRuntime(path, preprocess=cfg, labels=loaded.labels, name=path)
        r = compare(cand, reference, images, progress=False)
        print(f"| {path} | {len(problems)}{' (' + problems[0][:60] + ')' if problems else ''} | "
              f"{sum(s['qdq_nodes'].values())} | {s['int8_weight_gemms']} | {s['int8_attention_matmuls']} | "
              f"{100 * r.reference['top1']:.2f}% -> {100 * r.candidate['top1']:.2f}% | "
              f"{100 * r.top1_agreement:.2f}% | {r.mean_cosine:.5f} |")


if __name__ == "__main__":
    main()
