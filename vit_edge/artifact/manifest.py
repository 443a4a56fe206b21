"""``manifest.json``: what an artifact is, how it was made and how to feed it, as one typed record.

Each stage of ``convert`` returns its own record (the export, the quantization, the target's), convert
assembles them into a :class:`Manifest`, and runtimes, validate and the CLI read attributes. The JSON on
disk is the one earlier versions wrote (``format`` 1); ``docs/manifest.schema.json`` is generated from
these classes by ``python -m vit_edge.artifact``.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vit_edge.artifact.records import Record
from vit_edge.errors import ArtifactError
from vit_edge.preprocess import PreprocessConfig

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(kw_only=True)
class SourceRecord(Record):
    """Where the model came from, enough to rebuild the FP32 reference."""

    kind: str | None = None  # demo, timm, hf, torchvision, python, onnx
    name: str | None = None
    spec: str | None = None  # the MODEL spec, file paths made absolute
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    random_init: bool | None = None
    file: str | None = None  # python: the model file
    import_root: str | None = None  # python: the folder on sys.path while the file imports (its own folder)
    modules: dict[str, str] | None = None  # python: sha256 of each module imported from import_root
    build: dict[str, Any] | None = None  # how it was built (input_size, dynamic_size, model_kwargs)
    onnx_file: str | None = None  # onnx: the file converted
    onnx_sha256: str | None = None


@dataclass(kw_only=True)
class ExportParity(Record):
    """The FP32 ONNX against torch on real images (the check that every export passes)."""

    images: int | None = None
    data: str | None = None
    max_abs_error: float | None = None
    tolerance: float | None = None
    top1_agreement: float | None = None
    input_size: list[int] | None = None


@dataclass(kw_only=True)
class ExportRecord(Record):
    """How the FP32 ONNX was produced."""

    exporter: str | None = None  # dynamo, torchscript, or "none (input was ONNX)"
    opset: int | None = None
    dynamic_batch: bool | None = None
    dynamic_size: bool | None = None
    input: str | None = None
    output: str | None = None
    fallback_from: list[str] | None = None  # why earlier exporters failed
    parity: ExportParity | None = None
    parity_other_sizes: list[ExportParity] | None = None  # --dynamic-size: the extra sizes checked
    # The last block computes only the class token, all the head reads (convert/stages/class_token_tail.py).
    class_token_tail: bool | None = None


@dataclass(kw_only=True)
class QuantizationRecord(Record):
    """INT8 post-training quantization: the recipe, the data, and what it inserted."""

    ALWAYS: typing.ClassVar[tuple] = ("smooth_quant_alpha",)
    tool: str | None = None
    model_type: str | None = None
    preset: str | None = None  # mixed, performance (symmetric)
    bias_correction: str | None = None
    smooth_quant_alpha: float | None = None  # None: NNCF's default; negative: off
    activation_range: str | None = None  # minmax or mean-minmax (None: NNCF's default, mean-minmax)
    ignore: list[str] | None = None
    backend: str | None = None  # onnx (Q/DQ) or openvino (FakeQuantize)
    ignored_names: list[str] | None = None
    ignored_types: list[str] | None = None
    calibration: dict[str, Any] | None = None
    smooth_quant: dict[str, Any] | None = None  # the with/without choice and both cosines
    recipe_search: dict[str, Any] | None = None  # every candidate recipe's score, the winner first
    budget: dict[str, Any] | None = None  # --budget: the target, what was reached, what went back to float
    int8_mac_share: float | None = None  # share of the graph's GEMM MACs whose input is INT8
    accuracy_control: dict[str, Any] | None = None
    quantize_nodes: int | None = None
    fake_quantize_nodes: int | None = None
    uint8_qdq_rewritten_to_int8: int | None = None
    qdq: dict[str, Any] | None = None


@dataclass(kw_only=True)
class FP16Record(Record):
    """FP16 conversion with FP32 islands."""

    fp32_op_types: list[str] | None = None
    converter: str | None = None


@dataclass(kw_only=True)
class OpenVINORecord(Record):
    """The OpenVINO IR and the precision its parity run really used."""

    version: str | None = None
    weights: str | None = None
    compressed_to_fp16: bool | None = None
    route: str | None = None  # pytorch (OpenVINO's PyTorch frontend) or onnx (the FP32 ONNX export)
    route_reason: str | None = None  # why the ONNX route was taken
    # f32 when --budget could only be met with the layers INT8 leaves in float run at f32 (the runtime then
    # compiles them so); None: the plugin's choice (bf16 where the CPU has it)
    float_precision: str | None = None
    parity: dict[str, Any] | None = None


@dataclass(kw_only=True)
class TensorRTSettings(Record):
    """The engine build settings (also those of the recorded trtexec line)."""

    ALWAYS: typing.ClassVar[tuple] = ("batch", "workspace_gb", "dla_core", "timing_cache")
    batch: list[int] | None = None  # MIN, OPT, MAX
    workspace_gb: float | None = None
    dla_core: int | None = None
    timing_cache: str | None = None  # absolute: the trtexec line runs in another folder
    trt_version: str | None = None  # the oldest TensorRT targeted (what the ONNX was checked against)


@dataclass(kw_only=True)
class TensorRTRecord(Record):
    """The TensorRT-ready ONNX, its checks, and the engine when one was built."""

    ALWAYS: typing.ClassVar[tuple] = ("engine",)
    strongly_typed: bool | None = None
    checks: str | None = None
    settings: TensorRTSettings | None = None
    trtexec: str | None = None  # the line for the targeted TensorRT major (trtexec_by_version[...])
    trtexec_by_version: dict[str, str] | None = None  # "10.x" / "11.x" -> the line that builds on that major
    engine: dict[str, Any] | None = None  # None until an engine is built on a machine with TensorRT


@dataclass(kw_only=True)
class ValidationRecord(Record):
    """The parity report of ``convert --validate`` (``ParityReport.summary()``)."""

    ALWAYS: typing.ClassVar[tuple] = ("passed", "samples", "top1_agreement", "mean_cosine", "min_cosine",
                                      "max_abs_error", "max_rel_error", "reference", "candidate", "thresholds",
                                      "failures", "task", "data", "skipped_files")
    passed: bool | None = None
    samples: int | None = None
    top1_agreement: float | None = None
    mean_cosine: float | None = None
    min_cosine: float | None = None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    reference: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    thresholds: dict[str, Any] | None = None
    failures: list[str] | None = None
    task: str | None = None
    data: str | None = None
    skipped_files: int | None = None
    # the gate's evidence (vit-edge validate, issue 14): paired 95% CI and McNemar p of the top-1 drop
    top1_drop: dict[str, Any] | None = None
    agreement_ci95: list[float] | None = None  # Wilson score interval of top1_agreement
    flip_count: int | None = None  # images whose top-1 differs (listed in report.json)
    notes: list[str] | None = None


@dataclass(kw_only=True)
class FileEntry(Record):
    sha256: str | None = None
    bytes: int | None = None


@dataclass(kw_only=True)
class Manifest(Record):
    """Everything vit-edge knows about one artifact directory."""

    ALWAYS: typing.ClassVar[tuple] = ("format", "target", "precision", "task", "source", "seed", "preprocess",
                                      "labels", "created", "artifact")
    format: int | None = FORMAT_VERSION
    target: str | None = None  # the target that made it: onnx, openvino, tensorrt, ...
    precision: str | None = None
    task: str | None = "classify"
    source: SourceRecord = field(default_factory=SourceRecord)
    seed: int | None = 0
    preprocess: PreprocessConfig | None = None
    labels: list[str] | None = None
    created: str | None = None
    artifact: str | None = None  # the file the target's runtime loads, inside the directory
    artifacts: dict[str, str] | None = None  # other runtimes' files (a TensorRT folder's ONNX)
    export: ExportRecord | None = None
    fp16: FP16Record | None = None
    quantization: QuantizationRecord | None = None
    openvino: OpenVINORecord | None = None
    tensorrt: TensorRTRecord | None = None
    versions: dict[str, str] | None = None
    validation: ValidationRecord | None = None
    files: dict[str, FileEntry] | None = None
    convert_seconds: float | None = None

    def artifact_for(self, target: str) -> str | None:
        """The file that runtime ``target`` loads from this directory (None when it holds none)."""
        if target == self.target:
            return self.artifact
        return (self.artifacts or {}).get(target)

    @classmethod
    def from_dict(cls, data, where: str = "") -> "Manifest":
        if isinstance(data, dict):
            version = data.get("format", FORMAT_VERSION)
            if isinstance(version, bool) or not isinstance(version, int):
                raise ArtifactError(f"manifest field 'format' should be an integer, not {type(version).__name__}")
            if version > FORMAT_VERSION:
                raise ArtifactError(f"manifest format {version} is newer than this vit-edge reads "
                                    f"(format {FORMAT_VERSION})", hint="upgrade vit-edge to run this artifact")
        manifest = super().from_dict(data, where)
        for name in ("target", "artifact"):
            if getattr(manifest, name) is None:
                raise ArtifactError(f"not a vit-edge manifest: no {name!r}")
        return manifest

    def write(self, directory) -> None:
        from vit_edge.artifact.files import write_json

        write_json(Path(directory) / MANIFEST, self.to_dict())


def read_manifest(directory) -> Manifest:
    """The manifest of an artifact directory, type-checked; a clear ArtifactError for anything else."""
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{directory}: no {MANIFEST}", hint="is this a vit-edge --out directory?") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable manifest ({exc})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: not a vit-edge manifest (not a JSON object)")
    try:
        _require_fields(data)
        return Manifest.from_dict(data)
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc.message}", hint=exc.hint) from None


# What every manifest.json vit-edge writes holds (Manifest.ALWAYS), and what a runtime cannot guess: without
# preprocessing a 32x32 model was fed 224x224 defaults (exit 70), without a seed a random-init reference was
# rebuilt with seed 0. ``labels`` may be null (a features model), never absent.
_REQUIRED = {"preprocess": "an object", "seed": "an integer"}
_PRESENT = ("labels",)


def _require_fields(data: dict) -> None:
    for name, kind in _REQUIRED.items():
        if data.get(name) is None:
            raise ArtifactError(f"manifest field {name!r} should be {kind}, not "
                                f"{'missing' if name not in data else 'null'}",
                                hint="the manifest was edited or damaged; re-run vit-edge convert")
    for name in _PRESENT:
        if name not in data:
            raise ArtifactError(f"manifest field {name!r} is missing",
                                hint="the manifest was edited or damaged; re-run vit-edge convert")


def manifest_of(artifact) -> Manifest:
    """The manifest of an artifact directory, or of the directory an artifact file sits in."""
    path = Path(artifact)
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact", hint="pass a vit-edge --out directory or a file in one")
    return read_manifest(path if path.is_dir() else path.parent)


def schema() -> dict:
    """The JSON Schema of ``manifest.json`` (what ``docs/manifest.schema.json`` holds)."""
    body = Manifest.json_schema()
    body["required"] = ["target", "artifact"]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "vit-edge manifest.json",
            "$comment": "generated by python -m vit_edge.artifact; do not edit", **body}
