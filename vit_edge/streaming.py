"""Run runtimes over an image set window by window, keeping only their outputs (never the image batches).

Memory: one batch of decoded images at a time plus the outputs (n x classes), so a folder of 50,000 JPEGs
needs what 500 need, plus 50,000 rows of logits. The same windows (``ImageSet.indexed_batches``) make the
same batches whether one process runs everything or Ray runs shards, so both give the same arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from vit_edge.errors import DataError


@dataclass
class Collected:
    """What a pass over the data produced: outputs per runner (as the runtime returned them), the labels
    and item indices of the decoded images, and seconds spent per runner."""

    outputs: dict
    labels: np.ndarray | None
    indices: np.ndarray
    seconds: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)  # runner -> runtime.info() (filled by shard runs)


def considered(images, limit) -> int:
    """How many items a pass looks at (decodable or not)."""
    return len(images) if limit is None else min(limit, len(images))


def run_windows(images, cfg, runners: dict, *, batch_size: int = 32, limit=None, start: int = 0, stop=None,
                bar=None) -> Collected:
    """Every runner (name -> Runtime) on every decodable item of ``[start, stop)``, batch by batch."""
    outs = {name: [] for name in runners}
    seconds = {name: 0.0 for name in runners}
    seconds["decode"] = 0.0
    labels, indices = [], []
    clock = time.perf_counter()
    for batch, y, idx in images.indexed_batches(cfg, batch_size=batch_size, limit=limit, start=start, stop=stop):
        seconds["decode"] += time.perf_counter() - clock
        for name, runtime in runners.items():
            clock = time.perf_counter()
            outs[name].append(runtime.run(batch))
            seconds[name] += time.perf_counter() - clock
        if y is not None:
            labels.append(y)
        indices.append(idx)
        if bar is not None:
            bar.update(len(batch))
        clock = time.perf_counter()
    return Collected(outputs={name: np.concatenate(v) if v else None for name, v in outs.items()},
                     labels=np.concatenate(labels) if labels else None,
                     indices=np.concatenate(indices) if indices else np.zeros(0, np.int64), seconds=seconds)


def merge(parts: list) -> Collected:
    """Shards (in data order) -> one Collected, as one pass would have made it."""
    names = list(parts[0].outputs)
    outputs = {n: np.concatenate([p.outputs[n] for p in parts if p.outputs[n] is not None])
               if any(p.outputs[n] is not None for p in parts) else None for n in names}
    labels = [p.labels for p in parts if p.labels is not None]
    seconds = {}
    for p in parts:
        for k, v in p.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
    return Collected(outputs, np.concatenate(labels) if labels else None,
                     np.concatenate([p.indices for p in parts]), seconds, dict(parts[0].info))


def require_images(collected: Collected, images, total: int) -> None:
    if not len(collected.indices):
        raise DataError(f"{images.source}: no decodable images ({total} files skipped)",
                        hint="point --data at a folder of images")
