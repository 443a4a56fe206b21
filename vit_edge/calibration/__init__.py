"""Calibration data for INT8: real images, sampled deterministically and preprocessed like the model.

``load_calibration(spec, preprocess, size=300, seed=0)`` accepts whatever ``vit_edge.data.load_images``
accepts (an image folder searched recursively, class subfolders allowed; a preprocessed ``.npy``/``.npz``;
a built-in spec such as ``digits:train``). There is deliberately no fallback to random or synthetic data:
quantizing a ViT on noise gives scales that look fine and lose accuracy silently, so missing or
undecodable calibration data is an error the user must fix.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from vit_edge.errors import DataError
from vit_edge.preprocess import check_batch

log = logging.getLogger("vit_edge")

DEFAULT_SIZE = 300
# The manifest key (quantization.calibration) of the images' content hashes, calibration and recipe scoring
# together: validate warns when its data holds any of them (parity measured on images INT8 was fitted to).
DIGESTS_KEY = "images_sha256"


@dataclass
class CalibrationData:
    """Preprocessed NCHW float32 calibration images and where they came from."""

    images: np.ndarray
    source: str
    requested: int
    skipped: list = field(default_factory=list)  # files that did not decode
    holdout: object | None = None  # data.ImageSet of the labelled images not used for calibration
    scoring: np.ndarray | None = None  # images sampled after the calibration ones, never calibrated on
    digests: list = field(default_factory=list)  # sorted content hashes of every image used (ImageSet.digest)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch_size: int = 1):
        """The images in batches (NNCF feeds one item per calibration step)."""
        for start in range(0, len(self.images), batch_size):
            yield self.images[start:start + batch_size]

    def summary(self) -> dict:
        return {"source": self.source, "requested": self.requested, "used": len(self),
                "skipped_files": len(self.skipped),
                **({"scoring": len(self.scoring)} if self.scoring is not None else {}),
                **({"holdout": len(self.holdout)} if self.holdout is not None else {}),
                **({DIGESTS_KEY: self.digests} if self.digests else {})}


def load_calibration(spec, preprocess, *, size: int = DEFAULT_SIZE, seed: int = 0, label_names=None,
                     progress: bool = True, scoring: int = 0) -> CalibrationData:
    """Sample ``size`` images of ``spec`` in a seeded random order and preprocess them for the model.

    ``scoring`` more images, sampled after those (so the calibration images are the same with or without
    them), are kept apart for judging quantized candidates on images calibration never saw.

    Undecodable files are skipped (and counted) and sampling continues past them, so ``size`` usable
    images are used whenever the source holds that many. Fewer is a warning; none is a :class:`DataError`.
    """
    from vit_edge.data import load_images
    from vit_edge.progress import progress_bar

    if spec is None or str(spec).strip() == "":
        raise DataError("INT8 needs calibration data", hint="pass --calib with an image folder, a .npy/.npz "
                        "of preprocessed images, or a built-in spec like digits:train")
    if size < 1:
        raise DataError(f"calibration size must be at least 1 (got {size})")
    images = load_images(spec, label_names)
    order = np.random.default_rng(seed).permutation(len(images))
    wanted = size + max(0, int(scoring))
    if images.preprocessed is not None:
        chosen = order[:size]
        arrays = check_batch(images.preprocessed[np.sort(chosen)], preprocess)
        extra = order[size:wanted]
        held = check_batch(images.preprocessed[np.sort(extra)], preprocess) if len(extra) else None
        used_indices = list(chosen) + list(extra)
    else:
        arrays, used_indices = [], []
        with progress_bar(desc="calibration images", total=min(wanted, len(images)), enabled=progress) as bar:
            for index in order:
                array = images.decode(int(index), preprocess)
                if array is None:
                    continue
                arrays.append(array)
                used_indices.append(int(index))
                bar.update(1)
                if len(arrays) == wanted:
                    break
        held = np.stack(arrays[size:]) if len(arrays) > size else None
        arrays = np.stack(arrays[:size]) if arrays else np.empty((0,))
    source = str(spec)
    if len(arrays) == 0:
        raise DataError(f"{source}: no decodable images for calibration ({len(images.skipped)} files skipped)",
                        hint="point --calib at a folder of JPEG/PNG images")
    if len(arrays) < size:
        log.warning("calibration: %s holds only %d usable images (asked for %d); using all %d%s", source,
                    len(arrays), size, len(arrays),
                    f", {len(images.skipped)} undecodable files skipped" if images.skipped else "")
    elif images.skipped:
        log.warning("calibration: skipped %d undecodable files in %s", len(images.skipped), source)
    holdout = None
    # Labelled images calibration did not touch can check the result, if their classes are the model's.
    if images.labelled and (not label_names or images.class_names == [str(n) for n in label_names]):
        skipped = set(images.skipped)
        tried = set(int(i) for i in used_indices) | {i for i, item in enumerate(images.items)
                                                     if str(item) in skipped}
        rest = [i for i in range(len(images)) if i not in tried]
        if rest:
            holdout = images.subset(rest)
            holdout.source = f"{source} (held out from calibration)"
    digests = sorted({d for d in (images.digest(int(i)) for i in used_indices) if d is not None})
    data = CalibrationData(np.ascontiguousarray(arrays, dtype=np.float32), source, size, list(images.skipped),
                           holdout, None if held is None else np.ascontiguousarray(held, dtype=np.float32),
                           digests)
    log.info("calibration: %d images from %s", len(data), source)
    return data
