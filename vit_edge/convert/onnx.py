"""Target ``onnx``: torch -> FP32 ONNX (opset >= 17, dynamic batch), simplified, checked, parity-tested.

``export_fp32`` is also the first step of every other target: OpenVINO and TensorRT start from its ONNX.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from vit_edge.errors import ExportError, ParityError

log = logging.getLogger("vit_edge")

ARTIFACT = "model.onnx"
DEFAULT_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"
DEFAULT_TOLERANCE = 1e-4  # max abs logit error, relative to max(1, max |reference logit|)


def check_options(precision: str, options: dict) -> None:
    from vit_edge.convert.quantize import check_int8_options

    check_int8_options(precision, options)


def build(job) -> None:
    """Write ``model.onnx`` in the requested precision."""
    fp32 = export_fp32(job, job.workdir / ARTIFACT)
    if job.precision == "fp16":
        from vit_edge.convert.fp16 import convert_fp16

        convert_fp16(fp32, fp32, job)
    elif job.precision == "int8":
        from vit_edge.convert.quantize import quantize_onnx

        quantize_onnx(job, fp32, fp32)
    job.manifest["artifact"] = ARTIFACT
    stamp_metadata(job, job.workdir / ARTIFACT)


def export_fp32(job, path: Path) -> Path:
    """Export (or copy) the FP32 ONNX to ``path`` and prove it matches torch on real images."""
    loaded = job.loaded
    if loaded.onnx_path is not None:
        import onnx

        from vit_edge.onnx_meta import load_onnx

        # Load (external data included, confined to the model's folder) and save as one file: a plain copy
        # would leave the weights of an external-data model behind.
        onnx.save(load_onnx(loaded.onnx_path, load_external_data=True), str(path))
        job.manifest["export"] = {"exporter": "none (input was ONNX)"}
        return path
    opset = int(job.option("opset", DEFAULT_OPSET))
    if opset < 17:
        raise ExportError(f"opset {opset} is too old", hint="use --opset 17 or newer (LayerNormalization needs 17)")
    dynamic_size = bool(job.option("dynamic_size", False))
    fallbacks = []
    exporter = export_torch(loaded.module, loaded.preprocess, path, opset=opset, dynamic_size=dynamic_size,
                            fallbacks=fallbacks)
    job.manifest["export"] = {"exporter": exporter, "opset": opset, "dynamic_batch": True,
                              "dynamic_size": dynamic_size, "input": INPUT_NAME, "output": OUTPUT_NAME}
    if fallbacks:
        job.manifest["export"]["fallback_from"] = fallbacks
    job.manifest["export"]["parity"] = check_export_parity(job, path)
    if dynamic_size:
        job.manifest["export"]["parity_other_sizes"] = [check_export_parity(job, path, size=size)
                                                         for size in other_sizes(loaded.preprocess,
                                                                                 loaded.module)]
    return path


def other_sizes(preprocess, module=None) -> list:
    """The extra sizes a --dynamic-size export is checked at (see ``sources.probe_sizes``)."""
    from vit_edge.sources import patch_size, probe_sizes

    return probe_sizes(preprocess.input_size, patch_size(module) if module is not None else None)


def export_torch(module, preprocess, path: Path, *, opset: int = DEFAULT_OPSET, dynamic_size: bool = False,
                 fallbacks: list | None = None) -> str:
    """torch.onnx.export with the dynamo exporter, falling back to the TorchScript one where it fails.

    Returns which exporter produced the file; why an earlier exporter failed is appended to
    ``fallbacks``. The batch axis is always dynamic; a graph whose batch axis came out fixed is rejected
    rather than shipped (a classic silent exporter failure).
    """
    import torch

    from vit_edge.artifact import disk_error, interrupted

    h, w = preprocess.input_size
    example = torch.randn(2, preprocess.channels, h, w)
    errors = []
    for exporter in ("dynamo", "torchscript"):
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")
                _export_with(exporter, module, example, path, opset, dynamic_size)
            break
        except Exception as exc:  # exporters raise anything; keep the reason and try the next one
            if interrupted():
                raise KeyboardInterrupt("interrupted") from None  # a Ctrl-C the exporter turned into an error
            if disk_error(exc):
                raise  # a full disk is not the exporter's fault; another exporter would fail the same way
            errors.append(f"{exporter}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            log.info("%s exporter failed, trying the next one: %s", exporter, errors[-1])
            path.unlink(missing_ok=True)
    else:
        raise ExportError("torch.onnx.export failed with every exporter: " + " | ".join(errors))
    finish_onnx(path, dynamic_size=dynamic_size)
    if fallbacks is not None:
        fallbacks.extend(errors)
    return exporter


def _export_with(exporter: str, module, example, path: Path, opset: int, dynamic_size: bool) -> None:
    import torch

    if exporter == "dynamo":
        batch = torch.export.Dim("batch", min=1, max=4096)
        dims = {0: batch}
        if dynamic_size:
            dims.update({2: torch.export.Dim("height", min=32, max=4096),
                         3: torch.export.Dim("width", min=32, max=4096)})
        program = torch.onnx.export(module, (example,), None, dynamo=True, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_shapes=(dims,), verbose=False, optimize=True)
        program.save(str(path), external_data=False)
    else:
        axes = {0: "batch", **({2: "height", 3: "width"} if dynamic_size else {})}
        torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: {0: "batch"}})


def finish_onnx(path: Path, *, dynamic_size: bool = False) -> None:
    """Simplify with onnxslim, run the checker and shape inference, insist on a dynamic batch axis."""
    import onnx

    model = onnx.load(str(path))
    try:
        import onnxslim

        model = onnxslim.slim(model)
    except Exception as exc:  # simplification is an optimisation; an unsimplified graph is still correct
        log.warning("onnxslim could not simplify the graph (%s); keeping it as exported", type(exc).__name__)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        onnx.checker.check_model(model)
    except Exception as exc:
        raise ExportError(f"the exported ONNX does not pass onnx.checker: {str(exc).splitlines()[0][:200]}") from None
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if not dims or not dims[0].dim_param:
        raise ExportError("the exporter fixed the batch axis to a constant",
                          hint="the model's forward must not depend on a concrete batch size")
    if dynamic_size and not (dims[2].dim_param and dims[3].dim_param):
        raise ExportError("the exporter fixed the spatial axes: this model does not support --dynamic-size")
    onnx.save(model, str(path))


def parity_images(job, count: int = 8, preprocess=None):
    """Real images for the export-time parity check: the user's data when given, the digits for the
    demo, else scikit-learn's two bundled photos cut into several crops."""
    from vit_edge.data import load_images

    preprocess = preprocess or job.loaded.preprocess
    spec = job.option("parity_data") or job.option("validate") or job.option("calib")
    if spec is None and job.loaded.source.get("kind") == "demo":
        spec = "digits:test"
    if spec is not None:
        images = load_images(spec, job.loaded.labels)
        batches = []
        for batch, _ in images.batches(preprocess, batch_size=count, limit=count * 2):
            batches.append(batch)
            if sum(len(b) for b in batches) >= count:
                break
        if batches:
            return np.concatenate(batches)[:count], str(spec)
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from vit_edge.preprocess import image_to_array

    arrays = []
    for photo in load_sample_images().images:
        im = Image.fromarray(photo)
        w, h = im.size
        boxes = [(0, 0, w, h), (0, 0, w // 2, h // 2), (w // 2, h // 2, w, h), (w // 4, 0, 3 * w // 4, h // 2)]
        arrays += [image_to_array(im.crop(b), preprocess) for b in boxes]
    return np.stack(arrays[:count]), "scikit-learn sample photos"


def check_export_parity(job, path: Path, size: tuple | None = None) -> dict:
    """Run the ONNX in ONNX Runtime and the module in torch on the same real images; fail loudly.

    ``size`` checks a --dynamic-size export at an input size other than the one it was traced at."""
    import torch

    from vit_edge.runtimes.onnx import ONNXRuntime

    preprocess = job.loaded.preprocess if size is None else job.loaded.preprocess.replace(input_size=tuple(size))
    batch, source = parity_images(job, preprocess=preprocess)
    with torch.no_grad():
        reference = job.loaded.module(torch.from_numpy(batch)).float().numpy()
    labels = job.loaded.labels
    if job.loaded.task == "classify" and labels and len(labels) != reference.shape[1]:
        from vit_edge.errors import ModelSpecError

        raise ModelSpecError("the labels do not match the model's classes", expected=f"{reference.shape[1]} names",
                             got=f"{len(labels)}", hint="check the --labels file (one name per class, in order)")
    runtime = ONNXRuntime(path, preprocess=preprocess)
    try:  # batch 1 and N: the batch axis is dynamic
        candidate = np.concatenate([runtime.run(batch[:1]), runtime.run(batch[1:])])
    except Exception as exc:  # ORT's own error classes; a fixed reshape inside the graph lands here
        raise ExportError(f"the exported graph does not run at {batch.shape[2]}x{batch.shape[3]} "
                          f"({str(exc).splitlines()[0][:160]}): this model's graph fixes its input size",
                          hint="export without --dynamic-size (or at a fixed --input-size)") from None
    err = float(np.abs(candidate - reference).max())
    scale = max(1.0, float(np.abs(reference).max()))
    tolerance = float(job.option("tolerance", DEFAULT_TOLERANCE)) * scale
    agree = float((candidate.argmax(1) == reference.argmax(1)).mean())
    result = {"images": len(batch), "data": source, "max_abs_error": err, "tolerance": tolerance,
              "top1_agreement": agree, "input_size": list(batch.shape[2:])}
    if not err <= tolerance:  # also catches NaN
        where = f" at input size {batch.shape[2]}x{batch.shape[3]}" if size is not None else ""
        raise ParityError(f"exported ONNX disagrees with torch{where}: max abs error {err:.3g} > tolerance "
                          f"{tolerance:.3g} on {len(batch)} images ({source})",
                          hint="export without --dynamic-size" if size is not None else
                          "report the model; try --opset or a different exporter version")
    log.info("export parity: max abs error %.2e (tolerance %.1e) on %d images", err, tolerance, len(batch))
    return result


def stamp_metadata(job, path: Path) -> None:
    """Write preprocessing, labels, source and versions into the ONNX so a bare file is self-describing."""
    import onnx

    from vit_edge.artifact import library_versions
    from vit_edge.onnx_meta import set_metadata

    job.manifest.setdefault("versions", library_versions("torch", "onnx", "onnxruntime", "onnxslim", "timm",
                                                         "transformers", "nncf", "openvino"))
    model = onnx.load(str(path))
    set_metadata(model, {k: job.manifest[k] for k in ("format", "task", "precision", "preprocess", "labels",
                                                      "source", "versions") if k in job.manifest})
    onnx.save(model, str(path))
