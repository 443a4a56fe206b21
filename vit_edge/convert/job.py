"""What one conversion is asked to do (typed option groups) and what it carries between its stages.

``convert(**options)`` takes flat keyword arguments (as the CLI and scripts pass them); :func:`split_options`
sorts each into its group, so a misspelt option is an error naming it instead of a silent no-op.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge.errors import VitEdgeError
from vit_edge.metrics import Thresholds

DEFAULT_OPSET = 18
DEFAULT_TOLERANCE = 1e-4  # max abs logit error, relative to max(1, max |reference logit|)
DEFAULT_CALIB_SIZE = 300


@dataclass(frozen=True)
class ExportOptions:
    """The FP32 ONNX export and its parity check against torch."""

    opset: int = DEFAULT_OPSET
    tolerance: float = DEFAULT_TOLERANCE
    dynamic_size: bool = False
    parity_data: str | None = None  # images for the export parity check (default: validate/calib data)
    fp32_ops: tuple = ()  # FP16: extra op types kept in FP32


@dataclass(frozen=True)
class Int8Options:
    """INT8 post-training quantization (flags that only mean something with --precision int8)."""

    calib: str | None = None
    calib_size: int = DEFAULT_CALIB_SIZE
    preset: str | None = None  # None: mixed (performance where a target needs symmetric activations)
    smooth_quant_alpha: float | None = None  # None: tried with and without; negative: off
    activation_range: str | None = None  # None: minmax, then the winner with mean-minmax (NNCF's default)
    no_bias_correction: bool = False
    ignore: tuple = ()
    max_accuracy_drop: float | None = None
    budget: bool = False  # the validation thresholds become the quantizer's target

    FLAGS = {"calib": "--calib", "preset": "--preset", "smooth_quant_alpha": "--smooth-quant-alpha",
             "activation_range": "--activation-range",
             "no_bias_correction": "--no-bias-correction", "ignore": "--ignore",
             "max_accuracy_drop": "--max-accuracy-drop", "budget": "--budget"}

    def given_flags(self) -> list:
        """The INT8-only flags that were set (an error with another precision)."""
        return [flag for name, flag in self.FLAGS.items() if getattr(self, name) not in (None, False, ())]


@dataclass(frozen=True)
class ValidationOptions:
    """Convert's own parity check after writing the artifact."""

    data: str | None = None  # --validate; None: the labelled calibration images calibration did not use
    limit: int | None = None
    reference: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)


_GROUPS = {"export": ExportOptions, "int8": Int8Options}
_RENAMED = {"validate": ("validation", "data"), "validate_limit": ("validation", "limit"),
            "reference": ("validation", "reference"), "thresholds": ("validation", "thresholds")}


@dataclass(frozen=True)
class ConvertOptions:
    """All option groups of one conversion (what a target's ``check`` sees before anything slow runs)."""

    export: ExportOptions = field(default_factory=ExportOptions)
    int8: Int8Options = field(default_factory=Int8Options)
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    target: object = None  # the target's own Options dataclass


def split_options(options: dict, target_options_class) -> ConvertOptions:
    """Flat keyword options -> one dataclass per group: ``export``, ``int8``, ``validation``, ``target``."""
    values = {"export": {}, "int8": {}, "validation": {}, "target": {}}
    target_fields = {f.name for f in dataclasses.fields(target_options_class)}
    for name, value in options.items():
        if value is None:
            continue
        if name in _RENAMED:
            group, key = _RENAMED[name]
            values[group][key] = value
            continue
        group = next((g for g, cls in _GROUPS.items() if name in cls.__dataclass_fields__), None)
        if group is None and name in target_fields:
            group = "target"
        if group is None:
            raise VitEdgeError(f"unknown convert option {name!r} for this target",
                               hint="see vit-edge convert --help for the options each target takes")
        values[group][name] = value
    for group in ("export", "int8"):
        for key in ("ignore", "fp32_ops"):
            if key in values[group]:
                values[group][key] = tuple(values[group][key])
    thresholds = values["validation"].get("thresholds")
    if not isinstance(thresholds, Thresholds):
        values["validation"]["thresholds"] = Thresholds.from_options(thresholds)
    return ConvertOptions(export=ExportOptions(**values["export"]), int8=Int8Options(**values["int8"]),
                          validation=ValidationOptions(**values["validation"]),
                          target=target_options_class(**values["target"]))


@dataclass
class ConvertJob:
    """Everything one conversion needs and produces. Stages read the option groups and leave their
    records here; convert assembles the records into the manifest."""

    loaded: object  # sources.LoadedModel
    target: str
    precision: str
    workdir: Path
    seed: int = 0
    export: ExportOptions = field(default_factory=ExportOptions)
    int8: Int8Options = field(default_factory=Int8Options)
    validation: ValidationOptions = field(default_factory=ValidationOptions)
    target_options: object = None  # the target's own Options dataclass
    manifest: object = None  # artifact.Manifest: the base fields, filled in as stages finish
    messages: list = field(default_factory=list)  # what the CLI should tell the user at the end
    calibration: object = None  # calibration.CalibrationData, loaded once by the first quantizer
