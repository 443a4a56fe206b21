"""INT8 post-training quantization with NNCF, on real calibration images.

NNCF's transformer recipe (``ModelType.TRANSFORMER``) is the default: it keeps LayerNorm, Softmax, GELU
and the residual adds in floating point, which is what stops a ViT's accuracy from collapsing in INT8.
The same settings serve both backends NNCF supports here: an ONNX graph (Q/DQ for ONNX Runtime and
TensorRT) and an OpenVINO model (FakeQuantize for the OpenVINO CPU plugin).

The recipe (preset, SmoothQuant, activation ranges) is chosen per model among a few candidates
(:mod:`.recipes`); ``--budget`` then returns the fewest operations to float until the gate's thresholds
hold (:mod:`.budget`), and ``--max-accuracy-drop`` runs NNCF's own top-1 accuracy control instead
(:mod:`.accuracy_control`).
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from pathlib import Path

import numpy as np

from vit_edge.artifact.manifest import QuantizationRecord
from vit_edge.errors import DataError, ExportError, VitEdgeError, first_line
from vit_edge.progress import phase

log = logging.getLogger("vit_edge")

# ---------------------------------------------------------------- option checks (before the slow part)


def check_int8_options(precision: str, options) -> None:
    """Fail fast, before any export, on INT8 flags that cannot work (``options``: a ``job.ConvertOptions``)."""
    int8 = options.int8
    given = int8.given_flags()
    if precision != "int8":
        if given:
            raise VitEdgeError(f"{', '.join(given)} only apply to --precision int8",
                               hint="add --precision int8 or drop those options")
        return
    from vit_edge.data import load_images

    if not int8.calib:
        raise DataError("INT8 needs calibration images: no --calib given",
                        hint="pass --calib with an image folder, a .npy/.npz of preprocessed images, or a "
                             "built-in spec like digits:train (vit-edge never calibrates on random data)")
    calib = load_images(int8.calib)  # lists files only: missing/empty sources fail here, not after export
    _require_one_decodable(calib)
    drop = int8.max_accuracy_drop
    if drop is not None:
        if drop < 0:
            raise VitEdgeError(f"--max-accuracy-drop must be >= 0 points (got {drop})")
        validate = options.validation.data
        labelled = load_images(validate).labelled if validate else calib.labelled
        if not labelled:
            where = f"--validate {validate}" if validate else f"--calib {int8.calib} (no --validate given)"
            raise DataError(f"--max-accuracy-drop needs labelled validation data, but {where} has no labels",
                            hint="pass --validate with class subfolders, a .npz with labels, or digits:test")


def _require_one_decodable(images) -> None:
    """Fail before the export when not a single calibration file decodes (a folder of non-images)."""
    from vit_edge.preprocess import open_image

    if images.preprocessed is not None or not all(isinstance(item, (str, Path)) for item in images.items):
        return
    for item in images.items:
        try:
            open_image(item)
            return
        except DataError:
            continue
    raise DataError(f"{images.source}: none of its {len(images.items)} files is a decodable image",
                    hint="point --calib at a folder of JPEG/PNG images")


# ---------------------------------------------------------------- calibration and settings

# Images sampled after the calibration ones to choose the recipe on: enough that one flipped image is 1.6
# points, few enough to cost seconds per candidate.
SCORING_IMAGES = 64
FALLBACK_SCORING_IMAGES = 32  # without held-out images the recipes are compared on calibration images


def calibration_for(job):
    """The job's calibration images, loaded once and shared by every quantizer the target runs."""
    cached = getattr(job, "calibration", None)
    if cached is None:
        from vit_edge.calibration import load_calibration

        phase(f"loading {int(job.int8.calib_size)} calibration images from {job.int8.calib}")
        cached = load_calibration(job.int8.calib, job.loaded.preprocess, size=int(job.int8.calib_size),
                                  seed=int(job.seed), label_names=job.loaded.labels, scoring=SCORING_IMAGES)
        job.calibration = cached
    return cached


def _nncf():
    """Import NNCF with its chatty logger quieted (our CLI prints its own summary)."""
    from vit_edge.errors import require

    # NNCF imports torch's C++-extension helper, which warns about CUDA on every CPU-only machine.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    nncf = require("nncf", "openvino")
    if not log.isEnabledFor(logging.INFO):
        nncf.set_log_level(logging.ERROR)
    return nncf


