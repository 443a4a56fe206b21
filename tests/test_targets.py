"""The target registry and protocol: the CLI is built from it, and a target defined outside the package (in
tests/plugins) plugs in with one module per side and one ``targets.register`` call."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import assert_one_line_error, run_cli
from vit_edge import runtimes, targets
from vit_edge.convert.target import Target, get


def test_every_registered_target_implements_the_protocol():
    import dataclasses

    for name in targets.names():
        target = get(name)
        assert isinstance(target, Target) and target.name == name
        assert set(target.precisions) <= {"fp32", "fp16", "int8"} and target.precisions
        assert dataclasses.is_dataclass(target.Options)
        fields = {f.name for f in dataclasses.fields(target.Options)}
        from vit_edge.cli import _params

        flags = {p.name for p in _params(target.cli_options)}
        assert flags <= fields, f"{name}: flags {flags - fields} set no Options field"


def test_cli_choices_come_from_the_registry():
    from vit_edge.cli import make_cli

    convert = make_cli().commands["convert"]
    params = {p.name: p for p in convert.params}
    assert list(params["target"].type.choices) == targets.names() == ["onnx", "openvino", "tensorrt"]
    for flag in ("device", "batch", "dla_core", "require_engine"):  # declared by the openvino/tensorrt targets
        assert flag in params


def test_a_target_flag_given_to_another_target_is_refused(tmp_path):
    result = run_cli("convert", "--target", "onnx", "--batch", "1:8:32", "--out", tmp_path / "x")
    assert_one_line_error(result, 2, "--batch does not apply to --target onnx", "tensorrt")
    assert not (tmp_path / "x").exists()


@pytest.fixture
def bundle_target():
    entry = targets.register("bundle", convert="plugins.bundle_target", runtime="plugins.bundle_runtime",
                             suffixes=(".bundle",))
    yield entry
    del targets.TARGETS["bundle"]


@pytest.mark.slow
def test_a_target_from_outside_the_package_converts_loads_and_runs(bundle_target, demo_onnx, tmp_path):
    help_text = run_cli("convert", "--help").out
    assert "bundle" in help_text and "--bundle-note" in help_text
    out = tmp_path / "bundle"
    result = run_cli("convert", "--target", "bundle", "--bundle-note", "hello", "--out", out)
    assert result.code == 0, result.err
    assert f"wrote {out}/model.bundle (bundle fp32)" in result.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"] == "bundle" and manifest["artifact"] == "model.bundle"
    assert manifest["bundle"] == {"note": "hello", "exported_with": "dynamo"}
    runtime = runtimes.load(out)
    assert runtime.target == "bundle" and runtimes.load(out / "model.bundle").target == "bundle"
    batch = np.random.default_rng(0).standard_normal((4, 3, 32, 32), dtype=np.float32)
    np.testing.assert_allclose(runtime.run(batch), runtimes.load(demo_onnx).run(batch), atol=1e-5)
    # its precisions come from the target: fp16 is not one of them
    refused = run_cli("convert", "--target", "bundle", "--precision", "fp16", "--out", tmp_path / "fp16")
    assert_one_line_error(refused, 2, "precision 'fp16'", "fp32")


def test_an_unknown_target_through_the_library_is_one_line():
    from vit_edge.convert import convert
    from vit_edge.errors import VitEdgeError

    with pytest.raises(VitEdgeError, match="unknown target 'coreml'") as info:
        convert(None, target="coreml", out="unused")
    assert "onnx, openvino, tensorrt" in info.value.one_line()
