"""Target ``openvino``: FP32 ONNX -> OpenVINO IR (``model.xml`` + ``model.bin``) in fp32, fp16 or int8.

INT8 quantizes the OpenVINO model itself with NNCF (after ``ov.convert_model``) rather than converting a
Q/DQ ONNX. Measured both ways (benchmarks/openvino_int8_vs_torch.py --onnx-path; the demo on digits:test)
they tie on speed and accuracy, so the choice rests on support: NNCF's OpenVINO backend is its
best-maintained one, and accuracy control then validates the very model that ships.
"""

from __future__ import annotations

import logging

import numpy as np

from vit_edge.errors import ExportError, ParityError, require

log = logging.getLogger("vit_edge")

ARTIFACT = "model.xml"
FP32_TOLERANCE = 1e-4  # max abs logit error vs torch, relative to max(1, max |logit|), at f32 inference


def check_options(precision: str, options: dict) -> None:
    from vit_edge.convert.quantize import check_int8_options

    check_int8_options(precision, options)


def build(job) -> None:
    from vit_edge.convert.onnx import export_fp32

    ov = require("openvino", "openvino")
    onnx_path = job.workdir / ".fp32.onnx"  # hidden: a build input, not part of the artifact
    export_fp32(job, onnx_path)
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # the converter raises its own OpConversionFailure/GeneralFailure types
        raise ExportError(f"OpenVINO cannot convert the ONNX: {str(exc).splitlines()[0][:200]}") from None
    if job.precision == "int8":
        from vit_edge.convert.quantize import quantize_openvino

        model = quantize_openvino(job, model)
    stable_names(model)
    xml = job.workdir / ARTIFACT
    # fp16 stores FP16 weights (half the size; the CPU plugin decompresses them); fp32/int8 keep FP32
    # constants, so the FP32 IR is bit-for-bit the exported model.
    try:
        ov.save_model(model, str(xml), compress_to_fp16=job.precision == "fp16")
    except Exception as exc:  # OpenVINO reports a failed write as RuntimeError("basic_ios::clear: iostream error")
        from vit_edge.errors import OutputError

        raise OutputError(f"cannot write the OpenVINO IR into {job.workdir.parent} "
                          f"({str(exc).splitlines()[0][:120]})",
                          hint="check free disk space, file-size limits and permissions") from None
    onnx_path.unlink()
    from vit_edge.artifact import library_versions

    job.manifest["artifact"] = ARTIFACT
    job.manifest["versions"] = library_versions("torch", "onnx", "onnxslim", "timm", "transformers", "nncf",
                                                "openvino")
    job.manifest["openvino"] = {"version": ov.__version__, "weights": "model.bin",
                                "compressed_to_fp16": job.precision == "fp16"}
    job.manifest["openvino"]["parity"] = check_parity(job, xml)


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


def check_parity(job, xml) -> dict:
    """Run the IR on the export-parity images and record the precision the CPU plugin really used.

    An FP32 IR must match torch within the export tolerance at f32 (the proof that f32 ran); fp16 and
    int8 are judged by validation (``--validate``), so here they only record their error."""
    from vit_edge.convert.onnx import parity_images
    from vit_edge.runtimes.openvino import OpenVINORuntime

    batch, source = parity_images(job)
    runtime = OpenVINORuntime(xml, preprocess=job.loaded.preprocess, precision=job.precision,
                              device=job.option("device", "CPU"))
    candidate = runtime.run(batch)
    result = {"images": len(batch), "data": source, **runtime.info()}
    result = {k: result[k] for k in ("images", "data", "device", "inference_precision")}
    if job.loaded.module is None:
        return result
    import torch

    with torch.no_grad():
        reference = job.loaded.module(torch.from_numpy(batch)).float().numpy()
    err = float(np.abs(candidate - reference).max())
    result["max_abs_error_vs_torch"] = err
    result["top1_agreement_vs_torch"] = float((candidate.argmax(1) == reference.argmax(1)).mean())
    if job.precision == "fp32":
        tolerance = float(job.option("tolerance", FP32_TOLERANCE)) * max(1.0, float(np.abs(reference).max()))
        result["tolerance"] = tolerance
        if not err <= tolerance:
            raise ParityError(f"the FP32 OpenVINO IR disagrees with torch: max abs error {err:.3g} > "
                              f"{tolerance:.3g} at {result['inference_precision']} on {len(batch)} images ({source})")
    log.info("OpenVINO %s parity vs torch: max abs error %.2e at %s", job.precision, err,
             result["inference_precision"])
    return result
