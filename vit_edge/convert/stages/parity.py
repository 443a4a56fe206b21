"""Stage ``parity``: a written artifact against the torch module, on real images, before it is shipped.

One check for every target: the export stage proves the FP32 ONNX in ONNX Runtime, each target proves
what it wrote in its own runtime. The metrics come from :mod:`vit_edge.metrics`, like ``validate``'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vit_edge import metrics
from vit_edge.artifact.manifest import ExportParity
from vit_edge.errors import ExportError, ModelSpecError, ParityError, first_line

log = logging.getLogger("vit_edge")


@dataclass(frozen=True)
class TorchComparison:
    """A candidate's outputs against torch's on the same batch."""

    images: int
    data: str
    max_abs_error: float
    tolerance: float  # the allowed max abs error: the relative tolerance times the output scale
    top1_agreement: float

    @property
    def within_tolerance(self) -> bool:
        return self.max_abs_error <= self.tolerance  # False for NaN too


def parity_images(job, count: int = 8, preprocess=None):
    """Real images for the export-time parity check: the user's data when given, the digits for the
    demo, else scikit-learn's two bundled photos cut into several crops."""
    from vit_edge.data import load_images

    preprocess = preprocess or job.loaded.preprocess
    spec = job.export.parity_data or job.validation.data or job.int8.calib
    if spec is None and job.loaded.source.get("kind") == "demo":
        spec = "digits:test"
    if spec is not None:
        images = load_images(spec, job.loaded.labels)
        batches = []
        for batch, _ in images.batches(preprocess, batch_size=count, limit=count * 2):
            batches.append(batch)
            if sum(len(b) for b in batches) >= count:
                break
        if batches:
            return np.concatenate(batches)[:count], str(spec)
    from PIL import Image
    from sklearn.datasets import load_sample_images

    from vit_edge.preprocess import image_to_array

    arrays = []
    for photo in load_sample_images().images:
        im = Image.fromarray(photo)
        w, h = im.size
        boxes = [(0, 0, w, h), (0, 0, w // 2, h // 2), (w // 2, h // 2, w, h), (w // 4, 0, 3 * w // 4, h // 2)]
        arrays += [image_to_array(im.crop(b), preprocess) for b in boxes]
    return np.stack(arrays[:count]), "scikit-learn sample photos"


def torch_outputs(job, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return job.loaded.module(torch.from_numpy(batch)).float().numpy()


def compare_to_torch(job, candidate: np.ndarray, reference: np.ndarray, source: str) -> TorchComparison:
    """``candidate`` vs torch's ``reference`` outputs, with the job's export tolerance scaled to the outputs."""
    return TorchComparison(images=len(reference), data=source,
                           max_abs_error=metrics.max_abs_error(candidate, reference),
                           tolerance=float(job.export.tolerance) * metrics.output_scale(reference),
                           top1_agreement=metrics.agreement(candidate, reference))


def check_export_parity(job, path: Path, size: tuple | None = None) -> ExportParity:
    """Run the ONNX in ONNX Runtime and the module in torch on the same real images; fail loudly.

    ``size`` checks a --dynamic-size export at an input size other than the one it was traced at."""
    from vit_edge.runtimes.onnx import ONNXRuntime

    preprocess = job.loaded.preprocess if size is None else job.loaded.preprocess.replace(input_size=tuple(size))
    batch, source = parity_images(job, preprocess=preprocess)
    reference = torch_outputs(job, batch)
    labels = job.loaded.labels
    if job.loaded.task == "classify" and labels and len(labels) != reference.shape[1]:
        raise ModelSpecError("the labels do not match the model's classes", expected=f"{reference.shape[1]} names",
                             got=f"{len(labels)}", hint="check the --labels file (one name per class, in order)")
    runtime = ONNXRuntime(path, preprocess=preprocess)
    try:  # batch 1 and N: the batch axis is dynamic
        candidate = np.concatenate([runtime.run(batch[:1]), runtime.run(batch[1:])])
    except Exception as exc:  # ORT's own error classes; a fixed reshape inside the graph lands here
        raise ExportError(f"the exported graph does not run at {batch.shape[2]}x{batch.shape[3]} "
                          f"({first_line(exc, 160)}): this model's graph fixes its input size",
                          hint="export without --dynamic-size (or at a fixed --input-size)") from None
    finally:
        runtime.close()
    result = compare_to_torch(job, candidate, reference, source)
    if not result.within_tolerance:
        where = f" at input size {batch.shape[2]}x{batch.shape[3]}" if size is not None else ""
        raise ParityError(f"exported ONNX disagrees with torch{where}: max abs error {result.max_abs_error:.3g} > "
                          f"tolerance {result.tolerance:.3g} on {len(batch)} images ({source})",
                          hint="export without --dynamic-size" if size is not None else
                          "report the model; try --opset or a different exporter version")
    log.info("export parity: max abs error %.2e (tolerance %.1e) on %d images", result.max_abs_error,
             result.tolerance, len(batch))
    return ExportParity(images=result.images, data=result.data, max_abs_error=result.max_abs_error,
                        tolerance=result.tolerance, top1_agreement=result.top1_agreement,
                        input_size=list(batch.shape[2:]))
