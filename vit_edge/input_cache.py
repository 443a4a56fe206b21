"""Decoded inputs, kept: a second ``validate`` of the same data reads the model-sized pixels, never the files.

Why: with the reference's outputs cached (:mod:`vit_edge.reference_cache`), a repeated validate still decoded
and resized every image (photos of 2,400 px and more) before running the candidate. Each entry holds every
image's resized and centre-cropped pixels as uint8 (HxWxC: 150 kB for a 224x224 RGB image, a quarter of the
float32 input) in one ``.npy`` read through a memory map, batch by batch, so serving it keeps validate's
bounded memory; :func:`vit_edge.preprocess.normalize` turns them into exactly the arrays decoding gives
(bit for bit: the same element-wise float32 operations).

The key is a sha256 of everything that determines the pixels: the data's identity as the reference cache
takes it (every file's path, size and mtime, the pixels of images in memory; after ``--limit`` sampling),
the preprocessing, ``limit`` and the numpy and Pillow versions. A touched, added or removed file is a miss.

Bounded: an entry is made only when the data's pixels fit ``$VIT_EDGE_INPUT_CACHE_MB`` (default 2048 MB,
about 14,000 images at 224x224 RGB; 0 turns this cache off) and the disk keeps 1 GB free; above it the images
are decoded as before. The folder is kept under the same cap, least recently used entries removed first.
Entries live in ``$VIT_EDGE_CACHE_DIR/inputs`` (``off`` disables every cache), else
``~/.cache/vit-edge/inputs``; an entry is a folder written under a temporary name and renamed into place
(a reader sees no entry or a whole one); an unreadable entry is a miss. Preprocessed ``.npy``/``.npz`` data
and Ray runs are not cached (nothing to decode; workers decode their own shards).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from vit_edge.preprocess import check_batch, normalize

log = logging.getLogger("vit_edge")

KEY_VERSION = 1
LIBRARIES = ("numpy", "pillow")
DEFAULT_MAX_MB = 2048
FREE_DISK_KEPT = 1 << 30
STALE_TEMP_SECONDS = 3600  # a temporary entry this old was left by a killed process


def cache_dir() -> Path | None:
    from vit_edge.cache import cache_dir as folder

    return folder("inputs")


def max_bytes() -> int:
    """The cap (bytes) of one entry and of the whole folder, from ``$VIT_EDGE_INPUT_CACHE_MB``."""
    value = os.environ.get("VIT_EDGE_INPUT_CACHE_MB", "").strip()
    try:
        return max(0, int(float(value) * (1 << 20))) if value else DEFAULT_MAX_MB << 20
    except ValueError:
        log.warning("VIT_EDGE_INPUT_CACHE_MB=%r is not a number; using %d", value, DEFAULT_MAX_MB)
        return DEFAULT_MAX_MB << 20


def make_key(preprocess, data: dict, *, limit) -> tuple[str, dict]:
    """(sha256 hex, the JSON it hashes); ``data`` is :func:`vit_edge.reference_cache.data_identity`."""
    from vit_edge.artifact import library_versions

    parts = {"version": KEY_VERSION, "preprocess": preprocess.to_dict(), "data": data, "limit": limit,
             "libraries": library_versions(*LIBRARIES)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest(), parts


class Inputs:
    """Where validate's batches come from (it stands in for the ImageSet in :func:`streaming.run_windows`):
    the cache entry on a hit, else the images, decoded, with a complete pass recorded as a new entry."""

    def __init__(self, images, cfg, key: str, parts: dict, folder: Path, count: int):
        self.images, self.cfg, self.key, self.parts, self.folder, self.count = images, cfg, key, parts, folder, count
        self.entry = folder / key
        self.pixels = self.kept = None
        self.stored = False
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            meta = json.loads((self.entry / "meta.json").read_text())
            pixels = np.load(self.entry / "pixels.npy", mmap_mode="r")
            kept = np.asarray(meta["kept"], dtype=bool)
            if meta["key"] == key and pixels.shape == self.shape and pixels.dtype == np.uint8 and len(kept) == count:
                self.pixels, self.kept = pixels, kept
                os.utime(self.entry)  # recently used
        if self.entry.exists() and self.pixels is None:
            log.warning("input cache: ignoring unreadable %s", self.entry)

    @property
    def shape(self) -> tuple:
        return (self.count, *self.cfg.input_size, self.cfg.channels)

    @property
    def hit(self) -> bool:
        return self.pixels is not None

    def info(self) -> dict:
        """What the report says of its inputs: ``source`` cache or decoded, and the entry's key."""
        return {"source": "cache" if self.hit else "decoded",
                **({"cache_key": self.key[:16]} if self.hit or self.stored else {})}

    def indexed_batches(self, cfg, batch_size: int = 32, limit=None, *, start: int = 0, stop=None):
        """As :meth:`vit_edge.data.ImageSet.indexed_batches`: the same windows, batches and indices."""
        if self.hit:
            yield from self._served(cfg, batch_size, start, self.count if stop is None else min(stop, self.count))
        else:
            yield from self._recorded(cfg, batch_size, limit, start, stop)

    def _served(self, cfg, batch_size, start, stop):
        for first in range(start, stop, batch_size):
            window = np.arange(first, min(stop, first + batch_size))
            kept = window[self.kept[window]]
            self.images.skipped += [str(self.images.items[i]) for i in window[~self.kept[window]]]
            if len(kept):
                yield check_batch(normalize(self.pixels[kept], cfg), cfg), self.images.labels_of(kept), kept

    def _recorded(self, cfg, batch_size, limit, start, stop):
        whole = start == 0 and stop in (None, self.count) and not self.stored
        writer = _Writer.begin(self) if whole else None
        try:
            for pixels, labels, idx in self.images.indexed_batches(cfg, batch_size, limit, start=start, stop=stop,
                                                                   as_pixels=True):
                if writer is not None and not writer.write(pixels, idx):
                    writer = None
                yield check_batch(normalize(pixels, cfg), cfg), labels, idx
            if writer is not None:
                self.stored, writer = writer.finish(self), None
                if self.stored:
                    evict(self.folder, max_bytes(), keep=self.entry)
        finally:  # an abandoned pass (an error, a stopped consumer) leaves no temporary folder behind
            if writer is not None:
                writer.abandon()

    def close(self) -> None:
        self.pixels = None  # the memory map closes with its last reference


