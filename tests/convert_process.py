"""A demo convert in a child process, and waiting for its temporary sibling: what the race, signal, full-disk
and SIGKILL tests act on mid-run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def start_convert(out: Path, preexec_fn=None) -> subprocess.Popen:
    """``vit-edge convert --out OUT`` of the demo model, its output captured."""
    return subprocess.Popen([sys.executable, "-m", "vit_edge", "convert", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=preexec_fn)


def wait_for_temp_dir(proc: subprocess.Popen, parent: Path, timeout: float = 300) -> Path:
    """The temporary sibling ``.out.tmp-*`` folder, which appears when convert enters the conversion (model
    loaded, export starting); fails the test if convert ends or never gets there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [p for p in parent.iterdir() if p.name.startswith(".out.tmp-") and p.is_dir()]
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"convert ended before the conversion started: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("convert never started writing")