class _Progress:
    """The calibration items, as an iterable that shows a tqdm bar for each pass NNCF makes over them.

    NNCF's own progress bars go to stdout (where our results go), so they are hidden unless verbose."""

    def __init__(self, items: list):
        self.items = items
        self.passes = 0

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        from vit_edge.progress import progress_bar

        self.passes += 1
        yield from progress_bar(self.items, desc=f"quantizing (calibration pass {self.passes})")


@contextlib.contextmanager
def _quiet_stdout():
    if log.isEnabledFor(logging.INFO):
        yield
        return
    import io

    with contextlib.redirect_stdout(io.StringIO()):
        yield


def settings(job, *, symmetric_activations: bool = False) -> dict:
    """The NNCF settings for this job, as plain data (recorded in the manifest)."""
    preset = "performance" if symmetric_activations else (job.int8.preset or "mixed")
    alpha = job.int8.smooth_quant_alpha
    return {"tool": "nncf", "model_type": "transformer", "preset": preset,
            "bias_correction": "off" if job.int8.no_bias_correction else "fast",
            "smooth_quant_alpha": None if alpha is None else float(alpha),
            "activation_range": job.int8.activation_range, "ignore": list(job.int8.ignore)}


def _nncf_arguments(nncf, chosen: dict, ignored: tuple[list, list], subset_size: int) -> dict:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    # "off" disables it; NNCF's other mode (fast_bias_correction=False) is a slower full bias correction
    # that also fails on some ONNX graphs, so the fast one is the only one offered.
    advanced = AdvancedQuantizationParameters(disable_bias_correction=chosen["bias_correction"] == "off")
    if chosen.get("activation_range") == "minmax":  # None or mean-minmax: NNCF's default (see .recipes)
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet

        advanced.activations_range_estimator_params = RangeEstimatorParametersSet.MINMAX
    if chosen["smooth_quant_alpha"] is not None:  # negative switches SmoothQuant off (NNCF's convention)
        advanced.smooth_quant_alphas = AdvancedSmoothQuantParameters(matmul=chosen["smooth_quant_alpha"])
    names, types = ignored
    return {"preset": {"performance": nncf.QuantizationPreset.PERFORMANCE,
                       "mixed": nncf.QuantizationPreset.MIXED}[chosen["preset"]],
            "model_type": nncf.ModelType.TRANSFORMER, "subset_size": subset_size,
            "fast_bias_correction": True,
            "ignored_scope": nncf.IgnoredScope(names=names, types=types) if names or types else None,
            "advanced": advanced}


def _as_quantize_kwargs(arguments: dict) -> dict:
    """:func:`_nncf_arguments` named as ``nncf.quantize`` names them."""
    arguments = dict(arguments)
    arguments["advanced_parameters"] = arguments.pop("advanced")
    return arguments


def resolve_ignore(entries, node_names, op_types) -> tuple[list, list]:
    """Split ``--ignore`` entries into node names and op types of this graph; an unknown entry is an error."""
    names, types = [], []
    for entry in entries:
        if entry in node_names:
            names.append(entry)
        elif entry in op_types:
            types.append(entry)
        else:
            close = difflib.get_close_matches(entry, sorted(set(node_names) | set(op_types)), n=3, cutoff=0.5)
            raise VitEdgeError(f"--ignore {entry!r} is neither a node name nor an op type of this model",
                               hint=(f"did you mean {', '.join(close)}? " if close else "") +
                                    f"op types here: {', '.join(sorted(op_types))}")
    return names, types


# ---------------------------------------------------------------- the two backends


