"""The ``vit-edge`` command: a thin click layer. Each command parses, calls one library function, prints.

Exit codes: 0 success, 1 a parity check failed, 2 a usage or input error (one line, no traceback),
130 interrupted, 70 an internal error (a bug: re-run with VIT_EDGE_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from vit_edge import __version__, cli_options
from vit_edge.errors import VitEdgeError, first_line

log = logging.getLogger("vit_edge")


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
    # Third-party chatter only with -v (vit_edge.quiet covers what these levels cannot reach). onnxscript: the
    # dynamo exporter's optimizer warns "Skipping constant folding for op ..." on a logger without a handler,
    # which Python's last-resort handler printed bare.
    for noisy in ("nncf", "openvino", "onnxslim", "onnxscript", "torch", "transformers"):
        logging.getLogger(noisy).setLevel(logging.NOTSET if verbose else logging.ERROR)


def _say(message: str) -> None:
    click.echo(message, err=True)


# ---------------------------------------------------------------- commands


def _convert_command() -> click.Command:
    """``convert``, built from the target registry: its --target and --precision choices and each target's
    own flags come from the targets, so a new target needs no change here."""
    from vit_edge import targets
    from vit_edge.convert.target import PRECISIONS, get

    owners: dict = {}  # target flag -> the targets that take it
    target_params = []
    for name in targets.names():
        for param in _params(get(name).cli_options):
            if param.name not in owners:
                target_params.append(param)
            owners.setdefault(param.name, []).append(name)

    def callback(model, target, precision, out, force, checkpoint, trust_checkpoint, task, labels_file, seed,
                 validate_data, **options):
        from vit_edge.convert import convert as run_convert
        from vit_edge.convert import default_out

        preprocess = cli_options.pop(options, cli_options.PREPROCESS_NAMES)
        thresholds = cli_options.pop(options, cli_options.THRESHOLD_NAMES)
        # Another target's flag left at its default (--route auto) was not given, whatever its value.
        source = click.get_current_context().get_parameter_source
        given = {k: v for k, v in options.items() if not (v is None or v is False or v == ()) and not (
            k in owners and target not in owners[k] and source(k) is click.core.ParameterSource.DEFAULT)}
        foreign = [k for k in given if k in owners and target not in owners[k]]
        if foreign:
            flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
            raise click.UsageError(f"{flags} {'does' if len(foreign) == 1 else 'do'} not apply to --target {target} "
                                   f"(only to {', '.join(sorted({t for k in foreign for t in owners[k]}))})")
        if out is None:  # an empty --out is an error (convert says so), not the default
            out = default_out(model, target, precision)
        result = run_convert(model, target=target, precision=precision, out=out, force=force, checkpoint=checkpoint,
                             trust_checkpoint=trust_checkpoint, task=task, labels_file=labels_file, seed=seed,
                             preprocess=preprocess, validate=validate_data, thresholds=thresholds, **given)
        for message in result.messages:
            _say(f"note: {message}")
        m = result.manifest
        parity = m.export.parity if m.export is not None else None
        if parity is not None:
            click.echo(f"export parity vs torch: max abs error {parity.max_abs_error:.2e} "
                       f"(tolerance {parity.tolerance:.1e}) on {parity.images} images")
            for other in m.export.parity_other_sizes or []:
                click.echo(f"  at {other.input_size[0]}x{other.input_size[1]}: max abs error "
                           f"{other.max_abs_error:.2e} (tolerance {other.tolerance:.1e})")
        if result.report is not None:
            click.echo(result.report.to_text())
        # Last, so the log's final line says where the artifact is (kept even when validation failed).
        click.echo(f"wrote {result.out}/{m.artifact} ({m.target} {m.precision})")
        if result.report is not None and not result.report.passed:
            _say(f"error: parity failed: {'; '.join(result.report.failures)} "
                 f"(artifact kept in {result.out} with report.md)")
            sys.exit(1)

    target_help = "; ".join(f"{n}: {get(n).summary}" for n in targets.names() if get(n).summary)
    params = [click.Argument(["model"], required=False),
              click.Option(["--target"], type=click.Choice(targets.names()), default="onnx", show_default=True,
                           help=f"What to build ({target_help})."),
              click.Option(["--precision"], type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True,
                           help="Numeric precision of the artifact."),
              click.Option(["--out"], type=click.Path(), help="Output directory (default: out/<model>-<target>-<precision>)."),
              click.Option(["--force"], is_flag=True, help="Replace --out if it exists.")]
    params += _params(cli_options.SOURCE + cli_options.PREPROCESS + cli_options.INT8 + cli_options.VALIDATION
                      + cli_options.THRESHOLDS + cli_options.EXPORT)
    return click.Command("convert", callback=callback, params=params + target_params,
                         help="Convert MODEL (timm:NAME, hf:DIR, torchvision:NAME, file.py:fn, model.onnx; "
                              "default: the demo).\n\n"
                              "\b\nExample:\n"
                              "  vit-edge convert --target openvino --precision int8 --calib digits:train "
                              "--validate digits:test --out out/demo-openvino-int8\n"
                              "  vit-edge convert timm:vit_tiny_patch16_224 --checkpoint vit_ti.pth --target tensorrt "
                              "--precision fp16 --batch 1,8,32")


def _params(decorators) -> list:
    """The click parameters a tuple of ``click.option(...)`` decorators declares, in order."""
    params = []
    for decorate in decorators:
        def holder():
            pass
        params.extend(getattr(decorate(holder), "__click_params__"))
    return params


@click.command()
@click.argument("candidate", type=click.Path())
@click.option("--reference", help="MODEL spec or artifact (default: the source recorded in the manifest).")
@click.option("--data", required=True, help="Image folder, .npy/.npz, or digits:test.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Use a seeded sample of N items, stratified by class when labelled.")
@cli_options.apply(*cli_options.source_options("a --reference MODEL spec"))
@cli_options.apply(*cli_options.PREPROCESS, cli_options.PREPROCESS_FROM)
@cli_options.apply(*cli_options.THRESHOLDS)
@click.option("--json", "json_path", type=click.Path(), help="Write the report as JSON.")
@click.option("--markdown", "markdown_path", type=click.Path(), help="Write the report as Markdown.")
@click.option("--junit", "junit_path", type=click.Path(), help="Write the result as JUnit XML for CI.")
@click.option("--device", default=None, help="OpenVINO device (CPU, GPU, NPU, AUTO).")
@click.option("--flips-dir", type=click.Path(file_okay=False),
              help="Write a contact sheet (flips.png) of the worst flipped images here.")
@click.option("--no-cache", is_flag=True,
              help="Recompute the reference instead of using (and filling) the reference cache.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Run inference as Ray tasks over shards: a local Ray, or the cluster at ADDRESS "
                   "(needs vit-edge[distributed]).")
def validate(candidate, reference, data, limit, json_path, markdown_path, junit_path, device, flips_dir, no_cache,
             ray_address, **kw):
    """Check CANDIDATE's parity against its FP32 reference; exit 1 when a threshold fails.

    \b
    Example:
      vit-edge validate out/demo-openvino-int8 --data digits:test --junit parity.xml
      vit-edge validate out/vit-s-int8 --data data/val --max-top1-drop 0.5 --min-agreement 0.98
    """
    from vit_edge.validate import validate_artifact, write_reports

    if not os.path.exists(candidate):
        raise VitEdgeError(f"candidate {candidate} not found", hint="pass an artifact file or --out directory")
    candidate_options = {"device": device} if device else {}
    preprocess = _artifact_preprocess(candidate, kw)
    if preprocess is not None:
        candidate_options["preprocess"] = preprocess
    if reference is None and kw.get("preprocess_from") and not _has_manifest(candidate):
        # Another tool's artifact records no source: the model its preprocessing comes from is the one it was
        # converted from, named by the user on this command line.
        reference = kw["preprocess_from"]
        _say(f"note: reference: {reference} (from --preprocess-from; pass --reference to compare with another)")
    labels = _labels_for_bare(candidate, kw, reference)
    if labels is not None:
        candidate_options["labels"] = labels
    kw.pop("preprocess_from")
    report = validate_artifact(candidate, data=data, reference=reference, limit=limit,
                               thresholds=cli_options.pop(kw, cli_options.THRESHOLD_NAMES),
                               candidate_options=candidate_options or None, cache=not no_cache,
                               ray=ray_address, flips_dir=flips_dir, timing=True,
                               reference_options=cli_options.pop(kw, cli_options.SOURCE_NAMES))
    write_reports(report, json_path=json_path, markdown_path=markdown_path, junit_path=junit_path)
    click.echo(report.to_text())
    if not report.passed:
        _say(f"error: parity failed: {'; '.join(report.failures)}")
        sys.exit(1)


def _artifact_preprocess(candidate, kw: dict):
    """The preprocessing flags (taken out of ``kw``) and --preprocess-from as the candidate's preprocessing;
    None when neither is given and the candidate records its own."""
    from vit_edge.runtimes import is_artifact
    from vit_edge.runtimes.given_preprocess import for_artifact

    flags = cli_options.pop(kw, cli_options.PREPROCESS_NAMES)
    if not is_artifact(candidate):
        return None  # not loadable: runtimes.load says why in one line
    return for_artifact(candidate, flags, kw.get("preprocess_from"))


def _labels_for_bare(candidate, kw: dict, reference):
    """Label names for a candidate that records none (another tool's artifact), so that class folders map to
    the model's class indices: --labels, else those of the --preprocess-from model, else of a MODEL --reference.
    None where the candidate has a manifest (it records its own, or has none on purpose)."""
    from vit_edge.runtimes import is_artifact
    from vit_edge.runtimes.given_preprocess import labels_of

    if _has_manifest(candidate) or not is_artifact(candidate):
        return None
    if kw.get("labels_file"):
        from vit_edge.sources import read_labels

        return read_labels(kw["labels_file"])
    model = kw.get("preprocess_from") or (reference if reference and not is_artifact(reference) else None)
    if model is None or kw.get("num_classes"):
        return None
    return labels_of(model)


def _has_manifest(candidate) -> bool:
    from vit_edge.artifact import MANIFEST

    path = Path(candidate)
    return ((path if path.is_dir() else path.parent) / MANIFEST).is_file()


@click.command()
@click.argument("artifact", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("-k", "--top", type=click.IntRange(1), default=5, show_default=True,
              help="How many of the best classes to print per image.")
# 8: ViT-Ti ONNX peaks at 196 MB on 500 images (163 MB on 10) and runs 200 images in 4.3 s; 32 peaks at
# 442 MB and takes 4.9 s (2-core EPYC, benchmarks/predict_memory.py); a batch of all 500 peaked at 2.8 GB.
@click.option("--batch-size", type=click.IntRange(1), default=8, show_default=True,
              help="Images decoded and run at once; each batch's results print when it finishes.")
@cli_options.apply(*cli_options.source_options("a MODEL spec given as ARTIFACT", task=False),
                   *cli_options.PREPROCESS, cli_options.PREPROCESS_FROM)
def predict(artifact, images, top, batch_size, **source):
    """Print the top-k classes of IMAGES (files, or folders searched recursively for image files) with
    ARTIFACT (or a MODEL spec, run in torch).

    \b
    Example:
      vit-edge predict out/demo-onnx-fp32 data/digits-test/3 -k 3
      vit-edge predict my_model.py:build photos/ --checkpoint w.safetensors --input-size 28 --mean 0.5 --std 0.5
    """
    from vit_edge import runtimes
    from vit_edge.data import image_files
    from vit_edge.errors import DataError

    entries = image_files(images)
    skipped = []
    with runtimes.load_any(artifact, **source) as runtime:
        for path, best in runtime.topk_stream([p for p, _ in entries], k=top, batch_size=batch_size,
                                              skip={p for p, named in entries if not named}):
            if best is None:
                skipped.append(path)
                continue
            click.echo(f"{path}: " + ", ".join(f"{label} ({p:.3f})" for label, p in best))
    if skipped and len(skipped) == len(entries):
        raise DataError(f"none of the {len(skipped)} image files found decodes (first: {skipped[0]})",
                        hint="pass a folder of images")
    if skipped:
        _say(f"note: skipped {len(skipped)} file(s) in the folders given that do not decode (first: {skipped[0]})")


@click.command()
@click.argument("spec")
@click.option("--out", required=True, type=click.Path(), help="Folder to write (class subfolders of PNGs).")
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def data(spec, out, force):
    """Write a data SPEC (digits:train, digits:test, digits:all, or a .npy/.npz) as an image folder.

    \b
    Example:
      vit-edge data digits:test --out data/digits-test
    """
    from vit_edge.data import write_data

    n = write_data(spec, out, force=force)
    click.echo(f"wrote {n} images to {out}")


@click.command()
@click.argument("artifact", type=click.Path(exists=False))
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest.json (labels included) instead.")
def info(artifact, as_json):
    """Summarise ARTIFACT (an --out directory or a file in one): the model, what runs, how to feed it, its
    size, validation and INT8 recipe, read from its manifest.

    \b
    Example:
      vit-edge info out/demo-openvino-int8
      vit-edge info out/demo-openvino-int8 --json | jq .quantization
    """
    from vit_edge.artifact import manifest_of
    from vit_edge.artifact.summary import summary

    if as_json:
        click.echo(json.dumps(manifest_of(artifact).to_dict(), indent=2, sort_keys=True))
        return
    for line in summary(artifact):
        click.echo(line)


# Commands that live in their own modules, registered when their module imports.
OPTIONAL_COMMANDS = ("vit_edge.bench_cli", "vit_edge.convert.tensorrt.cli", "vit_edge.debug_cli")


def make_cli() -> click.Group:
    """The ``vit-edge`` command group, built from the target registry as it is now."""
    import importlib

    @click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
    @click.version_option(__version__, prog_name="vit-edge")
    @click.option("-v", "--verbose", is_flag=True, help="Show progress details.")
    def group(verbose):
        """Ship trained Vision Transformers to edge hardware: ONNX, INT8, OpenVINO, TensorRT.

        \b
        Example:
          vit-edge convert --target openvino --precision int8 --calib digits:train --out out/demo-openvino-int8
          vit-edge info out/demo-openvino-int8
          vit-edge validate out/demo-openvino-int8 --data digits:test
        """
        _setup_logging(verbose)
        from vit_edge.progress import phases

        click.get_current_context().with_resource(phases())  # one timed line per phase, until the command ends

    group.add_command(_convert_command())
    for command in (validate, predict, data, info):
        group.add_command(command)
    for module in OPTIONAL_COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        group.add_command(mod.command)
    return group


cli = make_cli()

def main(argv=None) -> None:
    """Entry point: every user-fixable error becomes one line on stderr and a documented exit code."""
    debug = bool(os.environ.get("VIT_EDGE_DEBUG"))
    try:
        code = make_cli().main(args=argv, prog_name="vit-edge", standalone_mode=False)
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
        _say(f"error: internal error: {type(exc).__name__}: {first_line(exc)} (re-run with VIT_EDGE_DEBUG=1 for the "
             "traceback, and please report it)")
        code = 70
    sys.exit(code or 0)


if __name__ == "__main__":
    main()
