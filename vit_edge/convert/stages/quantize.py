"""INT8 post-training quantization with NNCF, on real calibration images.

NNCF's transformer recipe (``ModelType.TRANSFORMER``) is the default: it keeps LayerNorm, Softmax, GELU
and the residual adds in floating point, which is what stops a ViT's accuracy from collapsing in INT8.
The same settings serve both backends NNCF supports here: an ONNX graph (Q/DQ for ONNX Runtime and
TensorRT) and an OpenVINO model (FakeQuantize for the OpenVINO CPU plugin).

With ``max_accuracy_drop`` NNCF's accuracy-controlled mode returns the operations that cost the most
accuracy to floating point until the drop (in top-1 points, on labelled validation data) is met; which
operations it returned is recorded in the manifest and told to the user.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from pathlib import Path

import numpy as np

from vit_edge.artifact.manifest import QuantizationRecord
from vit_edge.errors import DataError, ExportError, VitEdgeError, first_line

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


def calibration_for(job):
    """The job's calibration images, loaded once and shared by every quantizer the target runs."""
    cached = getattr(job, "calibration", None)
    if cached is None:
        from vit_edge.calibration import load_calibration

        cached = load_calibration(job.int8.calib, job.loaded.preprocess, size=int(job.int8.calib_size),
                                  seed=int(job.seed), label_names=job.loaded.labels)
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
            "ignore": list(job.int8.ignore)}


def _nncf_arguments(nncf, chosen: dict, ignored: tuple[list, list], subset_size: int) -> dict:
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, AdvancedSmoothQuantParameters

    # "off" disables it; NNCF's other mode (fast_bias_correction=False) is a slower full bias correction
    # that also fails on some ONNX graphs, so the fast one is the only one offered.
    advanced = AdvancedQuantizationParameters(disable_bias_correction=chosen["bias_correction"] == "off")
    if chosen["smooth_quant_alpha"] is not None:  # negative switches SmoothQuant off (NNCF's convention)
        advanced.smooth_quant_alphas = AdvancedSmoothQuantParameters(matmul=chosen["smooth_quant_alpha"])
    names, types = ignored
    return {"preset": {"performance": nncf.QuantizationPreset.PERFORMANCE,
                       "mixed": nncf.QuantizationPreset.MIXED}[chosen["preset"]],
            "model_type": nncf.ModelType.TRANSFORMER, "subset_size": subset_size,
            "fast_bias_correction": True,
            "ignored_scope": nncf.IgnoredScope(names=names, types=types) if names or types else None,
            "advanced": advanced}


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


# ---------------------------------------------------------------- accuracy-controlled mode


def _validation_images(job) -> tuple[np.ndarray, np.ndarray, str]:
    """Labelled images for accuracy control: --validate when given, else the calibration hold-out."""
    from vit_edge.data import load_images

    spec = job.validation.data
    images = load_images(spec, job.loaded.labels) if spec else calibration_for(job).holdout
    if images is None or not images.labelled:
        raise DataError("--max-accuracy-drop needs labelled validation data",
                        hint="pass --validate with class subfolders, a .npz with labels, or digits:test")
    xs, ys = [], []
    for batch, labels in images.batches(job.loaded.preprocess, batch_size=32, limit=job.validation.limit):
        xs.append(batch)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys), images.source


