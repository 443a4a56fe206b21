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

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vit_edge.errors import DataError
from vit_edge.preprocess import PreprocessConfig, check_batch, image_pixels, normalize, open_image

log = logging.getLogger("vit_edge")

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_FRACTION = 0.2
# Hex digits kept of an image's sha256 (64 bits): a chance collision among 10^4 x 10^3 pairs is ~1e-12, and
# 300 calibration digests stay 6 kB of manifest.
DIGEST_CHARS = 16


@dataclass
class ImageSet:
    """Images (paths or PIL images) with optional integer labels; decoded lazily batch by batch."""

    items: list
    labels: list | None
    class_names: list | None
    source: str
    preprocessed: np.ndarray | None = None  # for .npy/.npz input: already the model's NCHW batch
    skipped: list = field(default_factory=list)
    origin: list | None = None  # a subset's items' indices in the set it was drawn from (how reports name them)
    selection: str | None = None  # how a limited sample was drawn: "200 of 360 images, stratified, seed 0"

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
        origin = [self.origin[i] if self.origin is not None else i for i in indices]
        return ImageSet(items, labels, self.class_names, self.source, pre, origin=origin)

    def sample(self, limit: int | None, seed: int = 0) -> "ImageSet":
        """At most ``limit`` items: the set itself when it holds no more, else a seeded sample in data order,
        stratified by class when labelled (each class in proportion, largest remainders rounded up), so a
        limit never tests the first classes of a folder only. ``selection`` says how it was drawn."""
        n = len(self)
        if limit is None or limit >= n:
            return self
        rng = np.random.default_rng(seed)
        if self.labels is not None:
            chosen, how = stratified_indices(self.labels, int(limit), rng), "stratified"
        else:
            chosen, how = np.sort(rng.permutation(n)[:limit]), "random"
        sample = self.subset(int(i) for i in chosen)
        sample.selection = f"{limit} of {n} images, {how}, seed {seed}"
        return sample

    def decode(self, index: int, cfg: PreprocessConfig):
        """Item ``index`` as the model's CHW float32 array, or None (counted in ``skipped``) when the file
        does not decode."""
        pixels = self.pixels(index, cfg)
        return None if pixels is None else normalize(pixels, cfg)

    def pixels(self, index: int, cfg: PreprocessConfig):
        """Item ``index`` resized and cropped, HxWxC uint8 (before normalisation), or None (counted in
        ``skipped``) when the file does not decode."""
        item = self.items[index]
        try:
            image = open_image(item) if isinstance(item, (str, Path)) else item
        except DataError:
            self.skipped.append(str(item))
            return None
        return image_pixels(image, cfg)

    def digest(self, index: int) -> str | None:
        """A content hash of item ``index``: the file's bytes, an in-memory image's pixels, an array's row. The
        same image under another name or in another folder hashes the same (what finds calibration images
        among validation images); None when the file cannot be read."""
        h = hashlib.sha256()
        if self.preprocessed is not None:
            h.update(np.ascontiguousarray(self.preprocessed[index], dtype=np.float32).tobytes())
        elif isinstance(self.items[index], (str, Path)):
            try:
                with open(self.items[index], "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            except OSError:
                return None
        else:
            image = self.items[index]
            h.update(f"{image.mode}{image.size}".encode())
            h.update(image.tobytes())
        return h.hexdigest()[:DIGEST_CHARS]

    def item_id(self, index: int) -> str:
        """What names item ``index`` in a report: its path, else ``SOURCE[index]`` (a built-in set's image, a
        row of a preprocessed array)."""
        if self.preprocessed is None and isinstance(self.items[index], (str, Path)):
            return str(self.items[index])
        return f"{self.source}[{self.origin[index] if self.origin is not None else index}]"

    def indexed_batches(self, cfg: PreprocessConfig, batch_size: int = 32, limit: int | None = None, *,
                        start: int = 0, stop: int | None = None, as_pixels: bool = False):
        """Yield ``(nchw_float32, labels_or_None, indices)``: batch k holds the decodable items of the index
        window ``[start + k * batch_size, start + (k + 1) * batch_size)`` (fewer when a file does not decode;
        none when none does), so the same window always makes the same batch: a shard that starts at a
        multiple of ``batch_size`` sees exactly the batches a single pass sees. ``indices`` are the items'
        indices (:meth:`item_id` names them). ``as_pixels`` (image items only): NHWC uint8 batches, not yet
        normalised (:func:`~vit_edge.preprocess.normalize` makes the float batch bit for bit)."""
        n = len(self) if limit is None else min(limit, len(self))
        stop = n if stop is None else min(stop, n)
        for first in range(start, stop, batch_size):
            window = range(first, min(stop, first + batch_size))
            if self.preprocessed is not None:
                arrays, kept = self.preprocessed[window.start:window.stop], list(window)
            else:
                decoded = [(i, self.pixels(i, cfg)) for i in window]
                kept = [i for i, array in decoded if array is not None]
                if not kept:
                    continue
                arrays = np.stack([array for _i, array in decoded if array is not None])
                if as_pixels:
                    yield arrays, self.labels_of(kept), np.asarray(kept, dtype=np.int64)
                    continue
                arrays = normalize(arrays, cfg)
            yield check_batch(arrays, cfg), self.labels_of(kept), np.asarray(kept, dtype=np.int64)

    def labels_of(self, indices):
        """The labels of items ``indices`` as an array, or None when the set is unlabelled."""
        return None if self.labels is None else np.asarray([self.labels[i] for i in indices])

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


def stratified_indices(labels, k: int, rng) -> np.ndarray:
    """``k`` indices drawn per class in proportion to its count (Hamilton's largest-remainder rounding, ties
    to the larger class, then the lower label), at random within each class; sorted."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (k / len(labels))
    quota = np.floor(exact).astype(int)
    order = sorted(range(len(classes)), key=lambda c: (-(exact[c] - quota[c]), -counts[c], c))
    for c in order[: k - int(quota.sum())]:
        quota[c] += 1
    chosen = [rng.permutation(np.flatnonzero(labels == cls))[:q] for cls, q in zip(classes, quota)]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


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


# (folder, its class folders, the labels) already warned about: convert reads the same folder for calibration,
# parity and validation, and one warning says it all.
_MISMATCH_WARNED: set = set()


def _match_classes(folders: list[str], label_names: list | None, where: str = "") -> tuple[dict, list]:
    """Folder name -> class index, and the class names those indices refer to.

    By the model's label names when every folder matches one, else sorted folder order (warned once)."""
    if label_names:
        lookup = {}
        for i, name in enumerate(label_names):
            name = str(name).strip().lower()
            lookup.setdefault(name, i)
            lookup.setdefault(name.split(",")[0].strip(), i)
        mapped = {f: lookup.get(f.strip().lower()) for f in folders}
        if all(v is not None for v in mapped.values()):
            return mapped, [str(n) for n in label_names]
        missing = sorted(f for f, v in mapped.items() if v is None)
        key = (where, tuple(sorted(folders)), tuple(str(n) for n in label_names))
        if key not in _MISMATCH_WARNED:
            _MISMATCH_WARNED.add(key)
            log.warning("%d of the %d class folders of %s (%s) match none of the model's %d labels (%s): are these "
                        "images of the model's classes? Labels come from sorted folder order, so accuracy and INT8 "
                        "calibration on them mean little otherwise", len(missing), len(folders), where or "the data",
                        ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else ""), len(label_names),
                        ", ".join(str(n) for n in label_names[:3]) + (", ..." if len(label_names) > 3 else ""))
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
        mapping, names = _match_classes(classes, label_names, str(path))
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
            raw = data["labels"]
            if raw.ndim != 1 or not (np.issubdtype(raw.dtype, np.integer) or np.issubdtype(raw.dtype, np.bool_)):
                raise DataError(f"{path}: 'labels' must be a 1-D array of class indices",
                                got=f"{raw.dtype}{raw.shape}")
            labels = [int(v) for v in raw]
    else:
        images = data
    if images.ndim != 4 or not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"{path}: expected a preprocessed NCHW float array", got=f"{images.dtype}{images.shape}")
    if len(images) == 0:
        raise DataError(f"{path}: the array holds no images")
    if labels is not None and len(labels) != len(images):  # longer ones were silently cut, shorter ones crashed
        raise DataError(f"{path}: 'labels' and 'images' differ in length", expected=f"{len(images)} labels",
                        got=len(labels), hint="save one label per image")
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


def image_suffixes() -> set:
    """The file suffixes Pillow can open (lower case)."""
    from PIL import Image

    Image.init()
    return {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}


def image_files(paths) -> list:
    """``vit-edge predict``'s IMAGE arguments as ``(path, named)`` pairs: each file as given (``named``: an
    error if it does not decode), each folder as its image files (by suffix, searched recursively, hidden ones
    left out, sorted; ``named`` False: skipped and counted if one does not decode)."""
    suffixes, found = image_suffixes(), []
    for text in paths:
        path = Path(text)
        if not path.is_dir():
            found.append((path, True))  # missing, FIFOs, ...: open_image says what is wrong with it
            continue
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in suffixes and p.is_file() and not any(
            part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(f"{path}: the folder holds no image files",
                            hint="pass image files or a folder of them (.jpg, .png, .webp, .tiff, ...)")
        found += [(p, False) for p in files]
    return found


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
