"""Stage ``export``: torch -> FP32 ONNX (opset >= 17, dynamic batch), simplified, checked, parity-tested.

``export_fp32`` is the first step of every target: ONNX, OpenVINO and TensorRT all start from its ONNX,
and none of them ships a graph that did not match torch on real images.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from vit_edge.artifact.manifest import ExportRecord
from vit_edge.convert.job import DEFAULT_OPSET
from vit_edge.errors import ExportError, first_line
from vit_edge.progress import phase

log = logging.getLogger("vit_edge")

INPUT_NAME, OUTPUT_NAME = "pixel_values", "logits"


def export_fp32(job, path: Path) -> ExportRecord:
    """Export (or copy) the FP32 ONNX to ``path``, prove it matches torch on real images, and record how
    (``job.manifest.export``)."""
    from vit_edge.convert.stages.parity import check_export_parity

    loaded = job.loaded
    if loaded.onnx_path is not None:
        import onnx

        from vit_edge.onnx_meta import load_onnx

        # Load (external data included, confined to the model's folder) and save as one file: a plain copy
        # would leave the weights of an external-data model behind.
        onnx.save(load_onnx(loaded.onnx_path, load_external_data=True), str(path))
        job.manifest.export = ExportRecord(exporter="none (input was ONNX)")
        return job.manifest.export
    opset = int(job.export.opset)
    if opset < 17:
        raise ExportError(f"opset {opset} is too old", hint="use --opset 17 or newer (LayerNormalization needs 17)")
    phase(f"exporting to ONNX (opset {opset})")
    dynamic_size = bool(job.export.dynamic_size)
    fallbacks = []
    exporter = export_torch(loaded.module, loaded.preprocess, path, opset=opset, dynamic_size=dynamic_size,
                            fallbacks=fallbacks)
    record = ExportRecord(exporter=exporter, opset=opset, dynamic_batch=True, dynamic_size=dynamic_size,
                          input=INPUT_NAME, output=OUTPUT_NAME, fallback_from=fallbacks or None)
    record.parity = check_export_parity(job, path)
    if dynamic_size:
        record.parity_other_sizes = [check_export_parity(job, path, size=size)
                                     for size in other_sizes(loaded.preprocess, loaded.module)]
    job.manifest.export = record
    return record


def other_sizes(preprocess, module=None) -> list:
    """The extra sizes a --dynamic-size export is checked at (see ``sources.probe_sizes``)."""
    from vit_edge.sources.introspect import patch_size, probe_sizes

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

    from vit_edge.quiet import quiet_block

    h, w = preprocess.input_size
    example = torch.randn(2, preprocess.channels, h, w)
    errors = []
    for exporter in ("dynamo", "torchscript"):
        try:
            # A failed dynamo attempt logs errors (and prints its partial graph) that the fallback answers.
            with warnings.catch_warnings(), torch.no_grad(), \
                    quiet_block(logging.ERROR if exporter == "dynamo" else logging.WARNING):
                warnings.simplefilter("ignore")
                _export_with(exporter, module, example, path, opset, dynamic_size)
            break
        except Exception as exc:  # exporters raise anything; keep the reason and try the next one
            if interrupted():
                raise KeyboardInterrupt("interrupted") from None  # a Ctrl-C the exporter turned into an error
            if disk_error(exc):
                raise  # a full disk is not the exporter's fault; another exporter would fail the same way
            errors.append(f"{exporter}: {type(exc).__name__}: {first_line(exc) if str(exc).strip() else ''}")
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
        raise ExportError(f"the exported ONNX does not pass onnx.checker: {first_line(exc)}") from None
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if not dims or not dims[0].dim_param:
        raise ExportError("the exporter fixed the batch axis to a constant",
                          hint="the model's forward must not depend on a concrete batch size")
    if dynamic_size and not (dims[2].dim_param and dims[3].dim_param):
        raise ExportError("the exporter fixed the spatial axes: this model does not support --dynamic-size")
    onnx.save(model, str(path))


def stamp_metadata(job, path: Path) -> None:
    """Write preprocessing, labels, source and versions into the ONNX so a bare file is self-describing."""
    import onnx

    from vit_edge.artifact import library_versions
    from vit_edge.onnx_meta import set_metadata

    manifest = job.manifest
    if manifest.versions is None:
        manifest.versions = library_versions("torch", "onnx", "onnxruntime", "onnxslim", "timm", "transformers",
                                             "nncf", "openvino")
    recorded = manifest.to_dict()
    model = onnx.load(str(path))
    set_metadata(model, {k: recorded[k] for k in ("format", "task", "precision", "preprocess", "labels",
                                                  "source", "versions") if k in recorded})
    onnx.save(model, str(path))
