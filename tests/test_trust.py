"""Artifact trust and output-folder safety (issue 16, items 1, 2, 3, 6, 7).

An artifact runs no code it names (a tampered manifest's Python file never imports); every file a runtime
loads matches the manifest's sha256; a convert never replaces what appeared at --out while it ran, and
--force replaces only an earlier vit-edge artifact that holds none of the run's inputs; a SIGKILLed
convert's temporary folder is swept by the next one, which says so. The bad-input table holds the CLI cases.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import MODELS, REPO, assert_one_line_error, run_cli
from convert_process import start_convert, wait_for_temp_dir

from vit_edge.artifact import atomic_output_dir, publish
from vit_edge.errors import ArtifactError, OutputError

DEMO_WEIGHTS = REPO / "vit_edge" / "demo" / "digits_vit.safetensors"
HELPER = """\
import pathlib

pathlib.Path({marker!r}).write_text("imported")


def make():
    from vit_edge.sources import load_model

    return load_model("demo").module
"""


def _retarget(artifact: Path, **source) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    (artifact / "manifest.json").write_text(json.dumps({**manifest, "source": source}))


# ---------------------------------------------------------------- item 1: a manifest names no code that runs


def test_a_tampered_manifest_never_runs_the_python_file_it_names(demo_onnx, tmp_path, monkeypatch):
    """The issue's case: a downloaded artifact whose manifest names downloaded/helper.py:make, validated
    without --reference from the folder above it. The helper would write a marker file on import."""
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "MARKER"
    shutil.copytree(demo_onnx, tmp_path / "downloaded")
    (tmp_path / "downloaded" / "helper.py").write_text(HELPER.format(marker=str(marker)))
    _retarget(tmp_path / "downloaded", kind="python", spec="downloaded/helper.py:make", name="helper.py:make")

    for command in (["validate"], ["validate", "--no-cache"], ["debug"]):
        result = run_cli(*command, "downloaded", "--data", "digits:test", "--limit", "8")
        assert_one_line_error(result, 2, "never runs code", "pass --reference downloaded/helper.py:make")
        assert not marker.exists(), command

    # the hint works: naming the file on the command line is the user's consent, and the same model passes
    result = run_cli("validate", "downloaded", "--reference", "downloaded/helper.py:make", "--data", "digits:test",
                     "--limit", "16", "--no-cache")
    assert result.code == 0, result.err
    assert marker.read_text() == "imported"


def test_naming_the_recorded_model_rebuilds_it_with_its_checkpoint(demo_onnx, tmp_path):
    """--reference naming the recorded file.py:callable rebuilds it as recorded: the manifest's safetensors
    checkpoint is read (the log names it: it lies outside the artifact folder), so the reference is the
    trained demo and agrees exactly; the same file without its checkpoint would be random weights."""
    spec = f"{MODELS / 'demo_arch.py'}:make_model"
    art = tmp_path / "art"
    shutil.copytree(demo_onnx, art)
    _retarget(art, kind="python", spec=spec, name="demo_arch.py:make_model", checkpoint=str(DEMO_WEIGHTS))
    assert_one_line_error(run_cli("validate", art, "--data", "digits:test"), 2, "never runs code")
    report = tmp_path / "r.json"
    result = run_cli("validate", art, "--reference", spec, "--data", "digits:test", "--limit", "64", "--no-cache",
                     "--json", report)
    assert result.code == 0, result.err
    assert f"the reference reads {DEMO_WEIGHTS}" in result.err and "outside the artifact folder" in result.err
    data = json.loads(report.read_text())
    assert data["top1_agreement"] == 1.0 and data["max_rel_error"] < 1e-4


def test_convert_still_validates_against_the_users_own_python_model(tmp_path):
    """Convert's own validation rebuilds the reference it just loaded from the command line: trusted."""
    out = tmp_path / "fp32"
    result = run_cli("convert", f"{MODELS / 'demo_arch.py'}:make_model", "--checkpoint", DEMO_WEIGHTS, "--validate",
                     "digits:test", "--validate-limit", "32", "--out", out)
    assert result.code == 0, result.err
    validation = json.loads((out / "manifest.json").read_text())["validation"]
    assert validation["passed"] and validation["samples"] == 32 and validation["top1_agreement"] == 1.0


