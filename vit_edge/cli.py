"""The ``vit-edge`` command: a thin click layer. Each command parses, calls one library function, prints.

Exit codes: 0 success, 1 a parity check failed, 2 a usage or input error (one line, no traceback),
130 interrupted, 70 an internal error (a bug: re-run with VIT_EDGE_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys

import click

from vit_edge import __version__
from vit_edge.errors import VitEdgeError

log = logging.getLogger("vit_edge")

TARGET_CHOICES = ["onnx", "openvino", "tensorrt"]
PRECISION_CHOICES = ["fp32", "fp16", "int8"]


# ---------------------------------------------------------------- option parsing helpers


def _floats(text, n, what):
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{what} must be {n} comma-separated numbers, e.g. 0.485,0.456,0.406 "
                                 f"(got {text!r})") from None
    if len(values) != n:
        raise click.BadParameter(f"{what} needs {n} comma-separated numbers (got {len(values)}: {text!r})")
    return values


def parse_input_size(ctx, param, value):
    if value is None:
        return None
    try:
        parts = [int(x) for x in value.lower().replace("x", ",").split(",")]
    except ValueError:
        raise click.BadParameter(f"use N or H,W with positive integers (got {value!r})") from None
    if len(parts) not in (1, 2) or any(p < 8 or p > 8192 for p in parts):
        raise click.BadParameter(f"use N or H,W with integers between 8 and 8192 (got {value!r})")
    return (parts[0], parts[0]) if len(parts) == 1 else tuple(parts)


def parse_rgb(ctx, param, value):
    if value is None:
        return None
    values = _floats(value, 3, f"--{param.name}")
    if param.name == "std" and any(v <= 0 for v in values):
        raise click.BadParameter(f"std values must be positive (got {value!r})")
    return values


def parse_batch_profile(ctx, param, value):
    if value is None:
        return None
    try:
        parts = [int(x) for x in value.split(":")]
    except ValueError:
        raise click.BadParameter(f"use MIN:OPT:MAX, e.g. 1:8:32 (got {value!r})") from None
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise click.BadParameter(f"use MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX (got {value!r})")
    return tuple(parts)


def preprocess_options(f):
    for option in reversed([
        click.option("--input-size", callback=parse_input_size, help="Model input size: N or H,W."),
        click.option("--mean", callback=parse_rgb, help="Normalisation mean R,G,B (0..1 scale)."),
        click.option("--std", callback=parse_rgb, help="Normalisation std R,G,B (0..1 scale)."),
        click.option("--interpolation", type=click.Choice(["bilinear", "bicubic", "nearest"])),
        click.option("--crop-pct", type=click.FloatRange(0.05, 1.0),
                     help="Centre-crop fraction (1.0 = resize the shorter side to the input size)."),
    ]):
        f = option(f)
    return f


def threshold_options(f):
    for option in reversed([
        click.option("--max-top1-drop", type=click.FloatRange(0, 100), default=None,
                     help="Largest allowed top-1 drop in points (default 0.5)."),
        click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
                     help="Smallest allowed top-1 agreement, 0..1 (default 0.98)."),
        click.option("--min-cosine", type=click.FloatRange(-1, 1), default=None,
                     help="Smallest mean cosine similarity for feature models (default 0.99)."),
    ]):
        f = option(f)
    return f


def _thresholds(kw):
    return {"max_top1_drop": kw.pop("max_top1_drop"), "min_agreement": kw.pop("min_agreement"),
            "min_cosine": kw.pop("min_cosine")}


class _StderrHandler(logging.StreamHandler):
    """Log to whatever sys.stderr is now (so redirected or captured stderr sees warnings too)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value):
        pass


