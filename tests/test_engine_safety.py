"""A TensorRT engine is deserialized only after its manifest checks out: an engine file that is not the one
the manifest records is refused before TensorRT reads a byte of it. Needs TensorRT and a GPU."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import assert_one_line_error, run_cli

pytestmark = pytest.mark.tensorrt

try:
    import tensorrt  # noqa: F401
except ImportError:
    pytest.skip("TensorRT is not installed (tests marked tensorrt need TensorRT >= 10 and a CUDA GPU)",
                allow_module_level=True)


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "fp32"
    result = run_cli("convert", "--target", "tensorrt", "--out", out)
    assert result.code == 0, result.err
    assert (out / "model.engine").is_file()
    return out


@pytest.mark.parametrize("tamper", ["garbage", "truncated"])
def test_engine_that_is_not_the_recorded_one_is_never_deserialized(engine_dir, tmp_path, tamper):
    from vit_edge import runtimes
    from vit_edge.errors import ArtifactError

    out = tmp_path / "copy"
    shutil.copytree(engine_dir, out)
    data = (out / "model.engine").read_bytes()
    # Bytes TensorRT would reject: had it deserialized them, the error would say "could not deserialize".
    (out / "model.engine").write_bytes(b"\0" * 64 if tamper == "garbage" else data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="not the one the manifest records"):
        runtimes.load(out)
    assert_one_line_error(run_cli("validate", out, "--data", "digits:test"), 2, "not the one the manifest records",
                          "build-engine")


def test_manifest_naming_an_engine_outside_its_folder_is_refused(engine_dir, tmp_path):
    from vit_edge import runtimes
    from vit_edge.errors import ArtifactError

    out = tmp_path / "copy"
    shutil.copytree(engine_dir, out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "artifact": "../elsewhere.engine"}))
    with pytest.raises(ArtifactError, match="outside its folder"):
        runtimes.load(out)