class _RevertedOps(logging.Handler):
    """Catches NNCF's report of the operations accuracy control returned to floating point.

    NNCF only logs that list (the quantized model carries no record of it), so we listen for it while
    keeping NNCF's own console output quiet."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.reverted: list[str] = []
        self.quantized: int | None = None

    def emit(self, record):
        text = record.getMessage()
        if "were reverted back to the floating-point precision" in text:
            head, _, body = text.partition(":\n")
            words = head.split()
            self.quantized = int(words[3]) if len(words) > 3 and words[3].isdigit() else None
            self.reverted = [line.strip() for line in body.splitlines() if line.strip()]


@contextlib.contextmanager
def _listen_to_nncf():
    nncf_logger = logging.getLogger("nncf")
    listener = _RevertedOps()
    saved = (nncf_logger.level, [(h, h.level) for h in nncf_logger.handlers])
    quiet = not log.isEnabledFor(logging.INFO)
    nncf_logger.setLevel(logging.INFO)
    for handler, _ in saved[1]:
        handler.setLevel(logging.ERROR if quiet else logging.INFO)
    nncf_logger.addHandler(listener)
    try:
        yield listener
    finally:
        nncf_logger.removeHandler(listener)
        nncf_logger.setLevel(saved[0])
        for handler, level in saved[1]:
            handler.setLevel(level)


# ---------------------------------------------------------------- the two backends


def _run(job, model, backend: str, feed, evaluate, node_names, op_types, *, symmetric_activations=False,
         infer=None):
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
                if chosen["smooth_quant_alpha"] is None and infer is not None:
                    quantized, info = _with_or_without_smooth_quant(nncf, model, calibration, arguments, infer,
                                                                    calib, info)
                    cosine = info["smooth_quant"]["mean_cosine_to_fp32"]
                    if info["smooth_quant"]["chosen"] == "off":
                        job.messages.append(f"SmoothQuant left off: INT8 output closer to FP32 without it (mean "
                                            f"cosine {cosine['off']:.4f} vs {cosine['on']:.4f} with it, on "
                                            f"{info['smooth_quant']['images']} calibration images)")
                    return quantized, info
                advanced = arguments.pop("advanced")
                return nncf.quantize(model, calibration, advanced_parameters=advanced, **arguments), info
            quantized, info["accuracy_control"] = _accuracy_controlled(job, nncf, model, calibration, evaluate,
                                                                       arguments)
            return quantized, info
    except nncf.ValidationError as exc:
        raise VitEdgeError(f"NNCF rejected the quantization settings: {first_line(exc)}") from None


SMOOTH_QUANT_CHECK_IMAGES = 32  # calibration images both variants are compared on


def _with_or_without_smooth_quant(nncf, model, calibration, arguments, infer, calib, info):
    """Quantize with NNCF's SmoothQuant and without it; keep whichever stays closer to the FP32 model.

    Why: SmoothQuant moves activation range into the weights, which pays off where a few activation
    channels carry outliers (common in trained transformers) and costs accuracy where none do. Measured on
    random-weight timm models calibrated on 16 photos (OpenVINO INT8, mean cosine to FP32 with / without):
    Swin-T 0.948 / 0.999, LeViT-128 0.934 / 0.993, ViT-S 0.999 / 0.999. Which one wins depends on the
    weights, so it is decided per model, on calibration images, at the cost of a second NNCF pass."""
    import copy

    from nncf.quantization.advanced_parameters import AdvancedSmoothQuantParameters

    from vit_edge.metrics import row_cosines

    advanced = arguments.pop("advanced")
    without_sq = copy.deepcopy(advanced)
    without_sq.smooth_quant_alphas = AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)
    check = list(calib.batches(1))[:SMOOTH_QUANT_CHECK_IMAGES]  # one image per call: any batch axis works
    reference = infer(model, check)
    candidates, cosines = {}, {}
    for name, params in (("on", advanced), ("off", without_sq)):
        source = model.clone() if hasattr(model, "clone") else copy.deepcopy(model)
        candidates[name] = nncf.quantize(source, calibration, advanced_parameters=params, **arguments)
        out = infer(candidates[name], check)
        cosines[name] = float(row_cosines(out, reference).mean())
    pick = "on" if cosines["on"] >= cosines["off"] else "off"
    info["smooth_quant"] = {"chosen": pick, "mean_cosine_to_fp32": cosines, "images": len(check)}
    if pick == "off":
        info["smooth_quant_alpha"] = -1.0
    return candidates[pick], info


def _accuracy_controlled(job, nncf, model, calibration, evaluate, arguments):
    """``nncf.quantize_with_accuracy_control`` on top-1 of labelled data; returns the model and a record."""
    drop = float(job.int8.max_accuracy_drop)
    xs, ys, source = _validation_images(job)
    validation = nncf.Dataset([(xs[i:i + 32], ys[i:i + 32]) for i in range(0, len(xs), 32)])

    def top1(candidate, items):
        hits = total = 0
        for x, y in items:
            hits += int((evaluate(candidate, x).argmax(1) == y).sum())
            total += len(y)
        return hits / max(total, 1)

    with _listen_to_nncf() as listener:
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, validation, top1, max_drop=drop / 100.0, drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=arguments.pop("advanced"), **arguments)
    reverted = listener.reverted
    job.messages.append(f"accuracy control (max drop {drop:g} pts on {source}): "
                        + (f"returned {len(reverted)} operation(s) to floating point: {', '.join(reverted)}"
                           if reverted else "no operation needed to return to floating point"))
    return quantized, {"max_drop_points": drop, "validation": source, "validation_images": int(len(xs)),
                       "reverted_to_float": reverted, "quantized_operations": listener.quantized}


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

    quantized, info = _run(job, model, "onnx", lambda batch: {input_name: batch}, evaluate,
                           {n.name for n in model.graph.node}, {n.op_type for n in model.graph.node},
                           symmetric_activations=symmetric_activations, infer=infer)
    info["quantize_nodes"] = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    if info["quantize_nodes"] == 0:
        raise ExportError("NNCF inserted no quantizers: the INT8 model would be the FP32 model",
                          hint="check --ignore; it may exclude every quantizable operation")
    onnx.save(quantized, str(dst))
    job.manifest.quantization = QuantizationRecord.from_dict(info)
    return job.manifest.quantization


def quantize_openvino(job, model):
    """Quantize an ``ov.Model`` in place of its FP32 weights (FakeQuantize nodes the CPU plugin fuses)."""
    ops = model.get_ops()

    def evaluate(compiled, batch):
        return compiled(batch)[0]

    def infer(candidate, batches):
        import openvino as ov

        compiled = ov.Core().compile_model(candidate, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return np.concatenate([compiled(batch)[0] for batch in batches])

    quantized, info = _run(job, model, "openvino", lambda batch: batch, evaluate,
                           {op.get_friendly_name() for op in ops}, {op.get_type_name() for op in ops}, infer=infer)
    info["fake_quantize_nodes"] = sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops())
    if info["fake_quantize_nodes"] == 0:
        raise ExportError("NNCF inserted no quantizers: the INT8 model would be the FP32 model",
                          hint="check --ignore; it may exclude every quantizable operation")
    job.manifest.quantization = QuantizationRecord.from_dict(info)
    return quantized
