"""Artifacts on disk: the typed manifest beside every artifact, file hashes, atomic writes and outputs.

Layout of an ``--out`` directory::

    manifest.json      what this is, how it was made, how to feed it (:class:`Manifest`)
    model.onnx | model.xml + model.bin | model.engine (+ model.onnx the engine was built from)
    report.json / report.md   when convert validated it
"""

from vit_edge.artifact.files import (MANIFEST, atomic_output_dir, disk_error, file_entries, interrupted,
                                     interrupts_as_exceptions, library_versions, sha256_file, write_json,
                                     write_text)
from vit_edge.artifact.manifest import (FORMAT_VERSION, ExportParity, ExportRecord, FileEntry, FP16Record,
                                        Manifest, OpenVINORecord, QuantizationRecord, SourceRecord,
                                        TensorRTRecord, TensorRTSettings, ValidationRecord, manifest_of,
                                        read_manifest, schema)

__all__ = ["MANIFEST", "FORMAT_VERSION", "Manifest", "SourceRecord", "ExportRecord", "ExportParity",
           "QuantizationRecord", "FP16Record", "OpenVINORecord", "TensorRTRecord", "TensorRTSettings",
           "ValidationRecord", "FileEntry", "manifest_of", "read_manifest", "schema", "atomic_output_dir", "disk_error",
           "file_entries", "interrupted", "interrupts_as_exceptions", "library_versions", "sha256_file",
           "write_json", "write_text"]
