"""Shared fixtures. Tests drive the real backends (torch, onnxruntime, openvino, nncf) on this machine."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared_data import shared_data

REPO = Path(__file__).resolve().parents[1]
SAMPLES = shared_data("imagenet-samples")
MODELS = Path(__file__).resolve().parent / "models"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(*args) -> CliResult:
    """Run ``vit-edge ARGS`` in this process (fast); returns exit code, stdout, stderr."""
    from vit_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return CliResult(code, out.getvalue(), err.getvalue())


def run_cli_subprocess(*args, timeout: int = 600, env: dict | None = None, **popen) -> CliResult:
    """Run ``python -m vit_edge ARGS`` in a fresh process (for import checks, signals, tracebacks)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "vit_edge", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=full_env, **popen)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: CliResult, code: int = 2, *needles: str) -> None:
    """The contract for bad input: the exit code, a single 'error:' line naming the problem, no traceback."""
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err, result.err
    errors = [line for line in result.err_lines if line.startswith("error:")]
    assert len(errors) == 1, result.err
    for needle in needles:
        assert needle.lower() in errors[0].lower(), (needle, errors[0])


@pytest.fixture(scope="session")
def samples() -> Path:
    assert SAMPLES.is_dir(), f"missing {SAMPLES}"
    return SAMPLES


@pytest.fixture(scope="session")
def demo_onnx(tmp_path_factory) -> Path:
    """The demo model converted to FP32 ONNX once per test session."""
    out = tmp_path_factory.mktemp("demo") / "onnx"
    from vit_edge.convert import convert

    convert(None, target="onnx", precision="fp32", out=out)
    return out


@pytest.fixture(scope="session", autouse=True)
def manifests_match_the_schema():
    """Every manifest the suite writes in-process is checked against docs/manifest.schema.json as it is
    written, so a record that drifts from the published schema fails whichever test wrote it."""
    import json

    import jsonschema

    from vit_edge.artifact import manifest as manifest_module

    schema = json.loads((REPO / "docs" / "manifest.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    original = manifest_module.Manifest.write
    written = []

    def checked_write(self, directory):
        errors = sorted(validator.iter_errors(self.to_dict()), key=str)
        assert not errors, f"manifest for {directory} breaks docs/manifest.schema.json: {errors[0].message}"
        written.append(directory)
        return original(self, directory)

    manifest_module.Manifest.write = checked_write
    yield written
    manifest_module.Manifest.write = original


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Caches (compiled OpenVINO models, reference outputs) go to a folder of this test session, never the
    user's ~/.cache: a test must not be served what an earlier run or another checkout left there."""
    previous = os.environ.get("VIT_EDGE_CACHE_DIR")
    os.environ["VIT_EDGE_CACHE_DIR"] = str(tmp_path_factory.mktemp("vit-edge-cache"))
    yield
    if previous is None:
        os.environ.pop("VIT_EDGE_CACHE_DIR", None)
    else:
        os.environ["VIT_EDGE_CACHE_DIR"] = previous
