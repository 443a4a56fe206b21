"""Stage ``torch_frontend``: the torch module -> ``ov.Model`` with OpenVINO's PyTorch frontend (route ``pytorch``).

Why a second route beside the FP32 ONNX: the PyTorch frontend keeps attention as one
``ScaledDotProductAttention`` op, which the CPU plugin runs as a fused kernel, and which NNCF's transformer
scheme leaves in float; the ONNX route splits attention into MatMul/Softmax(/IsNaN/Select) and quantizes its
two MatMuls. Measured on this 2-core machine (benchmark_app, alternated runs), the INT8 IR of the trained HF
imagenette ViT ran 1.3-1.75x the ONNX route's throughput at batch 8 (docs/BENCHMARKS.md has the table).
The route is tried first for torch models and must pass the same FP32 parity check against torch as an ONNX
export; when the frontend cannot convert a model (``nn.TransformerEncoder``'s fast path defeats its tracer)
or the result disagrees with torch, convert falls back to the ONNX route and says why.
"""

from __future__ import annotations

import logging
import warnings

from vit_edge.artifact.manifest import ExportParity, ExportRecord
from vit_edge.convert.stages.export import INPUT_NAME, OUTPUT_NAME
from vit_edge.errors import first_line

log = logging.getLogger("vit_edge")

EXPORTER = "openvino-pytorch-frontend"
ROUTES = ("auto", "pytorch", "onnx")


class RouteFailed(Exception):
    """The PyTorch frontend could not give a model that matches torch; the message says why."""


def usable(job) -> str | None:
    """Why the PyTorch frontend route cannot be used for this job, or None when it can."""
    if job.loaded.module is None:
        return "the model is an ONNX file"
    if job.export.dynamic_size:
        return "--dynamic-size needs the ONNX export's symbolic spatial axes"
    return None


def convert_torch(job):
    """The FP32 ``ov.Model`` of the job's torch module (dynamic batch, inputs/outputs named like the ONNX
    export's), checked against torch on real images; records ``job.manifest.export``. Raises RouteFailed."""
    import openvino as ov
    import torch

    from vit_edge.artifact import disk_error, interrupted

    pre = job.loaded.preprocess
    h, w = pre.input_size
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's TracerWarnings about Python-side shape checks
            model = ov.convert_model(job.loaded.module, example_input=torch.randn(2, pre.channels, h, w),
                                     input=[ov.PartialShape([-1, pre.channels, h, w])])
    except Exception as exc:  # the frontend raises OpConversionFailure, tracer errors, anything
        if interrupted():
            raise KeyboardInterrupt("interrupted") from None
        if disk_error(exc):
            raise
        raise RouteFailed(f"{type(exc).__name__}: {first_line(exc, 160)}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise RouteFailed(f"the converted model has {len(model.inputs)} inputs and {len(model.outputs)} outputs")
    model.inputs[0].get_tensor().set_names({INPUT_NAME})
    model.outputs[0].get_tensor().set_names({OUTPUT_NAME})
    parity = _fp32_parity(job, model)
    job.manifest.export = ExportRecord(exporter=EXPORTER, dynamic_batch=True, dynamic_size=False, input=INPUT_NAME,
                                       output=OUTPUT_NAME, parity=parity)
    return model


def _fp32_parity(job, model) -> ExportParity:
    """The FP32 ov.Model at f32 against torch on the export-parity images, at batch 1 and N."""
    import numpy as np
    import openvino as ov

    from vit_edge.convert.stages.parity import compare_to_torch, parity_images, torch_outputs

    batch, source = parity_images(job)
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    candidate = np.concatenate([compiled(batch[:1])[0], compiled(batch[1:])[0]])
    result = compare_to_torch(job, candidate, torch_outputs(job, batch), source)
    if not result.within_tolerance:
        raise RouteFailed(f"it disagrees with torch: max abs error {result.max_abs_error:.3g} > tolerance "
                          f"{result.tolerance:.3g} on {len(batch)} images ({source})")
    log.info("PyTorch frontend parity: max abs error %.2e (tolerance %.1e) on %d images", result.max_abs_error,
             result.tolerance, len(batch))
    return ExportParity(images=result.images, data=result.data, max_abs_error=result.max_abs_error,
                        tolerance=result.tolerance, top1_agreement=result.top1_agreement,
                        input_size=list(batch.shape[2:]))
