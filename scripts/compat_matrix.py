"""Run every ViT family through vit-edge and write docs/COMPATIBILITY.md.

    python scripts/compat_matrix.py                 # everything not yet in the results cache
    python scripts/compat_matrix.py --only swin     # cases whose id contains "swin"
    python scripts/compat_matrix.py --retry-failed  # re-run cells that failed last time
    python scripts/compat_matrix.py --render        # only rewrite the Markdown from the cache

Every case (tests/families.py) goes through ONNX FP32, OpenVINO FP32, ONNX INT8 (Q/DQ) and OpenVINO INT8,
using only vit-edge's public API: ``vit_edge.convert.convert`` makes the artifact, ``vit_edge.runtimes.load``
runs it, ``vit_edge.validate.compare`` measures it against the torch FP32 model on real photos. Each finished
cell is cached in docs/compat_results.json at once, so an interrupted run resumes where it stopped. Failures
are cells like any other: they stay in the matrix with their reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the case registry and the data finder live with the tests

import families  # noqa: E402
from shared_data import shared_data  # noqa: E402

PHOTOS = shared_data("imagenet-samples")
RESULTS = REPO / "docs" / "compat_results.json"
MARKDOWN = REPO / "docs" / "COMPATIBILITY.md"
COLUMNS = [("onnx", "fp32"), ("openvino", "fp32"), ("onnx", "int8"), ("openvino", "int8")]
FP32_MAX_REL_ERROR = 1e-4
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.99  # the default gate of `vit-edge validate` for features; shown for INT8 logits too


def priority(case) -> int:
    """One model per family first, then features / sizes / dynamic, then the rest: a partial run still
    covers every family."""
    special = case.family in ("features", "resolution", "dynamic size")
    return (0 if not special else 1) if case.ci else (2 if special else 3)


def cell_key(case, target, precision) -> str:
    return f"{case.id} | {target}/{precision}"


def photo_sets(work: Path, validate_count: int, calib_count: int) -> tuple[Path, Path]:
    """Disjoint folders of real photos: the last ``validate_count`` for parity, the first for calibration."""
    photos = sorted(p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    folders = []
    for name, chosen in (("validate", photos[-validate_count:]), ("calib", photos[:calib_count])):
        folder = work / name
        if not folder.is_dir() or sorted(p.name for p in folder.iterdir()) != [p.name for p in chosen]:
            # (rebuilt only when different: another run may be reading it right now)
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            for photo in chosen:
                (folder / photo.name).symlink_to(photo)
        folders.append(folder)
    return folders[0], folders[1]


class CaseRunner:
    """Everything one case needs across its cells: the torch reference, built once, and its FP32 ONNX."""

    def __init__(self, case, args, val_dir: Path, calib_dir: Path, results: dict):
        self.case, self.args, self.val_dir, self.calib_dir, self.results = case, args, val_dir, calib_dir, results
        self.work = Path(args.work) / case.id.replace(" ", "_").replace("@", "_at_")
        self._loaded = None
        self._reference_outputs = {}

    @property
    def loaded(self):
        if self._loaded is None:
            from vit_edge.sources import load_model

            kwargs = self.case.convert_kwargs()
            spec = families.resolve_spec(self.case, Path(self.args.work) / "hf")
            self._loaded = load_model(spec, task=kwargs["task"], model_kwargs=kwargs.get("model_kwargs"),
                                      dynamic_size=self.case.dynamic_size, **kwargs.get("preprocess", {}))
        return self._loaded

    def sizes(self) -> list:
        from vit_edge.convert.stages.export import other_sizes

        base = self.loaded.preprocess
        return [base.input_size] + (other_sizes(base, self.loaded.module) if self.case.dynamic_size else [])

    def onnx_fp32(self, fresh: bool) -> tuple[Path, dict]:
        """The case's FP32 ONNX: exported now when ``fresh`` (the ONNX FP32 cell itself), else the one that
        cell measured (same ``created`` stamp), else exported again."""
        out = self.work / "onnx-fp32"
        measured = (self.results["cells"].get(cell_key(self.case, "onnx", "fp32")) or {}).get("onnx_created")
        manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").exists() else {}
        if fresh or not manifest or manifest.get("created") != measured:
            from vit_edge.convert import convert

            convert(self.loaded, target="onnx", precision="fp32", out=out, force=True,
                    dynamic_size=self.case.dynamic_size, parity_data=str(self.val_dir))
            manifest = json.loads((out / "manifest.json").read_text())
        return out, manifest

    def run(self, target: str, precision: str) -> dict:
        from vit_edge.convert import convert

        started = time.time()
        onnx_dir, onnx_manifest = self.onnx_fp32(fresh=(target, precision) == ("onnx", "fp32"))
        result = {"exporter": onnx_manifest["export"]["exporter"], "onnx_created": onnx_manifest["created"]}
        if onnx_manifest["export"].get("fallback_from"):
            result["fallback_from"] = onnx_manifest["export"]["fallback_from"]
        if (target, precision) == ("onnx", "fp32"):
            out = onnx_dir
        else:
            out = self.work / f"{target}-{precision}"
            options = {"calib": str(self.calib_dir), "calib_size": self.args.calib} if precision == "int8" else {}
            convert(str(onnx_dir / "model.onnx"), target=target, precision=precision, out=out, force=True,
                    **options)
        result.update(self.measure(out, precision))
        if precision == "int8":  # whether convert kept SmoothQuant (it tries both; older cells lack this)
            quantization = json.loads((out / "manifest.json").read_text()).get("quantization", {})
            result["smooth_quant"] = (quantization.get("smooth_quant") or {}).get("chosen")
        result["seconds"] = round(time.time() - started, 1)
        return result

    def measure(self, out: Path, precision: str) -> dict:
        """Parity of the artifact against torch FP32 on the validation photos, at every size it must run at."""
        from vit_edge import runtimes
        from vit_edge.data import load_images
        from vit_edge.validate import compare

        worst = None
        per_size = []
        for size in self.sizes():
            pre = self.loaded.preprocess.replace(input_size=tuple(size))
            candidate = runtimes.load(out, preprocess=pre, threads=self.args.threads)
            reference = Recording(runtimes.reference(self.loaded, preprocess=pre, threads=self.args.threads))
            report = compare(candidate, reference, load_images(self.val_dir), batch_size=8, progress=False)
            info = candidate.info()
            entry = {"size": list(size), "images": report.samples, "max_rel_error": report.max_rel_error,
                     "distinct_top1": reference.distinct_top1(),
                     "max_abs_error": report.max_abs_error, "top1_agreement": report.top1_agreement,
                     "mean_cosine": report.mean_cosine, "min_cosine": report.min_cosine,
                     "ran_as": info.get("inference_precision") or info.get("precision")}
            per_size.append(entry)
            if worst is None or entry["max_rel_error"] > worst["max_rel_error"]:
                worst = entry
        result = {"task": self.case.task, **{k: min(e[k] for e in per_size) for k in
                                             ("top1_agreement", "mean_cosine", "min_cosine", "distinct_top1")},
                  "max_rel_error": max(e["max_rel_error"] for e in per_size), "images": worst["images"],
                  "ran_as": worst["ran_as"], "sizes": [e["size"] for e in per_size]}
        result["status"] = judge(result, precision)
        if result["status"] == "fail":
            result["reason"] = shortfall(result, precision)
        return result


class Recording:
    """The reference runtime, keeping its outputs: how many different top-1 classes the photos got shows
    whether the (random-weight) model's output depends on its input at all, i.e. whether agreement means
    anything."""

    def __init__(self, runtime):
        self.runtime, self.outputs = runtime, []

    def __getattr__(self, name):
        return getattr(self.runtime, name)

    def run(self, batch):
        out = self.runtime.run(batch)
        self.outputs.append(out)
        return out

    def distinct_top1(self) -> int:
        import numpy as np

        return int(len(np.unique(np.concatenate(self.outputs).argmax(1))))


def judge(result: dict, precision: str) -> str:
    if precision == "fp32":
        if result["task"] == "features":
            ok = result["mean_cosine"] >= FP32_MIN_COSINE and result["max_rel_error"] <= FP32_MAX_REL_ERROR * 10
        else:
            ok = result["max_rel_error"] <= FP32_MAX_REL_ERROR and result["top1_agreement"] == 1.0
        return "pass" if ok else "fail"
    return "pass" if result["mean_cosine"] >= INT8_MIN_COSINE else "low"


def shortfall(result: dict, precision: str) -> str:
    if result["task"] == "features":
        return f"mean cosine {result['mean_cosine']:.6f} < {FP32_MIN_COSINE}"
    return (f"relative max error {result['max_rel_error']:.2e} (limit {FP32_MAX_REL_ERROR:.0e}), "
            f"top-1 agreement {100 * result['top1_agreement']:.1f}%")


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    hint = getattr(exc, "hint", None)
    message = f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
    return message + (f" ({hint})" if hint else "")


# ---------------------------------------------------------------- results cache and Markdown


def load_results(path: Path = RESULTS) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"cells": {}}


def save_results(results: dict, path: Path, mine: set) -> None:
    """Write the cells this run computed over what is on disk now, so runs over different columns or
    cases can share one results file."""
    from vit_edge.artifact import write_json

    on_disk = load_results(path)
    on_disk.update({k: v for k, v in results.items() if k != "cells"})
    on_disk["cells"].update({k: results["cells"][k] for k in mine})
    results["cells"].update(on_disk["cells"])
    write_json(path, on_disk)


def fmt_cell(cell: dict | None) -> str:
    if cell is None:
        return "not run"
    if cell["status"] == "error":
        return "❌ error¹"
    metric = (f"cos {cell['mean_cosine']:.6f}" if cell["task"] == "features"
              else f"{cell['max_rel_error']:.1e} / {100 * cell['top1_agreement']:.0f}%")
    if cell.get("ran_as") not in (None, "fp32", "f32", "int8"):
        metric += f" ({cell['ran_as']})"
    if cell["task"] != "features" and cell.get("distinct_top1") is not None:
        metric += f" [{cell['distinct_top1']}]"
    if cell.get("smooth_quant") == "off":
        metric += " SQ off"
    mark = {"pass": "✅", "fail": "❌", "low": "⚠️"}[cell["status"]]
    return f"{mark} {metric}" + (f" @{len(cell['sizes'])} sizes" if len(cell.get("sizes", [])) > 1 else "")


def render(results: dict) -> str:
    cells = results["cells"]
    lines = ["# Compatibility matrix", "",
             "Generated by `python scripts/compat_matrix.py` (resumes from `docs/compat_results.json`; "
             "`--render` rewrites this page from it). Every model is random-weight (timm/Hugging Face "
             "architectures built without a download; all-zero heads re-drawn), so these numbers test the "
             "conversion, not accuracy.", "",
             f"- Reference: the torch FP32 model. Data: {results.get('images', '?')} real photos from "
             "`imagenet-samples` (never used for calibration); INT8 calibrated on "
             f"{results.get('calib', '?')} other photos from the same folder.",
             f"- FP32 cell: relative max error (max abs error / max(1, max |reference logit|)) / top-1 "
             f"agreement [distinct top-1 classes the reference gave the photos: 1 would make agreement "
             f"meaningless]. ✅ when ≤ {FP32_MAX_REL_ERROR:.0e} and 100% (features: mean cosine ≥ {FP32_MIN_COSINE}).",
             f"- INT8 cell: the same figures; ✅ when the conversion worked and the mean cosine of the outputs "
             f"is ≥ {INT8_MIN_COSINE}, ⚠️ when it converted but falls below that (random weights make "
             "near-tied logits, so INT8 top-1 agreement here is a stress figure, not an accuracy claim).",
             "- `SQ off`: convert quantized with and without SmoothQuant and shipped the variant without it, "
             "as it was closer to FP32 on the calibration images. INT8 cells run before convert made that "
             "choice (their JSON has no `smooth_quant` field) used SmoothQuant always; the ⚠️ cells among "
             "them were re-run.",
             "- OpenVINO FP32 runs with `INFERENCE_PRECISION_HINT=f32` (its CPU default would be bf16).",
             "- `exporter`: which torch.onnx exporter produced the graph (dynamo first, TorchScript fallback; "
             "the dynamo error is listed below when it fell back).",
             f"- Machine: {results.get('machine', '?')}; versions: {results.get('versions', '?')}.", ""]
    total = {c: [0, 0] for c in COLUMNS}
    for case in families.CASES:
        for col in COLUMNS:
            cell = cells.get(cell_key(case, *col))
            if cell is not None:
                total[col][1] += 1
                total[col][0] += cell["status"] == "pass"
    timm_pass = sorted({c.spec for c in families.CASES if c.family not in ("features", "resolution", "dynamic size")
                        and not c.is_hf and all((cells.get(cell_key(c, *col)) or {}).get("status") == "pass"
                                                for col in COLUMNS[:2])})
    hf_pass = sorted({c.family for c in families.CASES if c.is_hf and c.task == "classify" and not c.input_size
                      and not c.dynamic_size and all((cells.get(cell_key(c, *col)) or {}).get("status") == "pass"
                                                     for col in COLUMNS[:2])})
    lines += ["## Summary", "",
              "| | " + " | ".join(f"{t} {p.upper()}" for t, p in COLUMNS) + " |",
              "|---|" + "---|" * len(COLUMNS),
              "| ✅ / run | " + " | ".join(f"{total[c][0]} / {total[c][1]}" for c in COLUMNS) + " |", "",
              f"timm architectures passing ONNX FP32 and OpenVINO FP32: **{len(timm_pass)}**; Hugging Face "
              f"families: **{len(hf_pass)}** ({', '.join(h.removeprefix('HF ') for h in hf_pass)}).", ""]
    footnotes = []
    family = None
    for case in families.CASES:
        if case.family != family:
            family = case.family
            lines += [f"## {family}", "", "| model | exporter | " + " | ".join(f"{t} {p.upper()}" for t, p in COLUMNS)
                      + " |", "|---|---|" + "---|" * len(COLUMNS)]
        row = [cells.get(cell_key(case, *col)) for col in COLUMNS]
        exporter = next((c.get("exporter") for c in row if c and c.get("exporter")), "")
        texts = []
        for col, cell in zip(COLUMNS, row):
            text = fmt_cell(cell)
            if cell and cell["status"] in ("error", "fail"):
                footnotes.append((case.id, col, cell.get("reason", "")))
                text = text.replace("¹", "") + f" [{len(footnotes)}](#failures)"
            texts.append(text)
        if any(c and c.get("fallback_from") for c in row):
            reason = next(c["fallback_from"] for c in row if c and c.get("fallback_from"))
            footnotes.append((case.id, ("export", "dynamo"), "fell back to TorchScript: " + " | ".join(reason)))
            exporter += f" [{len(footnotes)}](#failures)"
        name = f"`{case.spec}`" + (f" {case.id.split(' ', 1)[1]}" if " " in case.id else "")
        if "@" in case.id:
            name += f" @{case.id.split('@', 1)[1].split(' ')[0]}"
        if case.model_kwargs:
            name += " (" + ", ".join(f"{k}={v}" for k, v in case.model_kwargs.items()) + ")"
        if case.task == "features":
            name += " — features"
        lines.append(f"| {name} | {exporter} | " + " | ".join(texts) + " |")
        if case is families.CASES[-1] or families.CASES[families.CASES.index(case) + 1].family != family:
            lines.append("")
    lines += ["## Failures", "", "Every failed or errored cell, and every exporter fallback, with its reason:", ""]
    for i, (case_id, col, reason) in enumerate(footnotes, 1):
        lines.append(f"{i}. `{case_id}` {col[0]} {col[1].upper()}: {reason}")
    if not footnotes:
        lines.append("None.")
    notes = [c for c in families.CASES if c.note]
    if notes:
        lines += ["", "## Notes", ""] + [f"- `{c.id}`: {c.note}" for c in notes]
    return "\n".join(lines) + "\n"


def environment() -> dict:
    from vit_edge.artifact import library_versions

    versions = library_versions("torch", "timm", "transformers", "onnxruntime", "openvino", "nncf")
    return {"machine": f"{platform.machine()}, {os.cpu_count()} CPU threads, {platform.python_version()}",
            "versions": ", ".join(f"{k} {v}" for k, v in versions.items() if v)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", action="append", help="run cases whose id contains this (repeatable)")
    parser.add_argument("--columns", default="all", help="comma list like onnx/fp32,openvino/fp32 (default all)")
    parser.add_argument("--retry-failed", action="store_true", help="re-run cells cached as failed or errored")
    parser.add_argument("--force", action="store_true", help="re-run every selected cell")
    parser.add_argument("--render", action="store_true", help="only rewrite docs/COMPATIBILITY.md")
    parser.add_argument("--images", type=int, default=16, help="validation photos per cell")
    parser.add_argument("--calib", type=int, default=32, help="calibration photos for INT8")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/vit-edge-compat", help="scratch folder for artifacts")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results cache (JSON)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    results = load_results(args.results)
    mine = set()
    if args.render:
        MARKDOWN.write_text(render(results))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    results.update(environment(), images=args.images, calib=args.calib)
    columns = COLUMNS if args.columns == "all" else [tuple(c.split("/")) for c in args.columns.split(",")]
    val_dir, calib_dir = photo_sets(Path(args.work), args.images, args.calib)
    cases = [c for c in families.CASES if not args.only or any(o in c.id for o in args.only)]
    cases.sort(key=priority)
    for case in cases:
        runner = CaseRunner(case, args, val_dir, calib_dir, results)
        for target, precision in columns:
            key = cell_key(case, target, precision)
            old = results["cells"].get(key)
            if old and not args.force and not (args.retry_failed and old["status"] in ("fail", "error")):
                continue
            print(f"[{time.strftime('%H:%M:%S')}] {key} ...", flush=True)
            try:
                cell = runner.run(target, precision)
            except KeyboardInterrupt:
                raise
            except ModuleNotFoundError as exc:  # a target this checkout does not have yet: leave the cell open
                print(f"    skipped: {exc}", flush=True)
                continue
            except Exception as exc:  # a failing family is a result, not a crash of the matrix
                cell = {"status": "error", "task": case.task, "reason": one_line(exc)}
                logging.debug("%s", traceback.format_exc())
                if (target, precision) == ("onnx", "fp32"):  # nothing else can run without the FP32 ONNX
                    for other in columns[1:]:
                        results["cells"][cell_key(case, *other)] = {
                            "status": "error", "task": case.task, "reason": "no FP32 ONNX (see ONNX FP32)"}
                        mine.add(cell_key(case, *other))
            print(f"    {cell['status']}: " + (cell.get("reason") or fmt_cell(cell)), flush=True)
            results["cells"][key] = cell
            mine.add(key)
            save_results(results, args.results, mine)
            MARKDOWN.write_text(render(results))
        for done in runner.work.glob("*-int8"):  # keep the FP32 ONNX for later columns, drop the rest
            shutil.rmtree(done, ignore_errors=True)
    MARKDOWN.write_text(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
