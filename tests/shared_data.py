"""Where the shared data sets live: ``shared/data/NAME`` beside the checkout (/work/main -> /work/shared), or
further up for worktrees and CI clones. One finder for tests, scripts and benchmarks."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data(name: str) -> Path:
    """``shared/data/NAME`` in the nearest parent that has it (the first guess when none does)."""
    for parent in REPO.parents:
        candidate = parent / "shared" / "data" / name
        if candidate.is_dir():
            return candidate
    return REPO.parent / "shared" / "data" / name