def _run(job, model, backend: str, feed, evaluate, node_names, op_types, *, symmetric_activations=False,
         infer=None, coverage=None, candidate_hook=None):
    """Quantize ``model`` (ONNX ModelProto or ov.Model) and return it with the recorded info.

    ``infer(model, batches)`` runs an uncompiled model of this backend on a list of batches and returns
    the outputs concatenated (for the SmoothQuant choice)."""
    nncf = _nncf()
    calib = calibration_for(job)
    chosen = settings(job, symmetric_activations=symmetric_activations)
    ignored = resolve_ignore(chosen["ignore"], node_names, op_types)
    arguments = _nncf_arguments(nncf, chosen, ignored, len(calib))
    calibration = nncf.Dataset(_Progress(list(calib.batches(1))), feed)
    info = {**chosen, "backend": backend, "ignored_names": ignored[0], "ignored_types": ignored[1],
            "calibration": calib.summary()}
    try:
        with _quiet_stdout():
            if job.int8.max_accuracy_drop is None:
                if infer is None:
                    advanced = arguments.pop("advanced")
                    return nncf.quantize(model, calibration, advanced_parameters=advanced, **arguments), info
                return _search(job, nncf, model, calibration, chosen, ignored, calib, infer, info,
                               symmetric_activations, coverage, candidate_hook)
            from vit_edge.convert.stages.accuracy_control import accuracy_controlled

            phase(f"quantizing with NNCF's accuracy control (max top-1 drop {job.int8.max_accuracy_drop:g} pts)")
            quantized, info["accuracy_control"] = accuracy_controlled(job, nncf, model, calibration, evaluate,
                                                                      arguments, calib.holdout)
            return quantized, info
    except nncf.ValidationError as exc:
        raise VitEdgeError(f"NNCF rejected the quantization settings: {first_line(exc)}") from None


def _search(job, nncf, model, calibration, chosen, ignored, calib, infer, info, symmetric_activations, coverage,
            candidate_hook=None):
    """Quantize with each candidate recipe and keep the one closest to FP32 on held-out images
    (``candidate_hook(model)``: edits each candidate in place before it is scored, e.g. TensorRT's rules)."""
    from vit_edge.convert.stages import recipes
    from vit_edge.convert.stages.shared_ptq import SharedQuantizer, keep_float_weights

    fixed_range = job.int8.activation_range
    candidates = recipes.candidates(preset=job.int8.preset, smooth_quant_alpha=job.int8.smooth_quant_alpha,
                                    symmetric_only=symmetric_activations, activation_range=fixed_range)

    def arguments_for(recipe):
        arguments = _nncf_arguments(nncf, {**chosen, "preset": recipe.preset, "smooth_quant_alpha":
                                           recipe.smooth_quant_alpha, "activation_range": recipe.activation_range},
                                    ignored, len(calib))
        keep_float_weights(arguments["advanced"])  # the budget edits them; compress_weights() stores them INT8
        return arguments

    # Every recipe the search may try (the second stage's too) is measured in shared statistics passes.
    every = list(dict.fromkeys(candidates + [r for c in candidates for r in recipes.second_stage(c, fixed_range)]))
    phase(f"collecting calibration statistics for {len(every)} INT8 recipes")
    with _quiet_stdout():
        shared = SharedQuantizer(nncf, model, calibration, {r: _as_quantize_kwargs(arguments_for(r)) for r in every})

    def quantize(recipe):
        with _quiet_stdout():
            candidate = shared.quantize(recipe)
        if candidate_hook is not None:
            candidate_hook(candidate)
        return candidate

    held_out = calib.scoring is not None and len(calib.scoring) > 0
    images = calib.scoring if held_out else calib.images[:FALLBACK_SCORING_IMAGES]
    scoring = [images[i:i + 1] for i in range(len(images))]  # one image per call: any batch axis works
    quantized, best, ranked = recipes.search(model, candidates, quantize, infer, scoring, task=job.loaded.task,
                                             coverage=coverage,
                                             refine=lambda winner: recipes.second_stage(winner, fixed_range))
    info["preset"], info["smooth_quant_alpha"] = best.preset, best.smooth_quant_alpha
    info["activation_range"] = best.activation_range
    info["recipe_search"] = {"chosen": best.name, "candidates": [s.to_dict() for s in ranked],
                             "scored_on": {"images": len(scoring), "held_out": held_out}}
    if len(ranked) > 1:
        job.messages.append(recipes.summary_line(ranked, len(scoring), held_out, job.loaded.task))

    return quantized, info


