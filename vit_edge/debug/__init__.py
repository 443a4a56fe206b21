"""``vit-edge debug``: where an INT8/FP16 artifact drifts from its FP32 reference, and what fixes it.

1. :mod:`.sides` finds the candidate graph and the FP32 ONNX reference (re-exported from the manifest source);
2. :mod:`.points` chooses the comparison points on the FP32 ONNX and names them after torch modules;
3. :mod:`.taps` makes them extra outputs of both graphs and runs them on the same images (OpenVINO: at the
   precision the artifact runs and at f32), :mod:`.measure` accumulates the metrics and finds where the
   error jumps above the noise floor;
4. :mod:`.sensitivity` ranks the quantized operations by how much the output recovers with each returned to
   float (the accuracy budget's ranking) and measures the fix; :mod:`.report` and :mod:`.plot` render it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from vit_edge.debug.report import DebugReport
from vit_edge.debug.sides import NoSharedPoints, NotFP32Reference
from vit_edge.errors import DataError
from vit_edge.metrics import Thresholds

__all__ = ["debug_artifact", "DebugReport", "NoSharedPoints", "NotFP32Reference", "DEFAULT_LIMIT"]

log = logging.getLogger("vit_edge")

DEFAULT_LIMIT = 64


def debug_artifact(candidate, *, data, reference=None, limit: int | None = DEFAULT_LIMIT, thresholds=None,
                   progress: bool = True) -> DebugReport:
    """Compare ``candidate`` with its FP32 reference point by point on ``data``; rank the culprits."""
    import vit_edge.debug.sides as sides_module

    started = time.perf_counter()
    th = thresholds if isinstance(thresholds, Thresholds) else Thresholds.from_options(thresholds)
    sides = sides_module.candidate(candidate)
    images, decoded = _images(data, sides, limit)
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="vit-edge-debug-") as tmp:
        clock = time.perf_counter()
        sides_module.attach_reference(sides, reference, Path(tmp))
        seconds["reference"] = time.perf_counter() - clock
        from vit_edge.debug.run import run

        result = run(sides, decoded, progress=progress, seconds=seconds)
    seconds["total"] = time.perf_counter() - started
    timing = {k: round(v, 2) for k, v in seconds.items()}
    if sides.cache is not None:  # the FP32 export: "hit", "stored" or "miss" (see export_cache)
        timing["export_cache"] = sides.cache
    return DebugReport.build(sides, images, decoded, result, th, timing, data=data)


def _images(data, sides, limit):
    """Decode the images once with the candidate's preprocessing: at most ``limit``, a seeded sample stratified
    by class when labelled (as validate's --limit), so a folder's first classes never stand for all of it."""
    from vit_edge.data import load_images

    images = load_images(data, sides.manifest.labels).sample(limit, seed=0)
    batches = [b for b, _ in images.batches(sides.preprocess, batch_size=32, limit=limit)]
    if not batches:
        raise DataError(f"{images.source}: no decodable images ({len(images.skipped)} files skipped)",
                        hint="point --data at a folder of images")
    return images, np.concatenate(batches)
