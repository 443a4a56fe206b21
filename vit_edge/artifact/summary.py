"""``vit-edge info``: what an artifact is, in a dozen ``key: value`` lines read from its manifest.

Only the manifest and file sizes are read (no backend is imported), so ``info`` is instant on any install.
Every field is optional here: a manifest from an older vit-edge, or a partial one, loses lines, not the
command.
"""

from __future__ import annotations

import math
from pathlib import Path

from vit_edge.artifact.manifest import MANIFEST, Manifest, manifest_of

RUNTIMES = {"onnx": "ONNX Runtime", "openvino": "OpenVINO", "tensorrt": "TensorRT"}


def summary(artifact) -> list[str]:
    """The summary lines of an artifact directory (or of the directory an artifact file sits in)."""
    path = Path(artifact)
    directory = path if path.is_dir() else path.parent
    m = manifest_of(path)
    lines = [f"artifact: {directory}",
             f"model: {_model(m)}",
             f"target: {m.target} {m.precision or '?'}",
             f"runs: {_runs(m, directory)}",
             f"input: {_input(m)}"]
    lines += _optional("output", _output(m))
    lines += _optional("preprocess", _preprocess(m))
    lines.append(f"task: {_task(m)}")
    lines.append(f"size: {_size(m, directory)}")
    lines.append(f"validation: {_validation(m, directory)}")
    if m.quantization is not None:
        lines += _optional("quantization", _quantization(m.quantization))
        lines += _optional("calibration", _calibration(m.quantization.calibration))
    lines += _optional("export", _export(m))
    lines += _optional("created", _created(m))
    return lines


def _optional(key, value) -> list[str]:
    return [f"{key}: {value}"] if value else []


def _model(m: Manifest) -> str:
    s = m.source
    if not (s.name or s.spec or s.kind):
        return "not recorded"
    name = s.name or "?"
    if s.kind == "onnx":
        where = f"ONNX file {s.onnx_file or s.spec or '?'}"
    else:
        where = s.spec or s.kind or "unknown source"
    if s.checkpoint:
        weights = f"checkpoint {s.checkpoint}"
    elif s.random_init:
        weights = "random weights (no checkpoint)"
    else:
        weights = None
    return f"{name} ({', '.join(x for x in (where, weights) if x)})"


def _runs(m: Manifest, directory: Path) -> str:
    """The file a plain ``runtimes.load(DIR)`` loads and the backend that runs it."""
    artifact = m.artifact or "?"
    if m.target == "tensorrt":
        return _tensorrt_runs(m, directory)
    files = artifact
    if m.openvino is not None and m.openvino.weights:
        files = f"{artifact} + {m.openvino.weights}"
    runtime = RUNTIMES.get(m.target or "", m.target)
    version = (m.openvino.version or "").split("-")[0] if m.openvino is not None else ""
    text = f"{files} in {runtime}{' ' + version if version else ''}"
    parity = (m.openvino.parity or {}) if m.openvino is not None else {}
    if parity.get("inference_precision"):
        # OpenVINO may run an INT8/FP32 IR at bf16 on CPUs that have it: what convert's check really ran.
        text += f" (ran at {parity['inference_precision']} on {parity.get('device') or 'CPU'} in convert's check)"
    if not (directory / artifact).is_file():
        text += f"; {artifact} is missing"
    return text


def _tensorrt_runs(m: Manifest, directory: Path) -> str:
    engine = (m.tensorrt.engine if m.tensorrt is not None else None) or {}
    engine_file = engine.get("file") or "model.engine"
    if engine and (directory / engine_file).is_file():
        profile = engine.get("profile") or {}
        batch = ""
        if profile.get("min") and profile.get("max"):
            batch = f", batch {profile['min'][0]}..{profile['max'][0]}"
        board = engine.get("board") or engine.get("gpu") or "?"
        return (f"{engine_file} in TensorRT {engine.get('tensorrt_version', '?')} ({board}, "
                f"sm {engine.get('compute_capability', '?')}{batch})")
    onnx = m.artifact_for("onnx") or "model.onnx"
    what = f"the recorded {engine_file} is missing" if engine else "no engine built yet"
    return (f"{onnx} in ONNX Runtime (the TensorRT-ready ONNX; {what}: build it on the target with "
            f"vit-edge build-engine {directory})")


def _input(m: Manifest) -> str:
    p = m.preprocess
    export = m.export
    name = export.input if export is not None and export.input else None
    batch = "N" if export is not None and export.dynamic_batch else "?"
    if p is None:
        return f"{name or '?'} (shape not recorded)"
    h, w = p.input_size
    dynamic = export is not None and export.dynamic_size
    # vit-edge feeds every artifact NCHW float32 (FP16 graphs keep float32 inputs and outputs).
    dims = f"[{batch},{p.channels},{'H,W' if dynamic else f'{h},{w}'}] float32"
    text = f"{name} {dims}" if name else dims
    if dynamic:
        text += f" (dynamic height/width, exported at {h}x{w})"
    if batch == "?":  # an imported ONNX keeps its own batch axis, which the manifest does not record
        text += " (batch axis not recorded)"
    return text


