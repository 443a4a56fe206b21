"""``--max-accuracy-drop``: NNCF's accuracy-controlled quantization on top-1 of labelled validation data.

NNCF returns the operations that cost the most top-1 to floating point until the drop is met; which ones it
returned is recorded in the manifest and told to the user.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from vit_edge.errors import DataError

log = logging.getLogger("vit_edge")


def _validation_images(job, holdout) -> tuple[np.ndarray, np.ndarray, str]:
    """Labelled images for accuracy control: --validate when given, else the calibration hold-out."""
    from vit_edge.data import load_images

    spec = job.validation.data
    images = load_images(spec, job.loaded.labels) if spec else holdout
    if images is None or not images.labelled:
        raise DataError("--max-accuracy-drop needs labelled validation data",
                        hint="pass --validate with class subfolders, a .npz with labels, or digits:test")
    xs, ys = [], []
    for batch, labels in images.batches(job.loaded.preprocess, batch_size=32, limit=job.validation.limit):
        xs.append(batch)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys), images.source


class _RevertedOps(logging.Handler):
    """Catches NNCF's report of the operations accuracy control returned to floating point.

    NNCF only logs that list (the quantized model carries no record of it), so we listen for it while
    keeping NNCF's own console output quiet."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.reverted: list[str] = []
        self.quantized: int | None = None

    def emit(self, record):
        text = record.getMessage()
        if "were reverted back to the floating-point precision" in text:
            head, _, body = text.partition(":\n")
            words = head.split()
            self.quantized = int(words[3]) if len(words) > 3 and words[3].isdigit() else None
            self.reverted = [line.strip() for line in body.splitlines() if line.strip()]


@contextlib.contextmanager
def _listen_to_nncf():
    nncf_logger = logging.getLogger("nncf")
    listener = _RevertedOps()
    saved = (nncf_logger.level, [(h, h.level) for h in nncf_logger.handlers])
    quiet = not log.isEnabledFor(logging.INFO)
    nncf_logger.setLevel(logging.INFO)
    for handler, _ in saved[1]:
        handler.setLevel(logging.ERROR if quiet else logging.INFO)
    nncf_logger.addHandler(listener)
    try:
        yield listener
    finally:
        nncf_logger.removeHandler(listener)
        nncf_logger.setLevel(saved[0])
        for handler, level in saved[1]:
            handler.setLevel(level)


def accuracy_controlled(job, nncf, model, calibration, evaluate, arguments, holdout):
    """``nncf.quantize_with_accuracy_control`` on top-1 of labelled data; returns the model and a record."""
    drop = float(job.int8.max_accuracy_drop)
    xs, ys, source = _validation_images(job, holdout)
    validation = nncf.Dataset([(xs[i:i + 32], ys[i:i + 32]) for i in range(0, len(xs), 32)])

    def top1(candidate, items):
        hits = total = 0
        for x, y in items:
            hits += int((evaluate(candidate, x).argmax(1) == y).sum())
            total += len(y)
        return hits / max(total, 1)

    with _listen_to_nncf() as listener:
        quantized = nncf.quantize_with_accuracy_control(
            model, calibration, validation, top1, max_drop=drop / 100.0, drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=arguments.pop("advanced"), **arguments)
    reverted = listener.reverted
    job.messages.append(f"accuracy control (max drop {drop:g} pts on {source}): "
                        + (f"returned {len(reverted)} operation(s) to floating point: {', '.join(reverted)}"
                           if reverted else "no operation needed to return to floating point"))
    return quantized, {"max_drop_points": drop, "validation": source, "validation_images": int(len(xs)),
                       "reverted_to_float": reverted, "quantized_operations": listener.quantized}
