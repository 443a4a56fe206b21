"""What DLA (the Jetson Orin/Xavier deep learning accelerator) can take, checked before anything is built.

From NVIDIA's DLA pages:
- "DLA support is currently limited to networks running in FP16 and INT8 mode" (Building and Launching
  the Loadable): an FP32 engine has nothing DLA can run, and with GPU fallback on, "layers that cannot run
  on DLA silently fall back to GPU execution without an error" (DLA Runtime Configuration). So
  ``--dla-core`` with ``--precision fp32`` is refused.
- "DLA does not support dynamic dimensions, so the profile's min, max, and opt values must be equal for
  wildcard dimensions" (DLA Supported Layers and Restrictions): a 1,8,32 batch profile would put every
  layer on the GPU, so ``--dla-core`` needs ``--batch N``.
- Versions (Working with DLA, 11.4.1): "TensorRT 10.7 was the last 10.x release that supported DLA";
  "DLA was unavailable in TensorRT 11.0 through 11.3"; "TensorRT 11.4.0 supported DLA only on Windows on
  ARM"; 11.4.1 "supports DLA on NVIDIA Jetson AGX Orin when using NVIDIA JetPack 7.2.2 or later".
  JetPack 6 ships TensorRT 10.3.
"""

from __future__ import annotations

from vit_edge.errors import BackendUnavailable, VitEdgeError

DOCS = "https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/work-with-dla.html"


def check_request(precision: str, dla_core, batch) -> None:
    """Refuse a DLA build that could not put a layer on DLA (one line, exit 2)."""
    if dla_core is None:
        return
    if precision == "fp32":
        raise VitEdgeError("--dla-core needs --precision fp16 or int8: DLA computes only FP16 and INT8, so an FP32 "
                           "engine would run entirely on the GPU",
                           hint="use --precision fp16 (or int8 with --calib), or drop --dla-core")
    if batch is not None and not batch[0] == batch[1] == batch[2]:
        raise VitEdgeError(f"--dla-core needs a fixed batch, got --batch {','.join(map(str, batch))}: DLA does not "
                           "support dynamic dimensions (profile min, opt and max must be equal)",
                           hint="pass --batch N, e.g. --batch 8")


def version3(text) -> tuple:
    """``"10.3.0.26"`` -> ``(10, 3, 0)`` (missing parts are 0)."""
    parts = [int(p) for p in str(text).split(".")[:3] if p.isdigit()]
    return tuple(parts + [0] * (3 - len(parts)))


def unavailable_reason(tensorrt_version) -> str | None:
    """Why TensorRT ``tensorrt_version`` has no DLA on Jetson (None: it has)."""
    v = version3(tensorrt_version)
    if v[:2] <= (10, 7) or v >= (11, 4, 1):
        return None
    if v[0] == 10:
        return f"TensorRT {tensorrt_version} has no DLA (10.7 was the last 10.x release with DLA; JetPack 6 ships 10.3)"
    return (f"TensorRT {tensorrt_version} has no DLA on Jetson (absent in 11.0-11.3, 11.4.0 only on Windows on ARM, "
            "back in 11.4.1 with JetPack 7.2.2 on Jetson AGX Orin)")


def check_cores(tensorrt_version, dla_core: int, cores: int) -> None:
    """Refuse a DLA core this TensorRT or this board does not have."""
    reason = unavailable_reason(tensorrt_version)
    if reason:
        raise BackendUnavailable(f"--dla-core {dla_core}: {reason}", hint=f"drop --dla-core; see {DOCS}")
    if cores <= dla_core:
        raise BackendUnavailable(f"DLA core {dla_core} requested but this device has {cores}",
                                 hint="drop --dla-core (DLA is on Jetson AGX Orin, Orin NX and Xavier boards; "
                                      "desktop and data-center GPUs have none)")
