"""The vit-edge metadata an ONNX file carries, so a bare .onnx still knows its preprocessing and labels;
and the one checked way an .onnx is opened (its external-data files must stay inside its folder)."""

from __future__ import annotations

import json
from pathlib import Path

from vit_edge.errors import ArtifactError

META_KEY = "vit_edge"


def set_metadata(model_proto, meta: dict) -> None:
    """Store ``meta`` as JSON under one metadata_props key (replacing an earlier one)."""
    props = [p for p in model_proto.metadata_props if p.key != META_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(props)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, sort_keys=True)


def load_onnx(path, *, load_external_data: bool = False):
    """Parse an .onnx with onnx, refusing files that are not models and external data outside their folder.

    A protobuf parser accepts almost any bytes as an empty model, so a model without a graph is refused
    here rather than copied into an artifact.
    """
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError, ... depending on how the file is broken
        raise ArtifactError(f"{path} is not a readable ONNX file ({type(exc).__name__})",
                            hint="re-export it; the file may be truncated") from None
    if not model.graph.node or not model.graph.input or not model.graph.output:
        raise ArtifactError(f"{path} is not an ONNX model (no graph inside)",
                            hint="re-export it; the file may be empty or corrupt")
    check_external_data(model, path)
    if load_external_data and external_data_files(model):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(path.parent))
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"{path}: cannot read its external data ({type(exc).__name__}: {exc})",
                                hint="keep the .onnx and its data files together") from None
    return model


def external_data_files(model) -> set:
    """The ``location`` of every tensor stored outside the .onnx (graph and subgraphs)."""
    return {dict((e.key, e.value) for e in t.external_data).get("location", "")
            for t in _tensors(model.graph) if t.data_location == t.EXTERNAL}


def _tensors(graph):
    """Every TensorProto in a graph: initializers, sparse ones, and constants inside nodes and subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


def check_external_data(model, path: Path) -> None:
    """External data may only name files inside the model's own folder: an absolute path or ``..`` could
    make loading a downloaded model read (and so leak into outputs) any file on the machine."""
    folder = path.resolve().parent
    for location in sorted(external_data_files(model)):
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or ".." in Path(location).parts or \
                folder not in target.parents:
            raise ArtifactError(f"{path}: external data {location!r} points outside the model's folder; refused",
                                hint="keep the weights file beside the .onnx and reference it by a plain name")


def check_onnx_file(path) -> None:
    """The checks of :func:`load_onnx` for callers that hand the file to another loader (ONNX Runtime)."""
    try:
        import onnx  # noqa: F401
    except ImportError:  # a runtime-only install: ONNX Runtime's own loader is all there is
        return
    load_onnx(path)


def read_metadata(path) -> dict | None:
    """Read our metadata with onnx when installed, else through onnxruntime (runtime-only installs)."""
    path = Path(path)
    try:
        import onnx  # noqa: F401
    except ImportError:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = sess.get_modelmeta().custom_metadata_map
    else:
        props = {p.key: p.value for p in load_onnx(path).metadata_props}
    value = props.get(META_KEY)
    return json.loads(value) if value else None


def input_dims(path) -> list:
    """The first graph input's shape: an int per fixed dimension, None per symbolic one ([] when unranked)."""
    path = Path(path)
    try:
        import onnx  # noqa: F401
    except ImportError:
        import onnxruntime as ort

        shape = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
        return [d if isinstance(d, int) and d > 0 else None for d in (shape or [])]
    graph = load_onnx(path).graph
    initializers = {t.name for t in graph.initializer}
    first = next(i for i in graph.input if i.name not in initializers)
    tensor = first.type.tensor_type
    if not tensor.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]


def graph_preprocess(path):
    """Preprocessing for an ONNX without vit-edge metadata, from what its input shape fixes (channels, size);
    ImageNet statistics (averaged for one channel) for the rest, as for any model that declares none."""
    from vit_edge.preprocess import PreprocessConfig, default_statistics

    dims = input_dims(path)
    channels = dims[1] if len(dims) == 4 and dims[1] else 3
    size = tuple(dims[2:]) if len(dims) == 4 and None not in dims[2:] else (224, 224)
    return PreprocessConfig(input_size=size, **default_statistics(channels))
