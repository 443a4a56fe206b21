"""What an engine really runs, per layer, from TensorRT's engine inspector.

``engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)`` gives
``{"Layers": [...], "Bindings": [...]}``; with ``ProfilingVerbosity.DETAILED`` set at build time each
layer is an object with ``Name``, ``LayerType``, ``TacticName`` and ``Inputs``/``Outputs`` whose
``Format/Datatype`` reads e.g. "Row major linear FP32", "Half", "Thirty-two wide channel vectorized row
major Int8 format." (the developer guide's engine-inspector example). With dynamic shapes the formats read
"N/A due to dynamic shapes" unless the inspector is given an execution context whose input shapes are set,
so :func:`inspect_engine` sets the profile's OPT shape first.

:func:`parse_layers` and :func:`summarize` are pure (tested without TensorRT); :func:`inspect_engine`
needs TensorRT and a GPU.
"""

from __future__ import annotations

import json

# Substrings of Format/Datatype, most specific first ("bf16" before "fp16"; "float" last: "FP32" engines
# print "Float" on some versions).
_PRECISIONS = (("int8", "INT8"), ("fp8", "FP8"), ("int4", "INT4"), ("bf16", "BF16"), ("bfloat", "BF16"),
               ("fp16", "FP16"), ("half", "FP16"), ("int32", "INT32"), ("int64", "INT64"), ("bool", "BOOL"),
               ("fp32", "FP32"), ("float", "FP32"))
GEMM_WORDS = ("gemm", "matmul", "matrixmultiply", "matrix_multiply", "convolution", "conv")


def precision_of(text: str) -> str | None:
    low = str(text).lower()
    return next((name for key, name in _PRECISIONS if key in low), None)


def _is_dla(layer: dict) -> bool:
    """Whether the inspector places this layer on DLA. Not confirmed against a DLA engine here (no
    Jetson): DLA subgraphs are reported as ``{ForeignNode[...]}`` layers next to "... to nvm" / "... from
    nvm" copies into DLA memory (NVIDIA/TensorRT#3143), so a layer counts when its type, tactic or a tensor
    location names DLA, or it is such an nvm copy."""
    fields = [layer.get("LayerType", ""), layer.get("TacticName", "")]
    fields += [t.get("Location", "") for t in layer.get("Inputs", []) + layer.get("Outputs", []) if isinstance(t, dict)]
    name = str(layer.get("Name", "")).lower()
    return any("dla" in str(f).lower() for f in fields) or " to nvm" in name or " from nvm" in name


def parse_layers(info) -> list[dict]:
    """The inspector's JSON (str or dict) -> one dict per layer: name, type, tactic, input and output
    precisions, whether it runs on DLA."""
    data = json.loads(info) if isinstance(info, (str, bytes)) else info
    layers = []
    for layer in data.get("Layers", []):
        if not isinstance(layer, dict):  # LAYER_NAMES_ONLY verbosity: just the name
            layers.append({"name": str(layer), "type": None, "tactic": None, "inputs": [], "outputs": [],
                           "dla": "dla" in str(layer).lower()})
            continue
        tensors = lambda key: [precision_of(t.get("Format/Datatype", "")) for t in layer.get(key, [])  # noqa: E731
                               if isinstance(t, dict)]
        layers.append({"name": str(layer.get("Name", "")), "type": layer.get("LayerType"),
                       "tactic": layer.get("TacticName"), "inputs": tensors("Inputs"), "outputs": tensors("Outputs"),
                       "dla": _is_dla(layer)})
    return layers


def is_gemm(layer: dict) -> bool:
    text = f"{layer.get('type') or ''} {layer.get('tactic') or ''} {layer.get('name') or ''}".lower()
    return any(word in text for word in GEMM_WORDS)


def summarize(layers: list) -> dict:
    """Counts for the manifest: layers, on DLA, and by the precision their outputs carry."""
    counts = {"layers": len(layers), "dla": sum(1 for layer in layers if layer["dla"])}
    for layer in layers:
        for precision in set(p for p in layer["outputs"] if p):
            counts[precision.lower()] = counts.get(precision.lower(), 0) + 1
    counts["int8_gemms"] = sum(1 for layer in layers if is_gemm(layer) and "INT8" in layer["inputs"])
    return counts


def inspect_engine(engine, input_name: str | None = None, shape=None) -> list[dict]:
    """Per-layer report of a deserialized engine; ``shape`` (the OPT input shape) resolves dynamic formats."""
    import tensorrt as trt

    inspector = engine.create_engine_inspector()
    context = None
    if input_name is not None and shape is not None:
        context = engine.create_execution_context()
        if context is not None and context.set_input_shape(input_name, tuple(shape)):
            inspector.execution_context = context
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    del inspector, context
    return parse_layers(info)
