"""Stage ``torch_frontend``: the torch module -> ``ov.Model`` with OpenVINO's PyTorch frontend (route ``pytorch``).

Why a second route beside the FP32 ONNX: OpenVINO turns a plain MatMul/Softmax/MatMul attention into one
``ScaledDotProductAttention`` op (a fused CPU kernel) from either route, but not the dynamo ONNX of a Hugging Face
model. Under ``torch.export`` transformers materialises an all-true boolean attention mask (5.x:
``masking_utils._ignore_bidirectional_mask_sdpa`` will not skip it while exporting), and the ONNX lowering of SDPA
with a boolean mask adds ``Where(mask, 0, -inf)`` before the softmax and ``Where(IsNaN(p), 0, p)`` after it
(PyTorch gives 0 for a fully masked row, ONNX's Softmax NaN). That guard blocks the fusion: the ONNX route runs
such attention as MatMul/Softmax/Select and NNCF quantizes both MatMuls; the frontend traces the module (no
torch.export, no mask) and keeps the fused op, of which NNCF quantizes only the query and key inputs. timm and
plain-module ViTs give the same graph both ways. Measured (benchmarks/openvino_routes.py, docs/BENCHMARKS.md):
equal or better agreement with FP32 and speed on every model tried, so ``auto`` (the default) takes this route
for Hugging Face models; elsewhere it keeps the ONNX route, whose node names ``vit-edge debug`` matches.
It must pass the same FP32 parity check against torch as an ONNX export; where the frontend cannot convert a
model or the result disagrees with torch, convert falls back to the ONNX route and says why.
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


def usable(job, wanted: str = "pytorch") -> str | None:
    """Why the PyTorch frontend route cannot (or, for ``wanted="auto"``, need not) be used, or None."""
    if job.loaded.module is None:
        return "the model is an ONNX file"
    if job.export.dynamic_size:
        return "--dynamic-size needs the ONNX export's symbolic spatial axes"
    if wanted == "auto" and job.loaded.source.get("kind") != "hf":
        # Measured (benchmarks/openvino_routes.py): timm models and users' own modules give the same fused graph
        # both ways; only Hugging Face's ViTs differ (their dynamo ONNX carries a NaN guard that blocks fusion).
        # The ONNX route keeps the node names `vit-edge debug` matches, so it stays where the routes tie.
        return "the ONNX route gives this model the same graph (the PyTorch frontend is chosen for Hugging Face models)"
    return None


def convert_torch(job):
    """The FP32 ``ov.Model`` of the job's torch module (dynamic batch, inputs/outputs named like the ONNX
    export's), checked against torch on real images; records ``job.manifest.export``. Raises RouteFailed."""
    import openvino as ov
    import torch

    from vit_edge.artifact import disk_error, interrupted
    from vit_edge.convert.stages.class_token_tail import tail_module

    pre = job.loaded.preprocess
    h, w = pre.input_size
    tail, why_not = tail_module(job.loaded.module, pre.channels, (h, w))
    if tail is None:
        log.info("class-token tail not used: %s", why_not)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the tracer's TracerWarnings about Python-side shape checks
            model = ov.convert_model(job.loaded.module if tail is None else tail,
                                     example_input=torch.randn(2, pre.channels, h, w),
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
    name_by_weight(model, job.loaded.module)
    parity = _fp32_parity(job, model)
    job.manifest.export = ExportRecord(exporter=EXPORTER, dynamic_batch=True, dynamic_size=False, input=INPUT_NAME,
                                       output=OUTPUT_NAME, parity=parity, class_token_tail=tail is not None)
    return model


def name_by_weight(model, module) -> None:
    """Name each MatMul/Convolution the frontend named after a whole layer after the Linear or Conv2d whose weight
    it multiplies. The frontend names ops by the module that ran them (``__module.blocks.0.mlp.fc2/...``), but a
    layer that runs as one fused op has no submodule calls: ``nn.TransformerEncoderLayer``'s fast path gives
    ``__module.encoder.layers.3/aten::_transformer_encoder_layer_fwd/MatMul_4``, which becomes
    ``__module.encoder.layers.3.linear2/...``, so the INT8 budget and MAC share name the real module."""
    import re

    import numpy as np

    from vit_edge.convert.stages.opmap import _clean, _close, _torch_weights

    weights = _torch_weights(module)
    leaves = {path for path, _ in weights}
    for op in model.get_ordered_ops():
        found = re.fullmatch(r"__module\.([^/]+)/(.*)", op.get_friendly_name(), re.S)
        if op.get_type_name() not in ("MatMul", "Convolution") or not found or _clean(found.group(1)) in leaves:
            continue
        const = op.input_value(1).get_node()
        if const.get_type_name() != "Constant":
            continue
        w = const.get_data()
        if op.get_type_name() == "MatMul" and not op.get_attributes().get("transpose_b"):
            w = w.T
        path = next((p for p, t in weights if t.shape == w.shape and _close(t, w)), None)
        for p, t in weights if path is None and w.ndim == 2 else ():  # a packed in-projection, split in three
            if t.ndim == 2 and t.shape[1] == w.shape[1] and t.shape[0] == 3 * w.shape[0]:
                path = next((f"{p}[{n}]" for part, n in zip(np.split(t, 3), "qkv") if _close(part, w)), path)
        if path is not None:
            prefix = found.group(1)[:len(found.group(1)) - len(_clean(found.group(1)))]  # "inner." stays
            op.set_friendly_name(f"__module.{prefix}{path}/{found.group(2)}")


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
