"""The model's own preprocessing, in numpy and Pillow only (no torch), so artifacts run without torch.

One :class:`PreprocessConfig` travels with every artifact (ONNX metadata and manifest). Both sides of a
parity check use it, so a preprocessing mismatch can never masquerade as a quantization regression.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from vit_edge.errors import DataError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
# A decompression bomb guard well above any real photo (a 12k x 12k image), far below what exhausts RAM.
MAX_IMAGE_PIXELS = 150_000_000
# Beyond this a resize would build an intermediate the centre crop mostly throws away (a long thin image resized
# on its short side): only the crop is resampled then (resize_and_crop). 16.7 Mpx is 50 MB of RGB.
MAX_RESIZED_PIXELS = 1 << 24
# A 100:1 strip is already no photo a classifier was trained on; past it the centre crop shows a sliver
# stretched out of all proportion, so such files are refused rather than classified.
MAX_ASPECT_RATIO = 100
MAX_INPUT_SIDE = 8192  # what --input-size accepts; a manifest asking for more is refused, not allocated


@dataclass(frozen=True)
class PreprocessConfig:
    """How raw images become the model's NCHW float32 input.

    ``crop_pct`` follows timm: the shorter side is resized to ``input/crop_pct`` and the centre
    ``input_size`` is cropped. ``resize_mode="squash"`` resizes straight to the input size without
    keeping the aspect ratio (Hugging Face processors without a centre crop do this).
    """

    input_size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN  # one value per input channel
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    resize_mode: str = "shorter"  # "shorter" (resize shorter side, centre crop) or "squash"
    channels: int = 3  # images become L for 1, RGB for 3; other counts take preprocessed NCHW arrays only
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        h, w = self.input_size
        if h < 1 or w < 1:
            raise InputError("input size must be positive", got=self.input_size)
        if h > MAX_INPUT_SIDE or w > MAX_INPUT_SIDE:  # 100000x100000 would be a 120 GB batch of one
            raise InputError(f"input size must be at most {MAX_INPUT_SIDE} a side", got=self.input_size)
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"unknown interpolation {self.interpolation!r}", expected="|".join(INTERPOLATIONS))
        if not 0.05 <= self.crop_pct <= 1.0:
            raise InputError("crop pct must be in (0.05, 1.0]", got=self.crop_pct)
        if any(s <= 0 for s in self.std):
            raise InputError("std values must be positive", got=self.std)
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise InputError("channels must be a positive integer", got=self.channels)
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise InputError("mean and std need one value per input channel", expected=f"{self.channels} values each",
                             got=f"{len(self.mean)} and {len(self.std)}")
        if self.resize_mode not in ("shorter", "squash"):
            raise InputError("unknown resize mode", expected="shorter|squash", got=self.resize_mode)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d.pop("notes")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        d = dict(d)
        d.pop("notes", None)
        d["input_size"] = tuple(int(x) for x in d["input_size"])
        d["mean"] = tuple(float(x) for x in d["mean"])
        d["std"] = tuple(float(x) for x in d["std"])
        return cls(**d)

    def replace(self, **changes) -> "PreprocessConfig":
        d = asdict(self)
        d.update({k: v for k, v in changes.items() if v is not None})
        return PreprocessConfig(**d)


def _pil():
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    return Image


def open_image(path) -> "object":
    """Decode an image file to RGB. Grayscale, palette, RGBA/LA, CMYK and 16-bit images are converted."""
    Image = _pil()
    path = Path(path)
    try:
        with _open_regular(path) as f:
            with warnings.catch_warnings():
                # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we refuse before decoding anything.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(f)
            with im:
                check_image_size(im.size, path)
                im.load()
                return to_rgb(im)
    except Image.DecompressionBombError:
        raise DataError(f"{path}: image too large", expected=f"at most {MAX_IMAGE_PIXELS:,} pixels",
                        hint="downscale it; this limit guards against decompression bombs") from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file", hint="check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a directory, not an image", hint="pass the image files inside it") from None
    except (OSError, ValueError, SyntaxError) as exc:
        # PIL raises UnidentifiedImageError (an OSError) for non-images and OSError for truncated files.
        raise DataError(f"{path}: not a decodable image ({type(exc).__name__})") from None


def _open_regular(path: Path):
    """``path`` opened for reading when it is a regular file. Opened non-blocking and checked on the descriptor
    (no race with a rename): a FIFO named as an image would block the read forever, a device never end."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
                else "not a regular file"
            raise DataError(f"{path}: {kind}, not an image file; refused", hint="pass a regular image file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_image_size(size, name="image") -> None:
    """Refuse decompression bombs (by the decoded size, from the header) and absurd aspect ratios."""
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise DataError(f"{name}: image too large", expected=f"at most {MAX_IMAGE_PIXELS:,} pixels",
                        got=f"{w}x{h} = {w * h:,} pixels",
                        hint="downscale it; this limit guards against decompression bombs")
    if w >= 1 and h >= 1 and max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise DataError(f"{name}: aspect ratio too extreme for a centre crop", expected=f"at most {MAX_ASPECT_RATIO}:1",
                        got=f"{w}x{h}", hint="crop it to the region to classify")


def to_rgb(im):
    """Convert any PIL mode to 8-bit RGB; transparency is composited on black like most decoders show it."""
    Image = _pil()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        with np.errstate(invalid="ignore"):  # NaN pixels of float images are replaced just below
            arr = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16"):
            arr = arr / 257.0  # 16-bit full range to 8-bit
        else:
            finite = arr[np.isfinite(arr)]
            hi = finite.max() if finite.size else 0.0
            arr = np.nan_to_num(arr, nan=0.0, posinf=max(hi, 255.0), neginf=0.0)  # float images may hold NaN/Inf
            if hi > 255:
                arr = arr * (255.0 / hi)
            elif im.mode == "F" and 0 < hi <= 1.0 and finite.min() >= 0:
                # float TIFFs (scientific cameras, HDR tools) store [0, 1]: on the 0..255 scale they were black
                arr = np.clip(arr, 0.0, 1.0) * 255.0
        im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if im.mode in ("La", "RGBa"):  # premultiplied alpha: Pillow converts these only to their plain-alpha mode
        im = im.convert(im.mode[:-1] + "A")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (0, 0, 0, 255))
        im = Image.alpha_composite(background, im)
    if im.mode != "RGB":
        try:
            im = im.convert("RGB")
        except ValueError as exc:
            raise InputError(f"cannot convert a {im.mode} image to RGB ({exc})",
                             hint="convert it to RGB before passing it") from None
    return im


