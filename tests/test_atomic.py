"""All or nothing: a failed, interrupted (SIGINT), terminated (SIGTERM) or out-of-space convert leaves no
--out and no temporary files, and an existing --out replaced with --force survives a failed attempt."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import MODELS, REPO, assert_one_line_error, run_cli
from convert_process import start_convert, wait_for_temp_dir

from vit_edge.artifact import atomic_output_dir, write_json
from vit_edge.errors import OutputError

pytestmark = pytest.mark.slow  # converts models: the full suite runs it, the quick check does not


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_mid_convert_leaves_nothing(tmp_path, signum):
    out = tmp_path / "out"
    proc = start_convert(out)
    tmp = wait_for_temp_dir(proc, tmp_path)
    time.sleep(0.5)  # well inside the export now (it takes seconds), not at its first line
    assert proc.poll() is None, "convert finished before it could be interrupted"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == \
        ["error: interrupted; nothing was written"], err
    assert not tmp.exists()
    assert list(tmp_path.iterdir()) == []


def test_full_disk_leaves_nothing(tmp_path):
    """A file-size limit (RLIMIT_FSIZE, what a full disk looks like to write()) hit during the export."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))  # the demo ONNX is ~580 kB

    proc = start_convert(tmp_path / "out", preexec_fn=limit_file_size)
    _, err = proc.communicate(timeout=600)
    result = type("R", (), {"code": proc.returncode, "err": err,
                            "err_lines": [line for line in err.splitlines() if line.strip()]})
    assert_one_line_error(result, 2, "cannot write", "File too large", "disk space")
    assert list(tmp_path.iterdir()) == []


def _read_only_dir(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    if os.access("/sys", os.W_OK) and not _can_mkdir("/sys"):
        return Path("/sys")  # root ignores permission bits; sysfs refuses new folders even to root
    pytest.skip("running as root without a read-only location to write into")


def _can_mkdir(parent: str) -> bool:
    probe = Path(parent) / f"vit-edge-probe-{os.getpid()}"
    try:
        probe.mkdir()
    except OSError:
        return False
    probe.rmdir()
    return True


def test_read_only_out(tmp_path):
    ro = _read_only_dir(tmp_path)
    result = run_cli("convert", "--out", ro / "sub" / "out")
    assert_one_line_error(result, 2, "cannot create", "writable --out")
    assert not (ro / "sub").exists()


def test_failed_convert_keeps_existing_out_and_leaves_no_temp(tmp_path, demo_onnx):
    """A real failure inside the conversion (export parity below an impossible tolerance) with --force
    (which replaces only an earlier artifact: here a copy of the demo's)."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(demo_onnx, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = run_cli("convert", "--out", out, "--force", "--tolerance", "1e-30")
    assert_one_line_error(result, 1, "disagrees with torch")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_sigterm_in_library_block_unwinds(tmp_path):
    """In-process: SIGTERM inside atomic_output_dir becomes KeyboardInterrupt after cleanup, and the
    previous SIGTERM handler is restored."""
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "model.onnx").write_bytes(b"partial")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises long before this ends
            pytest.fail("SIGTERM did not interrupt the block")
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is previous


def test_atomic_outputs_have_ordinary_permissions(tmp_path):
    """mkdtemp/mkstemp make 0700/0600; a finished artifact must be readable like any other file."""
    mask = os.umask(0o022)
    try:
        with atomic_output_dir(tmp_path / "out") as tmp:
            write_json(tmp / "manifest.json", {"a": 1})
    finally:
        os.umask(mask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "out" / "manifest.json").stat().st_mode & 0o777 == 0o644


def test_write_json_into_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="cannot write"):
        write_json(tmp_path / "nothere" / "r.json", {})
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_openvino_ir(tmp_path):
    """A real full filesystem (a 1 MB tmpfs: the FP32 ONNX fits, the IR beside it does not). OpenVINO
    reports the failed write as a bare RuntimeError; the user must still hear "disk" and find nothing."""
    pytest.importorskip("openvino")
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1000k", "tmpfs", str(small)],
                             capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("cannot mount a tmpfs here (needs root); the RLIMIT_FSIZE test covers the ONNX path")
    try:
        result = run_cli("convert", "--target", "openvino", "--out", small / "out")
        assert_one_line_error(result, 2, "cannot write the OpenVINO IR", "free disk space")
        assert list(small.iterdir()) == []
    finally:
        # Lazy: another pytest process's cleanup of old temp folders may be walking it right now ("busy").
        subprocess.run(["umount", "-l", str(small)], check=True)


def test_ctrl_c_swallowed_by_the_model_code_still_aborts(tmp_path):
    """The Ctrl-C arrives while library code that catches KeyboardInterrupt runs (here, the model's own
    forward): convert still stops with exit 130 and publishes nothing."""
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "vit_edge", "convert", f"{MODELS / 'swallows_ctrl_c.py'}:make_model",
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 130, proc.stderr
    assert "error: interrupted; nothing was written" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []
