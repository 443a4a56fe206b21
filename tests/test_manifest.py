"""The typed manifest: round trips, old artifacts, type errors named by field, the format version, the schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vit_edge.artifact import FORMAT_VERSION, Manifest, QuantizationRecord, read_manifest, schema
from vit_edge.errors import ArtifactError
from vit_edge.preprocess import PreprocessConfig

HERE = Path(__file__).resolve().parent
# Written by vit-edge before the typed manifest existed (format 1): they must keep loading, unchanged.
OLD = sorted((HERE / "data" / "manifests").glob("*.json"))


@pytest.mark.parametrize("path", OLD, ids=[p.stem for p in OLD])
def test_manifests_written_by_the_previous_code_round_trip_unchanged(path):
    data = json.loads(path.read_text())
    manifest = Manifest.from_dict(data)
    assert manifest.to_dict() == data
    assert manifest.extra == {} and manifest.source.extra == {}  # every key is a declared field
    assert isinstance(manifest.preprocess, PreprocessConfig) and manifest.preprocess.input_size == (32, 32)
    assert isinstance(manifest.quantization, QuantizationRecord)
    assert manifest.quantization.calibration["used"] == 64
    assert manifest.export.parity.max_abs_error < 1e-4
    assert manifest.files[manifest.artifact].bytes > 1000


def test_tensorrt_manifest_reads_as_attributes():
    manifest = Manifest.from_dict(json.loads((HERE / "data/manifests/tensorrt-int8-format1.json").read_text()))
    assert manifest.target == "tensorrt" and manifest.artifact_for("onnx") == "model.onnx"
    assert manifest.artifact_for("openvino") is None
    assert manifest.tensorrt.engine is None and manifest.tensorrt.settings.batch == [1, 8, 32]
    assert manifest.quantization.qdq["int8_weight_gemms"] == "18/18"


def test_unknown_keys_survive_a_round_trip():
    """A manifest from a newer vit-edge of the same format keeps what this one does not know."""
    data = json.loads(OLD[0].read_text())
    data["future_field"] = {"x": 1}
    data["source"]["future_source_key"] = "y"
    manifest = Manifest.from_dict(data)
    assert manifest.extra == {"future_field": {"x": 1}}
    assert manifest.to_dict() == data


def test_a_newer_format_is_a_clear_error(tmp_path):
    data = json.loads(OLD[0].read_text())
    data["format"] = FORMAT_VERSION + 1
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=f"manifest format {FORMAT_VERSION + 1} is newer") as info:
        read_manifest(tmp_path)
    assert "upgrade vit-edge" in info.value.one_line()


@pytest.mark.parametrize("field, value, message", [
    ("labels", 7, "'labels' should be a list, not int"),
    ("seed", "zero", "'seed' should be an integer, not str"),
    ("preprocess", None, "'preprocess' should be an object, not null"),  # defaults fed a 32x32 model 224x224
    ("preprocess", [224], "'preprocess' should be an object, not list"),
    ("artifact", 3, "'artifact' should be a string, not int"),
    ("source", {"checkpoint": 5}, "'source.checkpoint' should be a string, not int"),
    ("export", {"parity": {"images": "8"}}, "'export.parity.images' should be an integer, not str"),
])
def test_wrong_types_are_refused_naming_the_field(tmp_path, field, value, message):
    data = json.loads(OLD[0].read_text())
    data[field] = value
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    if message is None:
        assert read_manifest(tmp_path).preprocess is None
        return
    with pytest.raises(ArtifactError, match=message.replace("(", r"\(")):
        read_manifest(tmp_path)


def test_invalid_preprocessing_is_refused_naming_the_field(tmp_path):
    data = json.loads(OLD[0].read_text())
    data["preprocess"]["interpolation"] = "sinc"
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="'preprocess'.*unknown interpolation"):
        read_manifest(tmp_path)


@pytest.mark.parametrize("missing", ["target", "artifact"])
def test_a_manifest_without_target_or_artifact_is_not_one(tmp_path, missing):
    data = json.loads(OLD[0].read_text())
    del data[missing]
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=f"no '{missing}'"):
        read_manifest(tmp_path)


def test_the_schema_file_is_the_generated_one():
    on_disk = json.loads((HERE.parent / "docs" / "manifest.schema.json").read_text())
    assert on_disk == schema(), "regenerate it: python -m vit_edge.artifact > docs/manifest.schema.json"


def test_the_schema_accepts_old_manifests_and_rejects_a_wrong_type():
    jsonschema = pytest.importorskip("jsonschema")
    for path in OLD:
        jsonschema.validate(json.loads(path.read_text()), schema())
    bad = json.loads(OLD[0].read_text())
    bad["export"]["opset"] = "eighteen"
    with pytest.raises(jsonschema.ValidationError, match="eighteen"):
        jsonschema.validate(bad, schema())