class _Writer:
    """A new entry, written row by row (plain writes: a full disk is an error, never a crash) into a
    temporary folder; ``finish`` renames it into place."""

    def __init__(self, tmp: Path, owner: Inputs):
        self.tmp, self.folder, self.shape = tmp, owner.folder, owner.shape
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.kept = np.zeros(owner.count, dtype=bool)
        self.rows = 0
        self.file = open(tmp / "pixels.npy", "wb")
        np.lib.format.write_array_header_1_0(self.file, {"descr": "|u1", "fortran_order": False,
                                                         "shape": self.shape})

    @classmethod
    def begin(cls, owner: Inputs):
        """A writer, or None when the pixels would leave the disk short or the folder cannot be written."""
        size = int(np.prod(owner.shape))
        tmp = None
        try:
            owner.folder.mkdir(parents=True, exist_ok=True)
            if shutil.disk_usage(owner.folder).free < size + FREE_DISK_KEPT:
                log.info("input cache: %d MB would leave under 1 GB free in %s; not cached", size >> 20,
                         owner.folder)
                return None
            tmp = Path(tempfile.mkdtemp(dir=owner.folder, prefix=f".{owner.key[:16]}.", suffix=".tmp"))
            return cls(tmp, owner)
        except OSError as exc:
            return cls._failed(exc, owner.folder, tmp)

    @staticmethod
    def _failed(exc, folder, tmp) -> None:
        log.warning("input cache: cannot write in %s (%s); continuing without", folder, exc)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    def _pad(self, upto: int) -> None:
        """Zero rows for items that did not decode, up to row ``upto``."""
        if upto > self.rows:
            self.file.write(bytes(self.row_bytes * (upto - self.rows)))
            self.rows = upto

    def write(self, pixels: np.ndarray, idx) -> bool:
        try:
            for row, i in zip(pixels, idx):  # indices rise: the rows are written in order
                self._pad(int(i))
                self.file.write(np.ascontiguousarray(row).tobytes())
                self.rows += 1
            self.kept[idx] = True
            return True
        except OSError as exc:
            self.abandon(exc)
            return False

    def finish(self, owner: Inputs) -> bool:
        try:
            self._pad(self.shape[0])
            self.file.close()
            meta = {"key": owner.key, "kept": self.kept.tolist(), "parts": owner.parts}
            (self.tmp / "meta.json").write_text(json.dumps(meta, sort_keys=True, default=str))
            try:
                os.rename(self.tmp, owner.entry)
            except OSError:  # another validate stored the same entry first: keep theirs
                if not (owner.entry / "meta.json").is_file():
                    raise
            return True
        except OSError as exc:
            self.abandon(exc)
            return False
        finally:
            self.abandon()

    def abandon(self, exc=None) -> None:
        """Close and remove the temporary folder (after a rename there is none)."""
        with contextlib.suppress(OSError):
            self.file.close()
        if exc is not None:
            log.warning("input cache: cannot write in %s (%s); continuing without", self.folder, exc)
        shutil.rmtree(self.tmp, ignore_errors=True)


def open_inputs(images, cfg, data: dict, *, limit, count: int) -> Inputs | None:
    """The inputs of ``count`` items of ``images`` (a hit, or a recorder), or None when this cache is off,
    the data holds preprocessed arrays, or its pixels are over the cap (decoded as before)."""
    folder = cache_dir()
    cap = max_bytes()
    if folder is None or cap == 0 or images.preprocessed is not None or cfg.channels not in (1, 3) or not count:
        return None
    size = count * cfg.input_size[0] * cfg.input_size[1] * cfg.channels
    if size > cap:
        log.info("input cache: %d images are %d MB of pixels, over the %d MB cap (VIT_EDGE_INPUT_CACHE_MB); "
                 "decoding them", count, size >> 20, cap >> 20)
        return None
    key, parts = make_key(cfg, data, limit=limit)
    return Inputs(images, cfg, key, parts, folder, count)


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file())


def evict(folder: Path, cap: int, keep: Path | None = None) -> None:
    """Remove the least recently used entries until the folder holds at most ``cap`` bytes (``keep`` last),
    and temporary entries a killed process left."""
    entries = []
    with contextlib.suppress(OSError):
        for path in folder.iterdir():
            with contextlib.suppress(OSError):
                if path.name.startswith("."):
                    if time.time() - path.stat().st_mtime > STALE_TEMP_SECONDS:
                        shutil.rmtree(path, ignore_errors=True)
                elif path.is_dir():
                    entries.append((path == keep, path.stat().st_mtime, path, _size(path)))
    total = sum(e[3] for e in entries)
    for _keep, _mtime, path, size in sorted(entries, key=lambda e: e[:2]):
        if total <= cap:
            break
        shutil.rmtree(path, ignore_errors=True)
        total -= size
