#!/usr/bin/env python
"""vit-edge's OpenVINO INT8 against optimum-intel's, from the same Hugging Face models and calibration images.

    python benchmarks/vs_optimum.py [--models fixture-hf,vit-s-hf] [--rounds 3] [--seconds 4] [--work DIR]
                                    [--doc docs/BENCHMARKS.md] [--optimum-venv DIR]

optimum-intel pins its own transformers, so it runs in a virtual environment of its own (``--optimum-venv``,
default benchmarks/.optimum-venv, made on the first run): a ``.pth`` file puts this environment's site-packages
behind its own, so torch, OpenVINO and NNCF are shared and only optimum-intel, its pins and ``datasets`` are
installed there. When that install fails the script prints why on one line and a ``skipped`` JSON, and exits 0.

For each model both INT8 IRs are built from the same HF directory and calibrated on the same images (the first
N decodable images of a seeded shuffle of the calibration folder: the ones vit-edge samples, checked against the
content hashes its manifest records). vit-edge: one ``vit-edge convert hf:DIR --target openvino --precision
int8 --calib DIR --calib-size N --validate VAL`` process (its default recipe search, and the validation it
runs). optimum-intel: benchmarks/optimum_int8.py in its environment, as its documentation shows
(``OVModelForImageClassification.from_pretrained(dir, export=True)``, the images through the model's own image
processor into a ``datasets.Dataset``, ``OVQuantizer.quantize`` with ``OVQuantizationConfig(num_samples=N)``,
optimum's defaults otherwise). Convert time is the wall time of that one process, Python start included.

Fidelity: both IRs go through the same ``vit_edge.validate.validate_artifact`` on the same validation images
(the same seeded sample), against torch FP32 of the same HF model (top-1 agreement, mean cosine); optimum's IR
records no preprocessing and gets the HF directory's (``--preprocess-from``). Both run their floating-point
layers at the CPU plugin's default inference precision, as benchmark_app does (``vit-edge validate`` would run a
manifest-less IR in f32). Speed: ``benchmark_app`` at batch 8 with the throughput hint (FPS) and at batch 1 with
the latency hint (median ms), static shapes, alternated rounds in a rotating order, medians reported.

Models: ``fixture-hf`` = the trained imagenette ViT as a ``ViTForImageClassification`` directory
(tests/models/imagenette_hf.py; 64x64; calibration on imagenette-64/train, validation on a 400-image sample of
imagenette-64/val), ``vit-s-hf`` = a ViT-S/16-sized ``ViTForImageClassification`` (224x224, 1000 classes)
with random weights, written here (calibrated and validated on the imagenet-samples photos: fidelity vs FP32
only). Nothing is downloaded at run time. ``--work DIR`` keeps the models and IRs and reuses them on a rerun
(convert times too). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import openvino_routes  # noqa: E402  (its benchmark_app runner, op counts and doc writer)

ROOT = openvino_routes.ROOT
VIT_EDGE = str(Path(sys.executable).parent / "vit-edge")
HELPER = ROOT / "benchmarks/optimum_int8.py"
OPTIMUM_REQUIREMENTS = ("optimum-intel==2.2.0", "datasets")
MODELS = {
    "fixture-hf": {**openvino_routes.MODELS["fixture-hf"], "dir": "imagenette-hf"},
    "vit-s-hf": {**openvino_routes.MODELS["vit-s"], "spec": "hf:{work}/vit-s-hf", "dir": "vit-s-hf"},
}
DEFAULT_MODELS = "fixture-hf,vit-s-hf"
MARK_BEGIN, MARK_END = "<!-- vs_optimum.py: begin -->", "<!-- vs_optimum.py: end -->"


class Skip(Exception):
    """optimum-intel cannot be used here; the message says why."""


def optimum_python(venv: Path) -> Path:
    """The optimum venv's python, making the venv (and installing optimum-intel in it) when it is missing."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import datasets; from optimum.intel import OVQuantizer"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if made.returncode:
            raise Skip(f"cannot make a venv at {venv}: {_last_line(made.stderr)}")
        site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              capture_output=True, text=True, check=True).stdout.strip()
        # Appended after the venv's own site-packages: what is installed there (optimum's pins) shadows ours.
        (Path(site) / "zz_vit_edge_main_venv.pth").write_text(
            f"import site; site.addsitedir({sysconfig.get_path('purelib')!r})\n")
    print(f"installing {' '.join(OPTIMUM_REQUIREMENTS)} into {venv}", file=sys.stderr, flush=True)
    try:
        pip = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                              *OPTIMUM_REQUIREMENTS], capture_output=True, text=True, timeout=1800)
    except subprocess.TimeoutExpired:
        raise Skip("pip install of optimum-intel ran past 30 minutes") from None
    if pip.returncode:
        raise Skip(f"pip install {' '.join(OPTIMUM_REQUIREMENTS)} failed: {_last_line(pip.stderr or pip.stdout)}")
    done = subprocess.run(check, capture_output=True, text=True)
    if done.returncode:
        raise Skip(f"optimum-intel installed but does not import: {_last_line(done.stderr)}")
    return python


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def write_model(key: str, directory: Path) -> None:
    """The model's HF directory (config, weights, image processor), built here: nothing is downloaded."""
    if (directory / "config.json").exists():
        return
    if key == "fixture-hf":
        sys.path.insert(0, str(ROOT / "tests/models"))
        import imagenette_hf

        imagenette_hf.write(directory)
        return
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(image_size=224, patch_size=16, hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                       intermediate_size=1536, num_labels=1000)
    ViTForImageClassification(config).eval().save_pretrained(directory)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(directory)


