"""Image sets for validation and calibration: folders of images, built-in specs, preprocessed arrays.

``load_images(spec)`` understands:

- a folder of images (searched recursively). Class subfolders label the images: their names are matched
  to the model's label names when it has them, otherwise sorted folder order gives the class index.
  A flat folder is unlabelled.
- ``digits:train`` / ``digits:test`` / ``digits:all``: scikit-learn's bundled handwritten digits (the demo
  model's data), split 80/20 stratified with a fixed seed.
- a ``.npy`` / ``.npz`` file with an already preprocessed NCHW float batch (``.npz``: ``images`` and
  optionally ``labels``).

Files that do not decode are skipped and counted, never a crash.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vit_edge.errors import DataError
from vit_edge.preprocess import PreprocessConfig, check_batch, image_to_array, open_image

log = logging.getLogger("vit_edge")

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2


@dataclass
class ImageSet:
    """Images (paths or PIL images) with optional integer labels; decoded lazily batch by batch."""

    items: list
    labels: list | None
    class_names: list | None
    source: str
    preprocessed: np.ndarray | None = None  # for .npy/.npz input: already the model's NCHW batch
    skipped: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.preprocessed) if self.preprocessed is not None else len(self.items)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def subset(self, indices) -> "ImageSet":
        indices = list(indices)
        pre = self.preprocessed[indices] if self.preprocessed is not None else None
        items = [self.items[i] for i in indices] if self.preprocessed is None else []
        labels = [self.labels[i] for i in indices] if self.labels is not None else None
        return ImageSet(items, labels, self.class_names, self.source, pre)

    def decode(self, index: int, cfg: PreprocessConfig):
        """Item ``index`` as the model's CHW float32 array, or None (counted in ``skipped``) when the file
        does not decode."""
        item = self.items[index]
        try:
            image = open_image(item) if isinstance(item, (str, Path)) else item
        except DataError:
            self.skipped.append(str(item))
            return None
        return image_to_array(image, cfg)

    def item_id(self, index: int) -> str:
        """What names item ``index`` in a report: its path, else ``SOURCE[index]`` (a built-in set's image, a
        row of a preprocessed array)."""
        if self.preprocessed is None and isinstance(self.items[index], (str, Path)):
            return str(self.items[index])
        return f"{self.source}[{index}]"

    def indexed_batches(self, cfg: PreprocessConfig, batch_size: int = 32, limit: int | None = None, *,
                        start: int = 0, stop: int | None = None):
        """Yield ``(nchw_float32, labels_or_None, indices)``: batch k holds the decodable items of the index
        window ``[start + k * batch_size, start + (k + 1) * batch_size)`` (fewer when a file does not decode;
        none when none does), so the same window always makes the same batch: a shard that starts at a
        multiple of ``batch_size`` sees exactly the batches a single pass sees. ``indices`` are the items'
        indices (:meth:`item_id` names them)."""
        n = len(self) if limit is None else min(limit, len(self))
        stop = n if stop is None else min(stop, n)
        for first in range(start, stop, batch_size):
            window = range(first, min(stop, first + batch_size))
            if self.preprocessed is not None:
                arrays, kept = self.preprocessed[window.start:window.stop], list(window)
            else:
                decoded = [(i, self.decode(i, cfg)) for i in window]
                kept = [i for i, array in decoded if array is not None]
                if not kept:
                    continue
                arrays = np.stack([array for _i, array in decoded if array is not None])
            labels = None if self.labels is None else np.asarray([self.labels[i] for i in kept])
            yield check_batch(arrays, cfg), labels, np.asarray(kept, dtype=np.int64)

    def batches(self, cfg: PreprocessConfig, batch_size: int = 32, limit: int | None = None):
        """Yield ``(nchw_float32, labels_or_None)``; undecodable files are skipped and recorded."""
        n = len(self) if limit is None else min(limit, len(self))
        if self.preprocessed is not None:
            for start in range(0, n, batch_size):
                labels = None if self.labels is None else np.asarray(self.labels[start:start + batch_size][: n - start])
                yield check_batch(self.preprocessed[start:min(n, start + batch_size)], cfg), labels
            return
        arrays, labels = [], []
        for i in range(n):
            array = self.decode(i, cfg)
            if array is None:
                continue
            arrays.append(array)
            labels.append(None if self.labels is None else self.labels[i])
            if len(arrays) == batch_size:
                yield np.stack(arrays), (None if self.labels is None else np.asarray(labels))
                arrays, labels = [], []
        if arrays:
            yield np.stack(arrays), (None if self.labels is None else np.asarray(labels))


def _digits(split: str) -> ImageSet:
    from PIL import Image

    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise DataError("digits data needs scikit-learn", hint="pip install 'vit-edge[export]'") from None
    digits = load_digits()
    idx = np.arange(len(digits.target))
    if split == "all":
        chosen = idx
    else:
        train, test = train_test_split(idx, test_size=DIGITS_TEST_FRACTION, stratify=digits.target,
                                       random_state=DIGITS_SPLIT_SEED)
        chosen = {"train": train, "test": test}[split]
    # The 8x8 images hold 0..16 ink levels; scale them to ordinary 8-bit grayscale images.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    items = [Image.fromarray(pixels[i]) for i in chosen]
    return ImageSet(items, [int(digits.target[i]) for i in chosen], [str(d) for d in range(10)], f"digits:{split}")


def _match_classes(folders: list[str], label_names: list | None) -> tuple[dict, list]:
    """Folder name -> class index, and the class names those indices refer to.

    By the model's label names when every folder matches one, else sorted folder order."""
    if label_names:
        lookup = {}
        for i, name in enumerate(label_names):
            name = str(name).strip().lower()
            lookup.setdefault(name, i)
            lookup.setdefault(name.split(",")[0].strip(), i)
        mapped = {f: lookup.get(f.strip().lower()) for f in folders}
        if all(v is not None for v in mapped.values()):
            return mapped, [str(n) for n in label_names]
        missing = [f for f, v in mapped.items() if v is None]
        log.warning("class folders %s do not match the model's labels; using sorted folder order",
                    ", ".join(missing[:3]))
    ordered = sorted(folders)
    return {f: i for i, f in enumerate(ordered)}, ordered


