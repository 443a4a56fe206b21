"""``model.onnx``: an existing ONNX file. Export is skipped; preprocessing, labels and task come from the
vit-edge metadata it carries, when it carries any."""

from __future__ import annotations

import logging
from pathlib import Path

from vit_edge.errors import ModelSpecError
from vit_edge.preprocess import PreprocessConfig
from vit_edge.sources.common import LoadedModel, LoadRequest

log = logging.getLogger("vit_edge")


def load(value: str, request: LoadRequest) -> LoadedModel:
    loaded = _read(Path(value))
    if request.task is not None and request.task != loaded.task:
        raise ModelSpecError(f"--task {request.task} does not apply to {value}: an ONNX file's task is fixed "
                             f"(this one: {loaded.task})", hint="drop --task, or convert the original model")
    return loaded


def _read(path: Path) -> LoadedModel:
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
    log.warning("%s carries no vit-edge metadata: assuming %d channel(s) at %dx%d (its input shape), mean %s, "
                "std %s, unless overridden", path, pre.channels, *pre.input_size, ",".join(map(str, pre.mean)),
                ",".join(map(str, pre.std)))
    return LoadedModel(None, pre, None, source, onnx_path=path)