def calibration_files(calib: str, size: int, seed: int = 0) -> tuple:
    """The files vit-edge calibrates on (vit_edge.calibration.load_calibration's sampling: the first ``size``
    decodable images of a seeded shuffle) and their content hashes."""
    import numpy as np

    from vit_edge.data import load_images
    from vit_edge.errors import DataError
    from vit_edge.preprocess import open_image

    images = load_images(calib)
    files, digests = [], []
    for index in np.random.default_rng(seed).permutation(len(images)):
        try:
            open_image(images.items[int(index)])
        except DataError:
            continue
        files.append(str(images.items[int(index)]))
        digests.append(images.digest(int(index)))
        if len(files) == size:
            break
    return files, digests


def timed(cmd: list, log: Path, env: dict | None = None) -> tuple:
    """Run ``cmd`` with its output in ``log``; (return code, wall seconds)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env=env).returncode
    return code, round(time.perf_counter() - started, 2)


def build_vit_edge(model: dict, work: Path) -> dict:
    out = work / model["key"] / "vit-edge-int8"
    record = out.with_suffix(".convert.json")
    if not (record.exists() and (out / "manifest.json").exists()):
        cmd = [VIT_EDGE, "convert", model["spec"], "--target", "openvino", "--precision", "int8",
               "--calib", model["calib"], "--calib-size", str(model["calib_size"]), "--validate", model["val"],
               *(["--validate-limit", str(model["limit"])] if model["limit"] else []), "--out", str(out), "--force"]
        print(f"converting {model['key']} with vit-edge", file=sys.stderr, flush=True)
        code, seconds = timed(cmd, out.with_suffix(".log"))
        # exit 1: built, but its own parity gate failed (random weights); the IR is kept and compared all the same
        if code not in (0, 1) or not (out / "manifest.json").exists():
            raise RuntimeError(f"vit-edge convert failed (exit {code}); see {out.with_suffix('.log')}")
        record.write_text(json.dumps({"command": cmd, "exit_code": code, "wall_seconds": seconds}, indent=1))
    done = json.loads(record.read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    quantization = manifest.get("quantization") or {}
    return {"tool": "vit-edge", "xml": str(out / "model.xml"), "convert_wall_seconds": done["wall_seconds"],
            "convert_exit_code": done["exit_code"], "recipe": quantization.get("recipe_search", {}).get("chosen"),
            "calibration_sha256": (quantization.get("calibration") or {}).get("images_sha256") or []}


def build_optimum(model: dict, work: Path, python: Path) -> dict:
    out = work / model["key"] / "optimum-int8"
    record = out.with_suffix(".convert.json")
    files = work / model["key"] / "calibration-files.json"
    if not (record.exists() and (out / "openvino_model.xml").exists()):
        count = len(json.loads(files.read_text()))
        cmd = [str(python), str(HELPER), str(work / model["dir"]), str(files), str(count), str(out)]
        print(f"converting {model['key']} with optimum-intel", file=sys.stderr, flush=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        code, seconds = timed(cmd, out.with_suffix(".log"), env)
        if code or not (out / "openvino_model.xml").exists():
            raise RuntimeError(f"optimum-intel's quantization failed (exit {code}); see {out.with_suffix('.log')}")
        record.write_text(json.dumps({"command": cmd, "exit_code": code, "wall_seconds": seconds}, indent=1))
    info = json.loads((out / "optimum_int8.json").read_text())
    return {"tool": "optimum-intel", "xml": str(out / "openvino_model.xml"),
            "convert_wall_seconds": json.loads(record.read_text())["wall_seconds"],
            "convert_steps_seconds": info["steps_seconds"], "versions": info["versions"],
            "quantization_config": info["quantization_config"]}


def fidelity(row: dict, model: dict, precision: str) -> None:
    """Top-1 agreement and cosine of the row's IR against torch FP32 of the HF model, on the validation sample."""
    from vit_edge.runtimes.given_preprocess import for_artifact, labels_of
    from vit_edge.validate import validate_artifact

    options = {"inference_precision": precision}
    if row["tool"] != "vit-edge":  # another tool's IR records no preprocessing: the HF directory's
        options.update(preprocess=for_artifact(row["xml"], {}, model["spec"]), labels=labels_of(model["spec"]))
    candidate = row["xml"] if row["tool"] != "vit-edge" else str(Path(row["xml"]).parent)
    report = validate_artifact(candidate, data=model["val"], reference=model["spec"], limit=model["limit"],
                               candidate_options=options, cache=True, progress=False).summary()
    row.update(samples=report["samples"], top1_agreement=report["top1_agreement"],
               mean_cosine=report["mean_cosine"], inference_precision=report["candidate"].get("inference_precision"),
               top1=[report["reference"].get("top1"), report["candidate"].get("top1")])


