"""``validate --ray [ADDRESS]``: reference and candidate inference as Ray tasks over shards of the data.

Each shard is a run of whole batch windows (it starts at a multiple of the batch size), so every task sees
the batches a single pass would see and the merged outputs are the same arrays: the report is identical.
One task per shard and side; a task loads its runtime (``factory()``), runs its windows and returns the
outputs only. The image list travels once through the object store. On a cluster, vit-edge and the backends
must be installed on the workers and the data and artifact paths must be readable there.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from pathlib import Path

from vit_edge.errors import VitEdgeError
from vit_edge.streaming import Collected, considered, merge, require_images, run_windows

log = logging.getLogger("vit_edge")


def _shard(factory, images, cfg, batch_size, limit, start, stop) -> Collected:
    runtime = factory()
    try:
        got = run_windows(images, cfg, {"out": runtime}, batch_size=batch_size, limit=limit, start=start, stop=stop)
        got.info = {"out": runtime.info()}
        return got
    finally:
        runtime.close()


def shards(total: int, batch_size: int, workers: int) -> list:
    """[(start, stop)] covering ``range(total)`` in at most ``workers`` runs of whole batch windows."""
    windows = math.ceil(total / batch_size)
    count = max(1, min(windows, workers))
    edges = [round(i * windows / count) for i in range(count + 1)]
    return [(edges[i] * batch_size, min(total, edges[i + 1] * batch_size)) for i in range(count)
            if edges[i + 1] > edges[i]]


def _portable(images):
    """The image set with absolute paths (workers may run in another directory); ids stay as given."""
    items = [Path(p).resolve() if isinstance(p, (str, Path)) else p for p in images.items]
    return replace(images, items=items, skipped=[])


def collect(address: str | None, images, cfg, factories: dict, *, batch_size: int = 32, limit=None) -> Collected:
    """Every factory's runtime over all of ``images``, sharded over the Ray cluster at ``address``
    ("local" or None: start a local Ray; else ``ray.init(address=...)``, e.g. "auto" or "ray://host:10001")."""
    try:
        import ray
    except ImportError:
        raise VitEdgeError("--ray needs Ray", hint="pip install 'vit-edge[distributed]'") from None
    started = not ray.is_initialized()
    if started:
        local = address in (None, "", "local")
        try:
            ray.init(address=None if local else address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except Exception as exc:  # ConnectionError, ValueError, RuntimeError...: all mean "no cluster there"
            raise VitEdgeError(f"cannot {'start a local Ray' if local else f'connect to Ray at {address}'} "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
                               hint="check the address (e.g. auto, ray://HOST:10001) or drop --ray") from None
    try:
        workers = int(ray.cluster_resources().get("CPU", 1))
        total = considered(images, limit)
        parts = shards(total, batch_size, workers)
        log.info("ray: %d shards over %d CPUs", len(parts), workers)
        task = ray.remote(num_cpus=1)(_shard)
        shared = ray.put(_portable(images))
        futures = {name: [task.remote(factory, shared, cfg, batch_size, limit, start, stop) for start, stop in parts]
                   for name, factory in factories.items()}
        try:
            results = {name: ray.get(refs) for name, refs in futures.items()}
        except ray.exceptions.RayTaskError as exc:
            if isinstance(getattr(exc, "cause", None), VitEdgeError):
                raise exc.cause from None  # the worker's one-line error, as a local run would give it
            raise
    finally:
        if started:
            ray.shutdown()
    merged = {name: merge(got) for name, got in results.items()}
    first = next(iter(merged.values()))
    return Collected(outputs={name: m.outputs["out"] for name, m in merged.items()}, labels=first.labels,
                     indices=first.indices,
                     seconds={name: m.seconds["out"] for name, m in merged.items()} | {"decode": sum(
                         m.seconds["decode"] for m in merged.values())},
                     info={name: m.info["out"] for name, m in merged.items()})


def validate_collect(address, candidate, candidate_options, make_reference, cached, images, cand_rt, batch_size,
                     limit):
    """validate's ``--ray`` pass: the candidate (loaded on each worker) and, unless ``cached`` (a
    :class:`~vit_edge.reference_cache.CachedReference` covering these images) serves it, the reference.
    Returns the Collected outputs and the reference's side of the report."""
    import functools

    import numpy as np

    from vit_edge import runtimes

    factories = {"candidate": functools.partial(runtimes.load, str(Path(candidate).resolve()),
                                                **(candidate_options or {}))}
    if cached is None:
        factories["reference"] = make_reference
    got = collect(address, images, cand_rt.preprocess, factories, batch_size=batch_size, limit=limit)
    require_images(got, images, considered(images, limit))
    if cached is not None and np.array_equal(got.indices, cached.indices):
        got.outputs["reference"] = cached.outputs
        return got, {**cached.info, "source": "cache", "cache_key": cached.key[:16]}
    if cached is not None:  # stale: compute the reference too
        more = collect(address, images, cand_rt.preprocess, {"reference": make_reference},
                       batch_size=batch_size, limit=limit)
        got.outputs["reference"], got.info["reference"] = more.outputs["reference"], more.info["reference"]
    ref = got.info["reference"]
    return got, {k: ref[k] for k in ("name", "target", "precision", "device", "inference_precision") if k in ref} | {
        "source": "computed"}