def fit_channels(values, channels: int):
    """``values`` (a mean or std) for a model with ``channels`` inputs: as given when the counts match, one
    value repeated for every channel (as timm reads a one-value mean), and a 3-value RGB statistic averaged
    for a 1-channel model (what it is for the image's gray conversion, roughly); None when nothing fits."""
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if channels == 1 and len(values) == 3:
        return (round(sum(values) / 3, 4),)
    return None


def default_statistics(channels: int) -> dict:
    """``mean``/``std`` for a model that declares none: ImageNet's (averaged for one channel); for other
    channel counts no image statistic applies, so none is applied (such models take preprocessed arrays)."""
    mean, std = fit_channels(IMAGENET_MEAN, channels), fit_channels(IMAGENET_STD, channels)
    if mean is None:
        mean, std = (0.0,) * channels, (1.0,) * channels
    return {"channels": int(channels), "mean": mean, "std": std}


def to_channels(im, channels: int):
    """A PIL image in the mode a model with ``channels`` inputs reads: L for 1, RGB for 3."""
    if channels == 3:
        return to_rgb(im)
    if channels == 1:
        return im if im.mode == "L" else to_rgb(im).convert("L")
    raise InputError(f"a model with {channels} input channels cannot read image files (they decode to 1 or 3)",
                     hint="pass preprocessed NCHW arrays (.npy/.npz) instead")


def _resample(name: str):
    Image = _pil()
    return {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC,
            "nearest": Image.Resampling.NEAREST}[name]


def resize_plan(size, cfg: PreprocessConfig) -> tuple:
    """Where the model's input comes from in an image of ``size`` (w, h): the size the whole image is resized
    to (timm semantics) and the ``box`` of the image, in its own pixels, that the centre crop covers."""
    h, w = cfg.input_size
    iw, ih = size
    if cfg.resize_mode == "squash":
        new_w, new_h = math.floor(w / cfg.crop_pct), math.floor(h / cfg.crop_pct)
    else:
        # timm semantics: the shorter side becomes floor(size / crop_pct), aspect ratio kept.
        target = math.floor(min(h, w) / cfg.crop_pct)
        if iw <= ih:
            new_w, new_h = target, max(1, round(ih * target / iw))
        else:
            new_w, new_h = max(1, round(iw * target / ih)), target
        new_w, new_h = max(new_w, w), max(new_h, h)
    left, top = int(round((new_w - w) / 2.0)), int(round((new_h - h) / 2.0))
    sx, sy = iw / new_w, ih / new_h
    return (new_w, new_h), (left * sx, top * sy, (left + w) * sx, (top + h) * sy)


def resize_and_crop(im, cfg: PreprocessConfig):
    """Resize (aspect kept, or squashed) and centre-crop to ``cfg.input_size``.

    When the resized image would exceed MAX_RESIZED_PIXELS only the cropped part is resampled (Pillow's
    ``resize(box=...)``: the same sample positions and filter support as resizing the whole image and then
    cropping, up to float32 rounding of the box), so the work is bounded by the input size and the decoded
    image, never by the resized one: resizing the short side of a 10000x1 image to 256 makes a 2.56-gigapixel
    intermediate (2.7 GB measured) of which the crop keeps 50k pixels. Below the budget (every ordinary
    photo) the whole image is resized and cropped, exactly as timm does."""
    h, w = cfg.input_size
    resized, box = resize_plan(im.size, cfg)
    resample = _resample(cfg.interpolation)
    if resized[0] * resized[1] > MAX_RESIZED_PIXELS:
        return im.resize((w, h), resample, box=box)
    if cfg.resize_mode == "squash" or resized != im.size:
        im = im.resize(resized, resample)
    left, top = int(round((resized[0] - w) / 2.0)), int(round((resized[1] - h) / 2.0))
    return im if im.size == (w, h) else im.crop((left, top, left + w, top + h))