def _setup_logging(verbose: bool) -> None:
    logger = logging.getLogger("vit_edge")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    for noisy in ("nncf", "openvino", "onnxslim", "torch", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _say(message: str) -> None:
    click.echo(message, err=True)


# ---------------------------------------------------------------- commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="vit-edge")
@click.option("-v", "--verbose", is_flag=True, help="Show progress details.")
def cli(verbose):
    """Ship trained Vision Transformers to edge hardware: ONNX, INT8, OpenVINO, TensorRT."""
    _setup_logging(verbose)


@cli.command()
@click.argument("model", required=False)
@click.option("--target", type=click.Choice(TARGET_CHOICES), default="onnx", show_default=True)
@click.option("--precision", type=click.Choice(PRECISION_CHOICES), default="fp32", show_default=True)
@click.option("--out", type=click.Path(), help="Output directory (default: out/<model>-<target>-<precision>).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
@click.option("--checkpoint", type=click.Path(), help="Weights (.pth/.pt/.safetensors) for the model.")
@click.option("--trust-checkpoint", is_flag=True, help="Allow pickles beyond plain tensors (runs their code!).")
@click.option("--task", type=click.Choice(["classify", "features"]), default=None,
              help="What the artifact outputs: classify (logits, the default) or features (embeddings).")
@click.option("--labels", "labels_file", type=click.Path(), help="Label names: text (one per line) or JSON.")
@preprocess_options
@click.option("--calib", help="Calibration data for INT8: image folder, .npy/.npz, or digits:train.")
@click.option("--calib-size", type=click.IntRange(1), default=300, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for sampling and random init.")
@click.option("--preset", type=click.Choice(["performance", "mixed"]), default=None,
              help="INT8 activation scheme (performance = symmetric).")
@click.option("--smooth-quant-alpha", type=float, default=None, help="SmoothQuant alpha (negative disables; default: tried with and without, the closer to FP32 kept).")
@click.option("--no-bias-correction", is_flag=True,
              help="Turn NNCF's bias correction off (its full variant fails on exported ViT graphs in NNCF 3.4).")
@click.option("--ignore", multiple=True, help="Node name or op type to keep in floating point (repeatable).")
@click.option("--max-accuracy-drop", type=float, default=None,
              help="Accuracy-controlled INT8: allowed top-1 drop in points (needs labelled --validate data).")
@click.option("--validate", "validate_data", help="Check parity on this data right after converting.")
@click.option("--validate-limit", type=click.IntRange(1), default=None)
@threshold_options
@click.option("--opset", type=click.IntRange(17, 23), default=None, help="ONNX opset (default 18).")
@click.option("--tolerance", type=float, default=None, help="Export parity tolerance (default 1e-4).")
@click.option("--dynamic-size", is_flag=True, help="Export a dynamic height/width axis.")
@click.option("--device", default=None, help="OpenVINO device for validation (CPU, GPU, NPU, AUTO).")
@click.option("--batch", callback=parse_batch_profile, help="TensorRT profile MIN:OPT:MAX (default 1:8:32).")
@click.option("--workspace", type=click.FloatRange(0.01), default=None, help="TensorRT workspace limit in GB.")
@click.option("--dla-core", type=click.IntRange(0), default=None, help="TensorRT DLA core (Jetson).")
@click.option("--timing-cache", type=click.Path(), default=None, help="TensorRT timing cache file.")
@click.option("--require-engine", is_flag=True, help="TensorRT: fail (exit 2) if no engine can be built here.")
def convert(model, target, precision, out, force, checkpoint, trust_checkpoint, task, labels_file, input_size,
            mean, std, interpolation, crop_pct, seed, validate_data, **options):
    """Convert MODEL (timm:NAME, hf:DIR, torchvision:NAME, file.py:fn, model.onnx; default: the demo)."""
    from vit_edge.convert import convert as run_convert
    from vit_edge.sources import parse_spec

    thresholds = _thresholds(options)
    if out is None:
        kind, value = parse_spec(model)
        stem = os.path.basename(value.rstrip("/")).replace(":", "_").replace(".py", "").replace(".onnx", "")
        out = os.path.join("out", f"{stem}-{target}-{precision}")
    options = {k: v for k, v in options.items() if not (v is None or v is False or v == ())}
    if "ignore" in options:
        options["ignore"] = list(options["ignore"])
    result = run_convert(model, target=target, precision=precision, out=out, force=force, checkpoint=checkpoint,
                         trust_checkpoint=trust_checkpoint, task=task, labels_file=labels_file, seed=seed,
                         preprocess={"input_size": input_size, "mean": mean, "std": std,
                                     "interpolation": interpolation, "crop_pct": crop_pct},
                         validate=validate_data, thresholds=thresholds, **options)
    for message in result.messages:
        _say(f"note: {message}")
    m = result.manifest
    parity = m.get("export", {}).get("parity")
    click.echo(f"wrote {result.out}/{m['artifact']} ({m['target']} {m['precision']})")
    if parity:
        click.echo(f"export parity vs torch: max abs error {parity['max_abs_error']:.2e} "
                   f"(tolerance {parity['tolerance']:.1e}) on {parity['images']} images")
        for other in m["export"].get("parity_other_sizes", []):
            click.echo(f"  at {other['input_size'][0]}x{other['input_size'][1]}: max abs error "
                       f"{other['max_abs_error']:.2e} (tolerance {other['tolerance']:.1e})")
    if result.report is not None:
        _print_report(result.report)
        if not result.report.passed:
            _say(f"error: parity failed: {'; '.join(result.report.failures)} "
                 f"(artifact kept in {result.out} with report.md)")
            sys.exit(1)


@cli.command()
@click.argument("candidate", type=click.Path())
@click.option("--reference", help="MODEL spec or artifact (default: the source recorded in the manifest).")
@click.option("--data", required=True, help="Image folder, .npy/.npz, or digits:test.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use at most N samples.")
@threshold_options
@click.option("--json", "json_path", type=click.Path(), help="Write the report as JSON.")
@click.option("--markdown", "markdown_path", type=click.Path(), help="Write the report as Markdown.")
@click.option("--junit", "junit_path", type=click.Path(), help="Write the result as JUnit XML for CI.")
@click.option("--device", default=None, help="OpenVINO device (CPU, GPU, NPU, AUTO).")
def validate(candidate, reference, data, limit, json_path, markdown_path, junit_path, device, **kw):
    """Check CANDIDATE's parity against its FP32 reference; exit 1 when a threshold fails."""
    from vit_edge.validate import validate_artifact, write_reports

    if not os.path.exists(candidate):
        raise VitEdgeError(f"candidate {candidate} not found", hint="pass an artifact file or --out directory")
    report = validate_artifact(candidate, data=data, reference=reference, limit=limit,
                               thresholds=_thresholds(kw),
                               candidate_options={"device": device} if device else None)
    write_reports(report, json_path=json_path, markdown_path=markdown_path, junit_path=junit_path)
    _print_report(report)
    if not report.passed:
        _say(f"error: parity failed: {'; '.join(report.failures)}")
        sys.exit(1)


def _backend(side: dict) -> str:
    """target/precision, plus the precision the backend really ran when it reports one (OpenVINO)."""
    ran = side.get("inference_precision")
    return f"{side['target']}/{side['precision']}" + (f" ({ran})" if ran else "")


def _print_report(report) -> None:
    s = report.summary()
    pct = lambda v: "   -   " if v is None else f"{100 * v:6.2f}%"  # noqa: E731
    ref, cand = s["reference"], s["candidate"]
    click.echo(f"{'':18}{'reference':>24}  {'candidate':>24}")
    click.echo(f"{'model':18}{ref['name'][-24:]:>24}  {cand['name'][-24:]:>24}")
    click.echo(f"{'backend':18}{ref['target'] + '/' + ref['precision']:>24}  "
               f"{_backend(cand):>24}")
    click.echo(f"{'top-1':18}{pct(ref['top1']):>24}  {pct(cand['top1']):>24}")
    click.echo(f"samples {s['samples']}  agreement {100 * s['top1_agreement']:.2f}%  "
               f"mean cosine {s['mean_cosine']:.6f}  max abs error {s['max_abs_error']:.3g}"
               + (f"  skipped files {s['skipped_files']}" if s["skipped_files"] else ""))
    click.echo("PASSED" if s["passed"] else "FAILED: " + "; ".join(s["failures"]))


@cli.command()
@click.argument("artifact", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("-k", "--top", type=click.IntRange(1), default=5, show_default=True)
def predict(artifact, images, top):
    """Print the top-k classes of IMAGES with ARTIFACT (or a MODEL spec, run in torch)."""
    from vit_edge import runtimes

    runtime = runtimes.load(artifact)
    for path, best in zip(images, runtime.topk(list(images), k=top)):
        click.echo(f"{path}: " + ", ".join(f"{label} ({p:.3f})" for label, p in best))


@cli.command()
@click.argument("spec")
@click.option("--out", required=True, type=click.Path(), help="Folder to write (class subfolders of PNGs).")
@click.option("--force", is_flag=True)
def data(spec, out, force):
    """Write a built-in data SPEC (e.g. digits:test) as an image folder."""
    from vit_edge.artifact import atomic_output_dir
    from vit_edge.data import load_images, write_image_folder

    images = load_images(spec)
    with atomic_output_dir(out, force=force) as tmp:
        n = write_image_folder(images, tmp)
    click.echo(f"wrote {n} images to {out}")


@cli.command()
@click.argument("artifact", type=click.Path(exists=False))
def info(artifact):
    """Print an artifact's manifest (what it is, how it was made, how to feed it)."""
    from pathlib import Path

    from vit_edge.artifact import read_manifest

    path = Path(artifact)
    if not path.exists():
        raise VitEdgeError(f"{path} not found")
    manifest = read_manifest(path if path.is_dir() else path.parent)
    manifest = {k: v for k, v in manifest.items() if k != "labels"}
    click.echo(json.dumps(manifest, indent=2, sort_keys=True))


def _register_optional_commands() -> None:
    """Commands that live in their own modules (bench, build-engine) register themselves here."""
    import importlib

    for module in ("vit_edge.bench_cli", "vit_edge.convert.tensorrt_cli"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        cli.add_command(mod.command)


_register_optional_commands()


def main(argv=None) -> None:
    """Entry point: every user-fixable error becomes one line on stderr and a documented exit code."""
    debug = bool(os.environ.get("VIT_EDGE_DEBUG"))
    try:
        code = cli.main(args=argv, prog_name="vit-edge", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        _say(f"error: {' '.join(exc.format_message().split())}")
        code = exc.exit_code
    except VitEdgeError as exc:
        _say(f"error: {exc.one_line()}")
        code = exc.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        _say("error: interrupted; nothing was written")
        code = 130
    except Exception as exc:
        if debug:
            raise
        first = str(exc).splitlines()[0][:200] if str(exc) else ""
        _say(f"error: internal error: {type(exc).__name__}: {first} (re-run with VIT_EDGE_DEBUG=1 for the "
             "traceback, and please report it)")
        code = 70
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