def test_the_policy_is_decided_on_the_spec_not_the_recorded_kind(demo_onnx, tmp_path):
    from vit_edge import runtimes
    from vit_edge.artifact import read_manifest

    art = tmp_path / "art"
    shutil.copytree(demo_onnx, art)
    marker = tmp_path / "MARKER"
    (tmp_path / "helper.py").write_text(HELPER.format(marker=str(marker)))
    for kind in ("demo", "timm", "onnx", "hf", None):
        _retarget(art, kind=kind, spec=f"{tmp_path / 'helper.py'}:make")
        with pytest.raises(ArtifactError, match="never runs code|ONNX file that is gone"):
            runtimes.reference_from_manifest(read_manifest(art), directory=art)
    assert not marker.exists()
    # an ONNX reference must be an .onnx: a manifest cannot make it an engine or an IR
    (tmp_path / "model.engine").write_bytes(b"engine")
    _retarget(art, kind="onnx", onnx_file=str(tmp_path / "model.engine"))
    with pytest.raises(ArtifactError, match="no .onnx file"):
        runtimes.reference_from_manifest(read_manifest(art), directory=art)


def test_build_engine_never_writes_a_timing_cache_only_the_manifest_names(demo_onnx, tmp_path):
    """A TensorRT manifest's timing_cache path would be (over)written by build-engine: it is used only when the
    user names it (checked here before TensorRT is needed, so on any machine)."""
    art = tmp_path / "trt"
    shutil.copytree(demo_onnx, art)
    victim = tmp_path / "precious.txt"
    victim.write_text("mine")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest.update(target="tensorrt", tensorrt={"settings": {"batch": [1, 1, 1], "timing_cache": str(victim)}})
    (art / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("build-engine", art)
    assert f"records the timing cache {victim}; not used unless named" in result.err
    assert victim.read_text() == "mine"


# ---------------------------------------------------------------- item 6: every loaded file's sha256


@pytest.fixture(scope="module")
def ov_fp32(tmp_path_factory):
    pytest.importorskip("openvino")
    from vit_edge.convert import convert

    out = tmp_path_factory.mktemp("trust") / "ov"
    convert(None, target="openvino", precision="fp32", out=out)
    return out


def _other_weights(art: Path) -> None:
    """Rewrite every large f32 constant of model.bin (offsets from model.xml): a valid IR of the same shapes
    with other weights, which OpenVINO runs without complaint."""
    import xml.etree.ElementTree as ET

    blob = bytearray((art / "model.bin").read_bytes())
    rng = np.random.default_rng(0)
    for data in ET.parse(art / "model.xml").getroot().iter("data"):
        if data.get("element_type") == "f32" and int(data.get("size", 0)) >= 4096:
            start, size = int(data.get("offset")), int(data.get("size"))
            blob[start:start + size] = rng.normal(0, 0.05, size // 4).astype(np.float32).tobytes()
    (art / "model.bin").write_bytes(bytes(blob))


def test_an_openvino_folder_with_another_model_bin_is_refused(ov_fp32, tmp_path):
    """The issue's case: model.bin swapped for other weights of the same shapes, which OpenVINO would run."""
    from vit_edge import runtimes
    from vit_edge.artifact import read_manifest

    art = tmp_path / "ov"
    shutil.copytree(ov_fp32, art)
    _other_weights(art)
    assert (art / "model.bin").stat().st_size == (ov_fp32 / "model.bin").stat().st_size
    with pytest.raises(ArtifactError, match="model.bin: not the one the manifest records"):
        runtimes.load(art)
    with pytest.raises(ArtifactError, match="model.bin: not the one the manifest records"):
        runtimes.load(art / "model.xml")  # the file itself, with the manifest beside it
    assert_one_line_error(run_cli("predict", art, tmp_path / "none.png"), 2, "not the one the manifest records")
    # weights implied by model.xml must be recorded: dropping their entry does not skip the check
    manifest = read_manifest(art)
    manifest.files.pop("model.bin")
    manifest.write(art)
    with pytest.raises(ArtifactError, match="model.bin: the manifest records no sha256"):
        runtimes.load(art)


def test_each_loaded_file_is_hashed_once_per_load(ov_fp32, monkeypatch):
    from vit_edge import runtimes
    from vit_edge.artifact import files

    hashed = []
    real = files.sha256_file
    monkeypatch.setattr(files, "sha256_file", lambda path, *a: hashed.append(Path(path).name) or real(path, *a))
    import vit_edge.artifact as artifact_package

    monkeypatch.setattr(artifact_package, "sha256_file", files.sha256_file)
    with runtimes.load(ov_fp32) as model:
        logits = model.predict(np.zeros((1, 3, 32, 32), np.float32))
    assert sorted(hashed) == ["model.bin", "model.xml"] and logits.shape == (1, 10)


def test_a_bare_file_without_a_manifest_is_not_checked(demo_onnx, tmp_path):
    """The user named the file itself and there is no record to check it against: it loads."""
    from vit_edge import runtimes

    shutil.copy(demo_onnx / "model.onnx", tmp_path / "mine.onnx")
    with runtimes.load(tmp_path / "mine.onnx") as model:
        assert model.predict(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 10)


# ---------------------------------------------------------------- item 2: what appears at --out is never replaced


@pytest.mark.parametrize("content", ["empty", "a file"])
def test_a_folder_that_appears_at_out_during_the_run_is_left_alone(tmp_path, content):
    """rename(2) would silently replace an empty folder, and the old code moved a full one aside and deleted it."""
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="appeared while this run was writing") as info:
        with atomic_output_dir(out) as tmp:
            (tmp / "model.onnx").write_bytes(b"result")
            out.mkdir()
            if content == "a file":
                (out / "theirs.txt").write_text("theirs")
    assert "--force" in info.value.one_line()
    assert sorted(p.name for p in out.iterdir()) == ([] if content == "empty" else ["theirs.txt"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary, no lock left


def test_two_runs_to_one_out_never_both_succeed(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="appeared while"):
        with atomic_output_dir(out) as first:
            (first / "who").write_text("first")
            with atomic_output_dir(out) as second:
                (second / "who").write_text("second")
    assert (out / "who").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_without_renameat2_the_fallback_still_refuses(tmp_path, monkeypatch):
    """Where renameat2 is missing (not Linux, old kernels, some filesystems) the check-then-rename fallback
    still refuses what exists, and --force still swaps with the old folder restored on failure."""
    monkeypatch.setattr(publish, "_renameat2", lambda *a: False)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="appeared while"):
        with atomic_output_dir(out) as tmp:
            out.mkdir()
    (out / "old.txt").write_text("old")
    with atomic_output_dir(out, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in out.iterdir()] == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.slow
def test_race_a_folder_created_at_out_while_convert_runs(tmp_path):
    """The acceptance test of item 2: a real convert; the user's folder appears at --out mid-run."""
    out = tmp_path / "out"
    proc = start_convert(out)
    wait_for_temp_dir(proc, tmp_path)
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"\xff\xd8 their photo")
    _, err = proc.communicate(timeout=300)
    result = type("R", (), {"code": proc.returncode, "err": err, "err_lines": [ln for ln in err.splitlines() if ln]})
    assert_one_line_error(result, 2, "appeared while this run was writing", "left untouched")
    assert [p.name for p in out.iterdir()] == ["holiday.jpg"]
    assert (out / "holiday.jpg").read_bytes() == b"\xff\xd8 their photo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# ---------------------------------------------------------------- item 3: what --force may replace


def test_force_replaces_an_earlier_artifact_and_nothing_else(demo_onnx, tmp_path):
    from vit_edge.convert import check_replaceable

    out = tmp_path / "out"
    shutil.copytree(demo_onnx, out)
    inputs = [("--calib", str(tmp_path / "photos"))]
    (tmp_path / "photos").mkdir()
    with atomic_output_dir(out, force=True, replaceable=lambda p: check_replaceable(p, inputs)) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "photos"]  # the old one removed, no trash
    for folder, inputs, message in ((tmp_path / "photos", [], "not a vit-edge artifact"),
                                    (out, [("--validate", str(out / "val"))], "holds the --validate input")):
        (folder / "keep.png").write_bytes(b"png")
        with pytest.raises(OutputError, match=message):
            with atomic_output_dir(folder, force=True, replaceable=lambda p: check_replaceable(p, inputs)):
                pytest.fail("entered the block")
        assert (folder / "keep.png").read_bytes() == b"png"


