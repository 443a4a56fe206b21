"""``model.onnx``: an existing ONNX file. Export is skipped; preprocessing, labels and task come from the
vit-edge metadata it carries, when it carries any."""

from __future__ import annotations

import logging
from pathlib import Path

from vit_edge.errors import ModelSpecError
from vit_edge.preprocess import PreprocessConfig
from vit_edge.sources.common import LoadedModel, LoadRequest, note_assumed

log = logging.getLogger("vit_edge")


def load(value: str, request: LoadRequest) -> LoadedModel:
    loaded = _read(Path(value), request.preprocess_given)
    if request.task is not None and request.task != loaded.task:
        raise ModelSpecError(f"--task {request.task} does not apply to {value}: an ONNX file's task is fixed "
                             f"(this one: {loaded.task})", hint="drop --task, or convert the original model")
    return loaded


def _read(path: Path, given=frozenset()) -> LoadedModel:
    from vit_edge.artifact import sha256_file
    from vit_edge.onnx_meta import graph_preprocess, read_metadata

    meta = read_metadata(path)
    source = {"kind": "onnx", "name": path.name, "onnx_file": str(path.resolve()),
              "onnx_sha256": sha256_file(path)}
    if meta:
        pre = PreprocessConfig.from_dict(meta["preprocess"])
        return LoadedModel(None, pre, meta.get("labels"), {**meta.get("source", {}), **source},
                           task=meta.get("task", "classify"), onnx_path=path)
    pre = graph_preprocess(path)
    note_assumed(f"{path} carries no vit-edge metadata", {
        "channels": f"{pre.channels} channel(s)", "input_size": f"{pre.input_size[0]}x{pre.input_size[1]} (its input "
        "shape)", "mean": "mean " + ",".join(map(str, pre.mean)), "std": "std " + ",".join(map(str, pre.std))},
        given, None)
    return LoadedModel(None, pre, None, source, onnx_path=path)
