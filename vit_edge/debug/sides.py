"""What debug compares: the candidate's graph (ONNX or OpenVINO IR) and the FP32 ONNX it was made from.

The candidate is an artifact folder (ONNX, OpenVINO, or a TensorRT folder's TensorRT-ready ONNX:
``manifest.artifact_for("onnx")``) or a ``.onnx``/``.xml`` file. The reference is the FP32 ONNX re-exported
from the manifest's source (``export_torch``, as convert exported it: same exporter, opset and axes, so
the same node and tensor names), the ONNX file the candidate was converted from, or what ``--reference``
names: a MODEL spec (exported the same way) or an FP32 ONNX artifact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from vit_edge import targets
from vit_edge.errors import ArtifactError, VitEdgeError

log = logging.getLogger("vit_edge")

BACKENDS = {".onnx": "onnx", ".xml": "openvino"}


class NotFP32Reference(VitEdgeError):
    """``--reference`` names something that is not an FP32 model."""


class NoSharedPoints(VitEdgeError):
    """The candidate's graph and the reference's have no comparison point in common."""


@dataclass
class Sides:
    path: Path  # the candidate graph file
    backend: str  # "onnx" or "openvino"
    manifest: object  # artifact.Manifest
    preprocess: object
    fp32_path: Path | None = None  # the FP32 ONNX reference
    module: object = None  # the torch module (for module names), None for an ONNX reference or a cached export
    names: dict | None = None  # points.naming() of a torch reference (GEMM -> module, modules), None for ONNX
    reference: dict = field(default_factory=dict)  # how the reference was obtained (for the report)
    cache: str | None = None  # the export cache: "hit", "stored", "miss" (not written), None (not used)
    cache_parts: dict | None = None  # what its key hashes

    @property
    def precision(self) -> str:
        return self.manifest.precision or "fp32"


def candidate(path) -> Sides:
    """Find the graph file an artifact folder or file holds and read its manifest."""
    from vit_edge.artifact import MANIFEST, Manifest, read_manifest
    from vit_edge.preprocess import PreprocessConfig

    path = Path(path)
    if path.is_dir():
        manifest = read_manifest(path)  # a folder without a manifest is no artifact: one-line error
        backend = "openvino" if manifest.target == "openvino" else "onnx" if manifest.artifact_for("onnx") else None
        if backend is None:
            raise ArtifactError(f"{path}: debug compares ONNX and OpenVINO graphs; this {manifest.target} artifact "
                                "holds neither", hint="debug the ONNX or OpenVINO artifact of the same model")
        file = path / manifest.artifact_for(backend)
        if path.resolve() not in file.resolve().parents or not file.is_file():
            raise ArtifactError(f"{path}: the manifest names {file.name} but it is missing or outside the folder",
                                hint="re-run vit-edge convert")
    elif path.is_file() and path.suffix.lower() in BACKENDS:
        file, backend = path, BACKENDS[path.suffix.lower()]
        if (path.parent / MANIFEST).exists():
            manifest = read_manifest(path.parent)
        else:
            meta = None
            if backend == "onnx":
                from vit_edge.onnx_meta import read_metadata

                meta = read_metadata(path)
            manifest = Manifest.from_dict({**(meta or {}), "target": backend, "artifact": path.name})
    elif not path.exists():
        raise ArtifactError(f"{path}: no such artifact", hint="pass a vit-edge --out directory, a .onnx or a .xml")
    else:
        suffixes = ", ".join(s for e in targets.TARGETS.values() for s in e.suffixes)
        raise ArtifactError(f"{path}: not an artifact debug can open (expected a --out directory, a .onnx or a "
                            f".xml; artifacts end in {suffixes})")
    if backend == "onnx":
        from vit_edge.onnx_meta import check_onnx_file

        check_onnx_file(file)
    if backend == "openvino" and getattr(manifest.openvino, "route", None) == "pytorch":
        # Points are matched by the FP32 ONNX's node names, which OpenVINO's PyTorch frontend does not keep.
        raise ArtifactError(f"{path}: this IR was made by OpenVINO's PyTorch frontend (route: pytorch), whose "
                            "node names debug cannot match with the FP32 ONNX it compares against",
                            hint="convert it again with --route onnx and debug that artifact")
    preprocess = manifest.preprocess
    if preprocess is None:
        log.warning("%s has no recorded preprocessing; using defaults", file)
        preprocess = PreprocessConfig()
    return Sides(path=file, backend=backend, manifest=manifest, preprocess=preprocess)


def attach_reference(sides: Sides, reference, workdir: Path) -> None:
    """Find or make the FP32 ONNX reference (slow: a torch export) and the torch module naming its ops."""
    from vit_edge import runtimes

    manifest = sides.manifest
    key = None
    if reference is not None and not runtimes.names_recorded_source(reference, manifest):
        # A MODEL spec is built for the artifact's task; an artifact carries its own.
        options = {} if runtimes.is_artifact(reference) else {"task": manifest.task or "classify"}
        runtime = runtimes.load_any(reference, preprocess=sides.preprocess, **options,
                                    target="onnx" if _is_artifact_dir(reference) else None)
        what = {"given": str(reference)}
    else:  # the recorded source; run as code only when the user named it (runtimes.trust decides the rest)
        what = {"given": None if reference is None else str(reference),
                "source": manifest.source.spec or manifest.source.onnx_file}
        cached, key = _cached_export(sides, code_named=reference is not None)
        if cached is not None:
            path, meta = cached
            sides.fp32_path, sides.names, sides.cache = path, meta["names"], "hit"
            sides.reference = {**what, "kind": "torch export", "name": meta["name"], "exporter": meta["exporter"]}
            return
        runtime = runtimes.reference_from_manifest(manifest, directory=sides.path.parent, preprocess=sides.preprocess,
                                                   code_named=reference is not None)
    from vit_edge.runtimes.torch import TorchRuntime  # after a cache hit's return: it imports torch

    try:
        if isinstance(runtime, TorchRuntime):
            _export(sides, runtime, workdir, what, key)
            return
        if runtime.target not in ("onnx", "tensorrt") or not str(getattr(runtime, "path", "")).endswith(".onnx"):
            raise NotFP32Reference(f"--reference {reference}: debug needs the FP32 ONNX (or the MODEL) as reference, "
                                   f"not a {runtime.target} artifact", hint="pass the MODEL spec or an FP32 ONNX")
        sides.fp32_path = Path(runtime.path)
        sides.reference = {**what, "kind": "onnx", "name": runtime.name}
        if runtime.precision != "fp32":
            raise NotFP32Reference(f"the reference {sides.fp32_path} is {runtime.precision}, not FP32",
                                   hint="pass the FP32 model (a MODEL spec or an FP32 ONNX) as --reference")
    finally:
        runtime.close()
    _require_fp32(sides.fp32_path)


def _cached_export(sides: Sides, *, code_named: bool):
    """((the cached FP32 ONNX, its metadata) or None, the cache key or None) for the recorded source: only a
    MODEL spec is exported (an ONNX source is its own reference); refused sources are refused before a cached
    answer could hide it, as validate does."""
    import vit_edge.debug.export_cache as export_cache
    from vit_edge.runtimes.trust import check_source, say_outside

    manifest = sides.manifest
    plan = check_source(manifest, sides.path.parent, code_named=code_named)
    if "spec" not in plan or plan["spec"] is None or export_cache.cache_dir() is None:
        return None, None
    key, sides.cache_parts = export_cache.make_key(manifest, sides.preprocess)
    found = export_cache.load(key)
    sides.cache = "miss"
    if found is not None:
        say_outside(plan["outside"], sides.path.parent)
        log.info("the FP32 reference's export comes from the cache (%s)", found[0])
    return found, key


def _export(sides: Sides, runtime, workdir: Path, what: dict, key) -> None:
    """Export the torch reference as convert did (same exporter, opset and axes: the same node names), name
    its GEMMs after the torch modules, and keep both in the export cache under ``key``."""
    import onnx

    from vit_edge.convert.stages.export import export_torch
    import vit_edge.debug.export_cache as export_cache
    from vit_edge.debug.points import naming

    path = workdir / "fp32.onnx"
    export = sides.manifest.export
    options = {"dynamic_size": bool(export.dynamic_size)} if export is not None else {}
    if export is not None and export.opset:
        options["opset"] = int(export.opset)
    log.info("exporting the FP32 reference %s to ONNX", runtime.loaded.name)
    exporter = export_torch(runtime.module, sides.preprocess, path, **options)
    sides.fp32_path, sides.module = path, runtime.module
    sides.names = naming(onnx.load(str(path)), runtime.module)
    sides.reference = {**what, "kind": "torch export", "name": runtime.loaded.name, "exporter": exporter}
    if key is not None and export_cache.store(key, sides.cache_parts, path, {
            "names": sides.names, "name": runtime.loaded.name, "exporter": exporter}) is not None:
        sides.cache = "stored"


def _is_artifact_dir(item) -> bool:
    from vit_edge.artifact import MANIFEST, read_manifest

    path = Path(str(item))
    if not (path.is_dir() and (path / MANIFEST).exists()):
        return False
    return bool(read_manifest(path).artifact_for("onnx"))


def _require_fp32(path: Path) -> None:
    """An ONNX with quantizers or FP16 tensors is no FP32 reference, whatever its metadata says."""
    import onnx

    model = onnx.load(str(path))
    quantizers = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    half = sum(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    if quantizers or half:
        what = f"{quantizers} Q/DQ nodes" if quantizers else f"{half} FP16 weights"
        raise NotFP32Reference(f"the reference {path} is not FP32 (it holds {what})",
                               hint="pass the FP32 model (a MODEL spec or an FP32 ONNX) as --reference")