def markdown(result: dict) -> str:
    """The table for docs/BENCHMARKS.md: vit-edge's speed relative to optimum-intel's on the same model."""
    m, opt = result["machine"], result["optimum"]
    models = "" if result["models"] == DEFAULT_MODELS else f" --models {result['models']}"
    lines = [MARK_BEGIN, "## vit-edge vs optimum-intel: OpenVINO INT8 of Hugging Face ViTs", "",
             f"Generated by `python benchmarks/vs_optimum.py{models} --rounds {result['rounds']} --seconds "
             f"{result['seconds_per_run']} --doc docs/BENCHMARKS.md` (optimum-intel {opt['optimum-intel']} with "
             f"transformers {opt['transformers']} in its own venv, vit-edge with transformers {m['transformers']}; "
             f"NNCF {m['nncf']}, OpenVINO {m['openvino']}, {m['cpus']} CPUs; load average "
             f"{m['load_before'][0]:.1f} before, {m['load_after'][0]:.1f} after; rows alternated). Both IRs come "
             "from the same HF directory and the same calibration images (300 of imagenette-64/train; for ViT-S "
             "the 120 decodable imagenet-samples photos). optimum-intel as its docs show "
             "(`OVModelForImageClassification.from_pretrained(dir, export=True)`, `OVQuantizer.quantize` with "
             "`OVQuantizationConfig(num_samples=N)`, its defaults otherwise); vit-edge by `vit-edge convert hf:DIR "
             "--target openvino --precision int8 --calib DIR --validate VAL` (its default recipe search). "
             "Convert: wall seconds of that one process (vit-edge's includes its recipe search and its validation "
             "run; optimum's is Python start, load and export, quantize, save). Agreement: top-1 against torch FP32 "
             "of the same HF model on the validation images (a 400-image sample of imagenette-64/val; for ViT-S the "
             f"calibration photos, random weights: fidelity only), float layers at {result['inference_precision']} "
             "as benchmark_app runs them.", "",
             "| model | tool | SDPA ops | FakeQuantize | top-1 agreement | mean cosine | batch 8 FPS (throughput "
             "hint) | vs optimum | batch 1 median ms (latency hint) | vs optimum | convert s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {r["model"]: r for r in result["rows"] if r["tool"] == "optimum-intel"}
    for r in result["rows"]:
        b, ops = base.get(r["model"], r), r["ops"]
        agreement = "-" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.2f}%"
        lines.append(f"| {r['model']} | {r['tool']} | {ops['ScaledDotProductAttention']} | {ops['FakeQuantize']} "
                     f"| {agreement} ({r['samples']}) | {r['mean_cosine']:.5f} | {r['fps_b8']:.1f} "
                     f"| {r['fps_b8'] / b['fps_b8']:.2f}x | {r['latency_b1_ms']:.3f} "
                     f"| {b['latency_b1_ms'] / r['latency_b1_ms']:.2f}x | {r['convert_wall_seconds']:.1f} |")
    return "\n".join(lines + ["", MARK_END])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT_MODELS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--work", default=None, help="keep the models and IRs here (reused on a rerun)")
    parser.add_argument("--optimum-venv", type=Path, default=ROOT / "benchmarks/.optimum-venv",
                        help="optimum-intel's virtual environment (made when missing)")
    parser.add_argument("--doc", type=Path, help="also write the table into this Markdown file (docs/BENCHMARKS.md)")
    parser.add_argument("--from-json", type=Path, help="only render --doc from an earlier run's printed JSON")
    args = parser.parse_args(argv)
    if args.from_json:
        openvino_routes.write_doc(args.doc, markdown(json.loads(args.from_json.read_text())), MARK_BEGIN, MARK_END)
        return 0
    try:
        python = optimum_python(args.optimum_venv.resolve())
    except Skip as why:
        print(f"skipped: {why}", file=sys.stderr)
        print(json.dumps({"skipped": str(why)}))
        return 0
    import nncf
    import openvino as ov
    import transformers

    precision = ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT").to_string()
    work = Path(args.work or tempfile.mkdtemp(prefix="vs-optimum-")).resolve()
    rows = []
    for key in args.models.split(","):
        model = {**MODELS[key], "key": key}
        model["spec"] = model["spec"].format(work=work)
        write_model(key, work / model["dir"])
        (work / key).mkdir(parents=True, exist_ok=True)
        files, digests = calibration_files(model["calib"], model["calib_size"])
        (work / key / "calibration-files.json").write_text(json.dumps(files, indent=0))
        for side in (build_vit_edge(model, work), build_optimum(model, work, python)):
            row = {"model": key, "variant": side["tool"], "size": model["size"], **side,
                   "ops": openvino_routes.op_counts(side["xml"]), "calibration_images": len(files)}
            fidelity(row, model, precision)
            rows.append(row)
        same = set(digests) <= set(rows[-2].pop("calibration_sha256"))
        for row in rows[-2:]:
            row["same_calibration_images"] = same
    load_before = os.getloadavg()
    openvino_routes.speed(rows, args.rounds, args.seconds)
    optimum_versions = next(r["versions"] for r in rows if r["tool"] == "optimum-intel")
    result = {"machine": {"cpus": os.cpu_count(), "load_before": load_before, "load_after": os.getloadavg(),
                          "openvino": ov.__version__, "nncf": nncf.__version__,
                          "transformers": transformers.__version__},
              "optimum": optimum_versions, "optimum_venv": str(args.optimum_venv), "inference_precision": precision,
              "models": args.models, "rounds": args.rounds, "seconds_per_run": args.seconds, "work": str(work),
              "rows": rows}
    print(json.dumps(result, indent=1))
    if args.doc:
        openvino_routes.write_doc(args.doc, markdown(result), MARK_BEGIN, MARK_END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
