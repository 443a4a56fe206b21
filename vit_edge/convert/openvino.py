"""Target ``openvino``: torch (PyTorch frontend) or FP32 ONNX -> OpenVINO IR (``model.xml`` + ``model.bin``)
in fp32, fp16 or int8.

Two routes to the ``ov.Model`` (``--route``): ``pytorch`` converts the torch module with OpenVINO's PyTorch
frontend, which keeps attention fused (see :mod:`.stages.torch_frontend` for why and what it measured);
``onnx`` converts the proven FP32 ONNX export. ``auto`` (the default) takes ``pytorch`` for Hugging Face models
(where it converts and matches torch: their ONNX splits attention) and ``onnx`` for the rest (the same graph
either way, and the node names ``vit-edge debug`` matches); the manifest records the route and why.

INT8 quantizes the OpenVINO model itself with NNCF (after ``ov.convert_model``) rather than converting a
Q/DQ ONNX. Measured both ways (benchmarks/openvino_int8_vs_torch.py --onnx-path; the demo on digits:test)
they tie on speed and accuracy, so the choice rests on support: NNCF's OpenVINO backend is its
best-maintained one, and accuracy control then validates the very model that ships.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import click

from vit_edge.artifact.manifest import OpenVINORecord
from vit_edge.convert.target import Built, Target
from vit_edge.errors import ExportError, OutputError, ParityError, first_line, require
from vit_edge.progress import phase

log = logging.getLogger("vit_edge")

ARTIFACT = "model.xml"


@dataclass(frozen=True)
class OpenVINOOptions:
    device: str | None = None  # where convert's own checks run (CPU by default)
    route: str = "auto"  # auto, pytorch (OpenVINO's PyTorch frontend) or onnx (the FP32 ONNX export)


class OpenVINOTarget(Target):
    name = "openvino"
    summary = "OpenVINO IR for Intel CPUs, GPUs and NPUs (NNCF INT8)"
    Options = OpenVINOOptions
    cli_options = (click.option("--device", default=None,
                                help="OpenVINO device for convert's checks and validation (CPU, GPU, NPU, AUTO)."),
                   click.option("--route", type=click.Choice(["auto", "pytorch", "onnx"]), default="auto",
                                show_default=True,
                                help="How the IR is made: OpenVINO's PyTorch frontend (attention stays fused), "
                                     "the FP32 ONNX export, or auto: pytorch for Hugging Face models (where it "
                                     "converts and matches torch), else onnx."))

    def build(self, job) -> Built:
        ov = require("openvino", "openvino")
        model, route, onnx_path = self._fp32_model(job, ov)
        if job.precision == "int8":
            from vit_edge.convert.stages.quantize import quantize_openvino

            model = quantize_openvino(job, model, onnx_path)
        stable_names(model)
        xml = job.workdir / ARTIFACT
        # fp16 stores FP16 weights (half the size; the CPU plugin decompresses them); fp32/int8 keep FP32
        # constants, so the FP32 IR is bit-for-bit the exported model.
        try:
            ov.save_model(model, str(xml), compress_to_fp16=job.precision == "fp16")
        except Exception as exc:  # OpenVINO reports a failed write as RuntimeError("basic_ios::clear: iostream error")
            raise OutputError(f"cannot write the OpenVINO IR into {job.workdir.parent} ({first_line(exc, 120)})",
                              hint="check free disk space, file-size limits and permissions") from None
        if onnx_path is not None:
            onnx_path.unlink()
        from vit_edge.artifact import library_versions

        job.manifest.artifact = ARTIFACT
        job.manifest.versions = library_versions("torch", "onnx", "onnxslim", "timm", "transformers", "nncf",
                                                 "openvino")
        budget = (job.manifest.quantization.budget or {}) if job.manifest.quantization else {}
        record = OpenVINORecord(version=ov.__version__, weights="model.bin",
                                compressed_to_fp16=job.precision == "fp16",
                                float_precision=budget.get("float_precision"), **route)
        record.parity = check_parity(job, xml, record.float_precision)
        return Built(artifact=ARTIFACT, record=record)


    @staticmethod
    def _fp32_model(job, ov):
        """(FP32 ov.Model, the route record, the FP32 ONNX it came from or None) by ``--route``."""
        from vit_edge.convert.stages import torch_frontend

        wanted = job.target_options.route
        why_not = torch_frontend.usable(job, wanted) if wanted != "onnx" else "--route onnx"
        if why_not is None:
            phase("converting to OpenVINO IR with its PyTorch frontend")
            try:
                return torch_frontend.convert_torch(job), {"route": "pytorch"}, None
            except torch_frontend.RouteFailed as exc:
                if wanted == "pytorch":
                    raise ExportError(f"OpenVINO's PyTorch frontend cannot convert this model: {exc}",
                                      hint="use --route onnx (or auto)") from None
                why_not = f"OpenVINO's PyTorch frontend failed ({exc})"
                job.messages.append(f"{why_not}; made the IR from the FP32 ONNX instead")
        elif wanted == "pytorch":
            raise ExportError(f"--route pytorch cannot be used: {why_not}", hint="use --route onnx (or auto)")
        from vit_edge.convert.stages.export import export_fp32

        onnx_path = job.workdir / ".fp32.onnx"  # hidden: a build input, not part of the artifact
        export_fp32(job, onnx_path)
        phase("converting the ONNX to OpenVINO IR")
        try:
            model = ov.convert_model(str(onnx_path))
        except Exception as exc:  # the converter raises its own OpConversionFailure/GeneralFailure types
            raise ExportError(f"OpenVINO cannot convert the ONNX: {first_line(exc)}") from None
        return model, {"route": "onnx", "route_reason": why_not}, onnx_path


TARGET = OpenVINOTarget()


def stable_names(model) -> None:
    """Rename the nodes OpenVINO named itself. Such names (``Constant_160065``) come from a process-wide
    counter, so the same conversion run after another one in the same process would write a different IR;
    numbering them by graph position makes the IR depend on the model alone."""
    import re

    ops = model.get_ordered_ops()
    taken = {op.get_friendly_name() for op in ops}
    for position, op in enumerate(ops):
        # "Type_123", where Type may be another op's (a Constant folded from a Reshape keeps "Reshape_N")
        auto = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)_\d+", op.get_friendly_name())
        if auto:
            name = f"{auto.group(1)}_at_{position}"
            while name in taken:
                name += "_"
            taken.add(name)
            op.set_friendly_name(name)


def check_parity(job, xml, float_precision: str | None = None) -> dict:
    """Run the IR on the export-parity images and record the precision the CPU plugin really used.

    An FP32 IR must match torch within the export tolerance at f32 (the proof that f32 ran); fp16 and
    int8 are judged by validation (``--validate``), so here they only record their error."""
    from vit_edge.convert.stages.parity import compare_to_torch, parity_images, torch_outputs
    from vit_edge.runtimes.openvino import OpenVINORuntime

    batch, source = parity_images(job)
    with OpenVINORuntime(xml, preprocess=job.loaded.preprocess, precision=job.precision,
                         device=job.target_options.device or "CPU",
                         inference_precision=float_precision) as runtime:  # as the artifact will run
        candidate = runtime.run(batch)
        info = runtime.info()
    result = {"images": len(batch), "data": source, "device": info["device"],
              "inference_precision": info["inference_precision"]}
    if job.loaded.module is None:
        return result
    comparison = compare_to_torch(job, candidate, torch_outputs(job, batch), source)
    result["max_abs_error_vs_torch"] = comparison.max_abs_error
    result["top1_agreement_vs_torch"] = comparison.top1_agreement
    if job.precision == "fp32":
        result["tolerance"] = comparison.tolerance
        if not comparison.within_tolerance:
            raise ParityError(f"the FP32 OpenVINO IR disagrees with torch: max abs error {comparison.max_abs_error:.3g} "
                              f"> {comparison.tolerance:.3g} at {result['inference_precision']} on {len(batch)} "
                              f"images ({source})")
    log.info("OpenVINO %s parity vs torch: max abs error %.2e at %s", job.precision, comparison.max_abs_error,
             result["inference_precision"])
    return result