def quantize_onnx(job, src: Path, dst: Path, *, symmetric_activations: bool = False) -> QuantizationRecord:
    """Quantize the FP32 ONNX ``src`` into a Q/DQ ONNX ``dst`` that ONNX Runtime (and TensorRT) run.

    ``symmetric_activations`` forces the PERFORMANCE preset (signed, zero-point-0 activations) that
    TensorRT needs. Returns the quantization record, also stored in ``job.manifest.quantization``.
    """
    import onnx

    model = onnx.load(str(src))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise VitEdgeError(f"{src.name} is already quantized (it holds QuantizeLinear/DequantizeLinear nodes)",
                           hint="start INT8 from the FP32 model")
    input_name = model.graph.input[0].name

    def evaluate(candidate, batch):
        import onnxruntime as ort

        session = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {input_name: batch})[0]

    def infer(candidate, batches):
        import onnxruntime as ort

        session = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {input_name: batch})[0] for batch in batches])

    from vit_edge.convert.stages.budget import mac_share
    from vit_edge.convert.stages.budget_backends import onnx_backend, onnx_quantized_ops
    from vit_edge.convert.stages import budget, qdq
    from vit_edge.convert.stages.opmap import graph_ops
    from vit_edge.convert.stages.shared_ptq import compress_weights

    graph = graph_ops(model, job.loaded.module)
    # TensorRT runs only signed INT8 Q/DQ: each candidate is scored (and the budget judged) as rewritten for it.
    signed = qdq.make_signed if symmetric_activations else None
    quantized, info = _run(job, model, "onnx", lambda batch: {input_name: batch}, evaluate,
                           {n.name for n in model.graph.node}, {n.op_type for n in model.graph.node},
                           symmetric_activations=symmetric_activations, infer=infer, candidate_hook=signed,
                           coverage=lambda q: mac_share(graph, onnx_quantized_ops(q), lambda n: n))
    quantized = compress_weights(budget.meet(job, quantized, info, graph, onnx_backend(model),
                                           calibration_for(job)))
    info["quantize_nodes"] = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    if info["quantize_nodes"] == 0:
        raise ExportError("NNCF inserted no quantizers: the INT8 model would be the FP32 model",
                          hint="check --ignore; it may exclude every quantizable operation")
    onnx.save(quantized, str(dst))
    job.manifest.quantization = QuantizationRecord.from_dict(info)
    return job.manifest.quantization


def quantize_openvino(job, model, fp32_onnx=None):
    """Quantize an ``ov.Model`` in place of its FP32 weights (FakeQuantize nodes the CPU plugin fuses).

    ``fp32_onnx``, the ONNX the model was converted from, names its operations for the budget and the MAC
    share; without it the model is taken to come from the PyTorch frontend, whose op names carry the module
    paths themselves."""
    from vit_edge.convert.stages import budget
    from vit_edge.convert.stages.budget import mac_share
    from vit_edge.convert.stages.budget_backends import openvino_backend, openvino_float_precision, \
        openvino_quantized_ops
    from vit_edge.convert.stages.shared_ptq import compress_weights

    ops = model.get_ops()

    def evaluate(compiled, batch):
        return compiled(batch)[0]

    def infer(candidate, batches):
        import openvino as ov

        compiled = ov.Core().compile_model(candidate, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(batch)[0] for batch in batches])

    if fp32_onnx is not None:
        import onnx

        from vit_edge.convert.stages.opmap import graph_ops

        graph = graph_ops(onnx.load(str(fp32_onnx)), job.loaded.module)
        onnx_name = lambda name: name.split("/")[0]  # noqa: E731 - OpenVINO keeps the ONNX node name
    else:
        from vit_edge.convert.stages.opmap import openvino_graph_ops

        graph, onnx_name = openvino_graph_ops(model), (lambda name: name)
    coverage = lambda q: mac_share(graph, openvino_quantized_ops(q), onnx_name)  # noqa: E731
    quantized, info = _run(job, model, "openvino", lambda batch: batch, evaluate,
                                       {op.get_friendly_name() for op in ops}, {op.get_type_name() for op in ops},
                                       infer=infer, coverage=coverage)
    at_f32 = openvino_backend(model, onnx_name, "f32") if job.int8.budget and openvino_float_precision() != "f32" \
        else None  # only a budget asks the device
    quantized = compress_weights(budget.meet(job, quantized, info, graph, openvino_backend(model, onnx_name),
                                           calibration_for(job), at_f32))
    info["fake_quantize_nodes"] = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    if info["fake_quantize_nodes"] == 0:
        raise ExportError("NNCF inserted no quantizers: the INT8 model would be the FP32 model",
                          hint="check --ignore; it may exclude every quantizable operation")
    job.manifest.quantization = QuantizationRecord.from_dict(info)
    return quantized
