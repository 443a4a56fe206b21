"""The ``trtexec`` lines that build the same engine as ``vit-edge build-engine``, one per TensorRT major.

Why two lines: on the GPU both majors take the same strongly typed build (``--stronglyTyped`` is required
on 10.x and a no-op on 11.x,
https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-trtexec.html), but
DLA differs. trtexec 10.x, in ``samples/common/sampleEngines.cpp`` (``setupNetworkAndConfig``), does for
``--useDLACore``::

    config.setFlag(BuilderFlag::kPREFER_PRECISION_CONSTRAINTS);
    ...
    if (!build.int8) { config.setFlag(BuilderFlag::kFP16); }

and ``--stronglyTyped`` turns int8 off, so a strongly typed DLA build always carries kFP16, which the
strongly typed builder refuses ("condition: !config.getFlag(BuilderFlag::kFP16)", NVIDIA/TensorRT#4228).
On 10.x a DLA engine is therefore built weakly typed from the same ONNX (its Q/DQ are explicit
quantization either way) with the precisions DLA computes in: ``--int8 --fp16`` for INT8 (``--fp16``
too, because DLA has no FP32 and trtexec adds kFP16 only without ``--int8``), ``--fp16`` for FP16.
TensorRT 11 removed ``--fp16/--int8`` and builds DLA strongly typed ("Supply a strongly typed ONNX
model", Building and Launching the Loadable, 11.4.0), so its line is the GPU line plus the DLA flags.
"""

from __future__ import annotations

import os
import shlex

ONNX_FILE = "model.onnx"
ENGINE_FILE = "model.engine"
MAJORS = ("10.x", "11.x")


def dla_precision_flags(precision: str) -> list:
    """What trtexec 10.x needs on the command line for a DLA build of a ``precision`` ONNX."""
    if precision == "int8":
        return ["--int8", "--fp16"]
    if precision == "fp16":
        return ["--fp16"]
    raise ValueError("DLA computes only FP16 and INT8: no DLA engine from an FP32 ONNX")


def trtexec_command(preprocess, *, input_name: str, batch, precision: str = "fp32", workspace_gb=None,
                    dla_core=None, timing_cache=None, major: str = "10.x") -> str:
    """The trtexec line (run inside the --out directory) for TensorRT ``major`` ("10.x" or "11.x").

    --memPoolSize takes MiB; the timing cache path is absolute because the line runs in another folder."""
    if major not in MAJORS:
        raise ValueError(f"no trtexec line for TensorRT {major} (known: {', '.join(MAJORS)})")
    h, w = preprocess.input_size
    shape = lambda b: f"{input_name}:{b}x{preprocess.channels}x{h}x{w}"  # noqa: E731
    weak_dla = dla_core is not None and major == "10.x"
    parts = ["trtexec", f"--onnx={ONNX_FILE}", f"--saveEngine={ENGINE_FILE}"]
    if not weak_dla:
        parts.append("--stronglyTyped")
    parts += [f"--minShapes={shape(batch[0])}", f"--optShapes={shape(batch[1])}", f"--maxShapes={shape(batch[2])}"]
    if workspace_gb:
        parts.append(f"--memPoolSize=workspace:{max(1, round(workspace_gb * 1024))}")
    if dla_core is not None:
        parts += [f"--useDLACore={dla_core}", "--allowGPUFallback"]
        if weak_dla:
            parts += dla_precision_flags(precision)
    if timing_cache:
        parts.append(f"--timingCacheFile={os.path.abspath(timing_cache)}")
    return shlex.join(parts)


def trtexec_commands(preprocess, **arguments) -> dict:
    """``{"10.x": line, "11.x": line}``: the line that builds on each TensorRT major."""
    return {major: trtexec_command(preprocess, major=major, **arguments) for major in MAJORS}
