"""Progress bars for the long steps (calibration, quantization passes, validation)."""

from __future__ import annotations


def progress_bar(iterable=None, *, desc: str, total: int | None = None, enabled: bool = True):
    """A tqdm bar on stderr, shown only when stderr is a terminal: in CI logs and pipes a bar redrawn in
    place becomes thousands of characters of carriage returns (tqdm's ``disable=None`` does that check)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit="img", leave=False, disable=None if enabled else True)
