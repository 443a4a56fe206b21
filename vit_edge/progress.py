"""What a long command shows while it runs: one line per phase, and progress bars on a terminal."""

from __future__ import annotations

import contextlib
import sys
import time

# Start times of the commands that asked for phase lines (the CLI does, per command; a library caller gets
# none unless it asks): a stack, so a nested command line run in-process times itself.
_started: list = []


@contextlib.contextmanager
def phases():
    """Print :func:`phase` lines while this context is open, timed from when it opened."""
    _started.append(time.monotonic())
    try:
        yield
    finally:
        _started.pop()


def phase(message: str) -> None:
    """One line on stderr naming the step that starts now, with the seconds since the command started.

    The bars below are hidden outside a terminal, so without these a CI log or a pipe shows nothing for the
    minutes an export or quantization takes. Call it once per phase, never per batch: it is a log line."""
    if not _started:
        return
    print(f"[{time.monotonic() - _started[-1]:6.1f}s] {message}", file=sys.stderr, flush=True)


def progress_bar(iterable=None, *, desc: str, total: int | None = None, enabled: bool = True):
    """A tqdm bar on stderr, shown only when stderr is a terminal: in CI logs and pipes a bar redrawn in
    place becomes thousands of characters of carriage returns (tqdm's ``disable=None`` does that check)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="img", leave=False, disable=None if enabled else True)