def _output(m: Manifest) -> str | None:
    name = m.export.output if m.export is not None else None
    if not name:
        return None
    if m.task == "classify" and m.labels:
        return f"{name} [N,{len(m.labels)}] float32"
    return f"{name} float32"


def _preprocess(m: Manifest) -> str | None:
    p = m.preprocess
    if p is None:
        return None
    h, w = p.input_size
    # The sizes vit_edge.preprocess.resize_plan resizes to (timm's crop_pct semantics).
    if p.resize_mode == "squash":
        resize = f"squash to {math.floor(h / p.crop_pct)}x{math.floor(w / p.crop_pct)} (aspect ratio not kept)"
    else:
        resize = f"resize the shorter side to {math.floor(min(h, w) / p.crop_pct)}"
    if p.crop_pct < 1.0 or p.resize_mode != "squash":
        resize += f", centre-crop {h}x{w} (crop_pct {p.crop_pct:g})"
    color = {1: "grayscale", 3: "RGB"}.get(p.channels, f"{p.channels} channels")
    return (f"{resize}, {p.interpolation}, {color}; mean {_numbers(p.mean)} std {_numbers(p.std)} "
            f"(0..1 scale)")


def _numbers(values) -> str:
    return ",".join(f"{v:g}" for v in values)


def _task(m: Manifest) -> str:
    task = m.task or "classify"
    if task != "classify":
        return task
    return f"{task}, {len(m.labels)} labels" if m.labels else f"{task}, no label names (class indices)"


def _size(m: Manifest, directory: Path) -> str:
    """Bytes on disk of the files the manifest lists, plus the manifest; every file when it lists none."""
    if m.files:
        names = set(m.files) | {MANIFEST}
        paths = [directory / n for n in sorted(names) if (directory / n).is_file()]
    else:
        paths = sorted(p for p in directory.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in paths)
    return f"{_bytes(total)} on disk ({len(paths)} file{'s' if len(paths) != 1 else ''})"


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover - the loop returns


def _validation(m: Manifest, directory: Path) -> str:
    v = m.validation
    if v is None or v.passed is None:
        return f"not recorded (check it: vit-edge validate {directory} --data DATA)"
    verdict = "passed" if v.passed else "FAILED"
    where = f" on {v.samples} images" if v.samples is not None else ""
    where += f" of {v.data}" if v.data else ""
    metrics = []
    if v.top1_agreement is not None and (v.task or m.task) != "features":
        metrics.append(f"top-1 agreement {100 * v.top1_agreement:.2f}%")
    drop = (v.top1_drop or {}).get("value")
    if drop is not None:
        metrics.append(f"top-1 drop {100 * drop:.2f} pts")
    elif (v.reference or {}).get("top1") is not None and (v.candidate or {}).get("top1") is not None:
        metrics.append(f"top-1 drop {100 * (v.reference['top1'] - v.candidate['top1']):.2f} pts")
    if v.mean_cosine is not None and (v.task or m.task) == "features":  # the gate of a features model
        metrics.append(f"mean cosine {v.mean_cosine:.6f}")
    text = f"{verdict}{where}" + (f": {', '.join(metrics)}" if metrics else "")
    if v.failures:
        text += f" ({'; '.join(v.failures)})"
    return text


def _quantization(q) -> str | None:
    parts = [q.tool or "?"]
    if q.preset:
        parts.append(f"preset {q.preset}")
    alpha = q.smooth_quant_alpha
    # None: NNCF's own default alpha; a negative alpha turns SmoothQuant off (QuantizationRecord).
    parts.append("SmoothQuant off" if alpha is not None and alpha < 0 else
                 f"SmoothQuant alpha {'default' if alpha is None else f'{alpha:g}'}")
    search = q.recipe_search or {}
    if search.get("chosen"):
        tried = len(search.get("candidates") or [])
        parts.append(f"recipe {search['chosen']}" + (f" (best of {tried})" if tried > 1 else ""))
    if q.int8_mac_share is not None:
        parts.append(f"{100 * q.int8_mac_share:.1f}% of MACs in INT8")
    returned = (q.budget or {}).get("returned_to_float")
    if returned:
        parts.append(f"{len(returned)} operation(s) returned to float by --budget")
    if q.ignore:
        parts.append(f"kept in float: {', '.join(q.ignore)}")
    return ", ".join(parts)


def _calibration(calibration) -> str | None:
    if not calibration:
        return None
    used, requested = calibration.get("used"), calibration.get("requested")
    text = f"{used if used is not None else '?'} images of {calibration.get('source') or '?'}"
    if requested is not None and requested != used:
        text += f" ({requested} requested)"
    return text


def _export(m: Manifest) -> str | None:
    e = m.export
    if e is None:
        return None
    text = e.exporter or "?"
    if e.opset:
        text += f", opset {e.opset}"
    if e.parity is not None and e.parity.max_abs_error is not None:
        text += f"; parity vs torch: max abs error {e.parity.max_abs_error:.1e} on {e.parity.images} images"
    return text


def _created(m: Manifest) -> str | None:
    if not m.created:
        return None
    version = (m.versions or {}).get("vit-edge")
    text = m.created + (f" by vit-edge {version}" if version else "")
    if m.convert_seconds is not None:
        text += f" in {m.convert_seconds:g} s"
    return text