def image_to_array(im, cfg: PreprocessConfig) -> np.ndarray:
    """One PIL image to a CHW float32 array, normalised with the model's mean and std."""
    return normalize(image_pixels(im, cfg), cfg)


def image_pixels(im, cfg: PreprocessConfig) -> np.ndarray:
    """One PIL image resized and cropped to the model's input: HxWxC uint8 (C = ``cfg.channels``), the
    compact form :func:`normalize` turns into the model's input (what the validate input cache keeps)."""
    im = resize_and_crop(to_channels(im, cfg.channels), cfg)
    return np.asarray(im, dtype=np.uint8).reshape(im.size[1], im.size[0], -1)  # L images are HxW


def normalize(pixels: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """HxWxC (or NxHxWxC) uint8 pixels to CHW (NCHW) float32 scaled to [0, 1] and normalised with the model's
    mean and std. Element by element, so a batch gives bit for bit the arrays its images give one by one."""
    arr = pixels.astype(np.float32) / 255.0
    arr = (arr - np.asarray(cfg.mean, np.float32)) / np.asarray(cfg.std, np.float32)
    return np.ascontiguousarray(np.moveaxis(arr, -1, -3))


def _array_image(arr: np.ndarray):
    """An HWC (or HW) uint8/uint16 array, as users hand us from cv2 or numpy, to a PIL image."""
    Image = _pil()
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or 0 in arr.shape:
        raise InputError("an image array must be HxW or HxWxC with C in 1, 3, 4", got=tuple(arr.shape))
    if arr.dtype == np.uint16:
        arr = (arr // 257).astype(np.uint8)
    if arr.dtype != np.uint8:
        raise InputError("an HWC image array must be uint8 or uint16 (pass float input as an NCHW batch)",
                         got=str(arr.dtype))
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0])
    return Image.fromarray(arr)  # uint8 HxWx3 is RGB, HxWx4 RGBA


def as_batch(inputs, cfg: PreprocessConfig) -> np.ndarray:
    """Turn what a user passes to ``predict`` into the model's NCHW float32 batch.

    Accepts an image path, a PIL image, an HWC uint8 array, an NCHW float batch (already preprocessed,
    used as is), or a list of the first three.
    """
    if isinstance(inputs, np.ndarray) and inputs.ndim == 4:
        return check_batch(inputs, cfg)
    if isinstance(inputs, (str, Path, np.ndarray)) or hasattr(inputs, "mode"):
        inputs = [inputs]
    try:
        items = list(inputs)
    except TypeError:
        raise InputError("cannot read images from this input", expected="path, PIL image, HWC array, "
                         "NCHW float batch, or a list of them", got=type(inputs).__name__) from None
    if not items:
        raise InputError("empty input: nothing to predict", expected="at least one image", got="0")
    arrays = []
    for item in items:
        if isinstance(item, (str, Path)):
            im = open_image(item)
        elif isinstance(item, np.ndarray):
            im = _array_image(item)
        elif hasattr(item, "mode") and hasattr(item, "size"):
            im = item
        else:
            raise InputError("unsupported input item", expected="path, PIL image or HWC uint8 array",
                             got=type(item).__name__)
        arrays.append(image_to_array(im, cfg))
    return np.stack(arrays)


def check_batch(batch: np.ndarray, cfg: PreprocessConfig | None = None, dynamic_size: bool = False) -> np.ndarray:
    """Validate an already preprocessed NCHW batch; returns it as contiguous float32."""
    if batch.ndim != 4:
        raise InputError("a preprocessed batch must be NCHW", expected="4 dimensions", got=batch.ndim)
    if batch.shape[0] == 0:
        raise InputError("empty batch: nothing to predict", expected="N >= 1", got=tuple(batch.shape))
    if not (np.issubdtype(batch.dtype, np.floating)):
        raise InputError("a preprocessed batch must be floating point", expected="float32", got=str(batch.dtype))
    if cfg is not None:
        expected = (cfg.channels, *cfg.input_size)
        if batch.shape[1] != cfg.channels or (not dynamic_size and tuple(batch.shape[1:]) != expected):
            raise InputError("batch shape does not match the model input",
                             expected=f"(N, {', '.join(map(str, expected))})", got=tuple(batch.shape))
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes Inf, rejected just below
        batch = np.ascontiguousarray(batch, dtype=np.float32)
    if not np.isfinite(batch).all():
        raise InputError("the batch contains NaN or Inf values", expected="finite values", got="non-finite")
    return batch
