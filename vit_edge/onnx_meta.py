"""The vit-edge metadata an ONNX file carries, so a bare .onnx still knows its preprocessing and labels."""

from __future__ import annotations

import json
from pathlib import Path

META_KEY = "vit_edge"


def set_metadata(model_proto, meta: dict) -> None:
    """Store ``meta`` as JSON under one metadata_props key (replacing an earlier one)."""
    props = [p for p in model_proto.metadata_props if p.key != META_KEY]
    del model_proto.metadata_props[:]
    model_proto.metadata_props.extend(props)
    entry = model_proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta, sort_keys=True)


def read_metadata(path) -> dict | None:
    """Read our metadata with onnx when installed, else through onnxruntime (runtime-only installs)."""
    path = Path(path)
    try:
        import onnx

        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            from vit_edge.errors import ArtifactError

            raise ArtifactError(f"{path} is not a readable ONNX file ({type(exc).__name__})",
                                hint="re-export it; the file may be truncated") from None
        props = {p.key: p.value for p in model.metadata_props}
    except ImportError:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = sess.get_modelmeta().custom_metadata_map
    value = props.get(META_KEY)
    return json.loads(value) if value else None
