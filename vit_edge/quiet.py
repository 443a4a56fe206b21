"""Third-party chatter kept off the user's terminal unless ``-v``: what vit-edge already summarises (an exporter
that failed and was replaced, a graph optimisation skipped, a weight-loading bar) would otherwise bury its own
few lines. Each library is quieted where it is used, because most of them reset their loggers on import.

Found by converting models that trigger them, not guessed (see tests/test_feedback.py): torch.export prints the
partial graph of a failed trace to stderr and logs ``always_classified is unsupported``; onnxscript's optimizer
logs ``Skipping constant folding for op Split with multiple outputs``; transformers draws a ``Loading weights``
bar and logs ``[transformers]`` warnings; onnxconverter-common warns for every FP32 constant FP16 clamps.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings


def verbose() -> bool:
    """Whether the user asked for details (``vit-edge -v`` sets the vit_edge logger to INFO)."""
    return logging.getLogger("vit_edge").isEnabledFor(logging.INFO)


@contextlib.contextmanager
def quiet_block(up_to: int = logging.WARNING):
    """Around a library call whose output vit-edge reports in its own words: Python warnings, log records up
    to level ``up_to`` and writes to ``sys.stderr`` are dropped, unless verbose.

    ``logging.disable`` reaches loggers whose levels a library set for itself (torch's, onnxscript's) and
    handlers bound to the real stderr at import; the redirect catches ``print(..., file=sys.stderr)``. The
    dynamo export attempt passes ``up_to=logging.ERROR``: when it fails, convert falls back to TorchScript
    and logs why at INFO, so torch.export's error log and partial graph (pages of code) are noise."""
    if verbose():
        yield
        return
    previous = logging.root.manager.disable
    logging.disable(up_to)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def quiet_transformers(transformers) -> None:
    """transformers resets its own logger when imported: its warnings and its ``Loading weights`` bar (on
    stderr, even outside a terminal) are shown only when verbose."""
    if verbose():
        transformers.logging.set_verbosity_warning()
        transformers.logging.enable_progress_bar()
    else:
        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