def test_force_rechecks_what_appeared_before_it_replaces(tmp_path):
    from vit_edge.convert import check_replaceable

    out = tmp_path / "out"
    with pytest.raises(OutputError, match="not a vit-edge artifact"):
        with atomic_output_dir(out, force=True, replaceable=lambda p: check_replaceable(p, [])) as tmp:
            (tmp / "model.onnx").write_bytes(b"x")
            out.mkdir()
            (out / "thesis.pdf").write_bytes(b"pdf")
    assert [p.name for p in out.iterdir()] == ["thesis.pdf"]


def test_force_on_a_symlinked_out_replaces_the_link_not_its_target(demo_onnx, tmp_path):
    target = tmp_path / "real"
    shutil.copytree(demo_onnx, target)
    link = tmp_path / "out"
    link.symlink_to(target)
    with atomic_output_dir(link, force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert not link.is_symlink() and [p.name for p in link.iterdir()] == ["new.txt"]
    assert (target / "manifest.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "real"]


# ---------------------------------------------------------------- item 7: stale temporaries are swept


CLAIM_AND_HANG = """\
import sys, time
from pathlib import Path
from vit_edge.artifact import publish
folder, _ = publish.claim_temp(Path(sys.argv[1]), "out")
(folder / "partial.onnx").write_bytes(b"half")
print(folder, flush=True)
time.sleep(600)
"""


def test_a_dead_owners_temporary_is_swept_a_live_ones_is_not(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CLAIM_AND_HANG, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    dead = Path(proc.stdout.readline().strip())
    assert publish.sweep_stale(tmp_path, "out") == []  # its owner is alive
    proc.kill()
    proc.wait()
    mine, fd = publish.claim_temp(tmp_path, "out")
    old = tmp_path / ".out.tmp-made-by-an-older-vit-edge"
    old.mkdir()
    try:
        removed = publish.sweep_stale(tmp_path, "out")
        assert len(removed) == 2
        assert f"{dead.name} (process {proc.pid}, no longer running)" in removed
        assert f"{old.name} (no owner)" in removed
        assert not dead.exists() and not Path(f"{dead}.lock").exists() and not old.exists()
        assert mine.is_dir()
    finally:
        publish.remove(mine)
        publish.release_temp(mine, fd)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sigkill_mid_convert_is_cleaned_up_by_the_next_convert(tmp_path):
    """The acceptance test of item 7: SIGKILL (what the OOM killer sends) leaves the temporary folder; the next
    convert to that --out removes it, says so in one line, and succeeds."""
    out = tmp_path / "out"
    proc = start_convert(out)
    stale = wait_for_temp_dir(proc, tmp_path)
    time.sleep(0.5)  # inside the export
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert stale.is_dir() and Path(f"{stale}.lock").exists()  # what a kill leaves
    result = run_cli("convert", "--out", out)
    assert result.code == 0, result.err
    said = [line for line in result.err.splitlines() if "stale temporary" in line]
    assert len(said) == 1 and stale.name in said[0] and f"process {proc.pid}, no longer running" in said[0]
    assert not stale.exists() and not Path(f"{stale}.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