def _folder(path: Path, label_names) -> ImageSet:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise DataError(f"{path}: the folder holds no files", hint="point it at a folder of images")
    top_level = [p for p in files if p.parent == path]
    in_subdirs = [p for p in files if p.parent != path]
    if in_subdirs and not top_level:
        classes = sorted({p.relative_to(path).parts[0] for p in in_subdirs})
        mapping, names = _match_classes(classes, label_names)
        labels = [mapping[p.relative_to(path).parts[0]] for p in files]
        return ImageSet(list(files), labels, names, str(path))
    return ImageSet(list(files), None, None, str(path))


def _array_file(path: Path) -> ImageSet:
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable array file ({exc})") from None
    labels = None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.files)
        if not keys:
            raise DataError(f"{path}: the .npz holds no arrays")
        images = data["images"] if "images" in keys else data[keys[0]]
        if "labels" in keys:
            labels = [int(v) for v in data["labels"]]
    else:
        images = data
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{path}: expected a preprocessed NCHW float array", got=f"{images.dtype}{images.shape}")
    if len(images) == 0:
        raise DataError(f"{path}: the array holds no images")
    return ImageSet([], labels, None, str(path), preprocessed=images.astype(np.float32))


def load_images(spec, label_names=None) -> ImageSet:
    """Resolve a data spec (see module docstring) to an :class:`ImageSet`; an ImageSet passes through."""
    if isinstance(spec, ImageSet):
        return spec
    text = str(spec)
    if text.startswith("digits:"):
        split = text.split(":", 1)[1]
        if split not in ("train", "test", "all"):
            raise DataError(f"unknown digits split {split!r}", hint="use digits:train, digits:test or digits:all")
        return _digits(split)
    path = Path(text)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder", hint="pass an image folder, a .npy/.npz, or digits:test")
    if path.is_dir():
        return _folder(path, label_names)
    if path.suffix.lower() in (".npy", ".npz"):
        return _array_file(path)
    raise DataError(f"{path}: expected a folder of images, a .npy/.npz file or a built-in spec like digits:test")


def write_image_folder(image_set: ImageSet, out: Path) -> int:
    """Write an image set as PNGs in class subfolders (how ``vit-edge data`` exports digits:test)."""
    out.mkdir(parents=True, exist_ok=True)
    for i, item in enumerate(image_set.items):
        sub = out / (image_set.class_names[image_set.labels[i]] if image_set.labelled else "")
        sub.mkdir(parents=True, exist_ok=True)
        im = open_image(item) if isinstance(item, (str, Path)) else item
        im.save(sub / f"{i:05d}.png")
    return len(image_set.items)


def write_data(spec, out, *, force: bool = False) -> int:
    """``vit-edge data SPEC --out DIR``: write a data spec as an image folder, all or nothing."""
    from vit_edge.artifact import atomic_output_dir

    images = load_images(spec)
    with atomic_output_dir(out, force=force) as tmp:
        return write_image_folder(images, Path(tmp))
