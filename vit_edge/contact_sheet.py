"""``validate --flips-dir DIR``: a contact sheet (PNG) of the worst flipped images with both sides' labels."""

from __future__ import annotations

import io
import math
import os
import tempfile
from pathlib import Path

import numpy as np

SHEET = "flips.png"
MAX_IMAGES = 24
COLUMNS = 6


def _picture(images, index: int, cfg) -> np.ndarray:
    """Item ``index`` as an RGB (or gray) array for display: the image as stored, or an array row
    un-normalised."""
    from vit_edge.preprocess import open_image

    if images.preprocessed is not None:
        chw = images.preprocessed[index].astype(np.float64)
        mean = np.asarray(cfg.mean[:chw.shape[0]]).reshape(-1, 1, 1)
        std = np.asarray(cfg.std[:chw.shape[0]]).reshape(-1, 1, 1)
        return np.clip(chw * std + mean, 0, 1).transpose(1, 2, 0).squeeze()
    item = images.items[index]
    image = open_image(item) if isinstance(item, (str, Path)) else item
    image = image.convert("RGB")
    image.thumbnail((160, 160))
    return np.asarray(image)


def _title(flip: dict) -> tuple[str, str]:
    r, c = flip["reference"], flip["candidate"]
    lines = [f"ref  {r['label'][:18]} ({r['p']:.2f})", f"cand {c['label'][:18]} ({c['p']:.2f})"]
    if "label" in flip:
        lines.append(f"true {flip['label'][:18]}")
    colour = {"lost": "#b00020", "gained": "#1b5e20"}.get(flip.get("kind"), "#333333")
    return "\n".join(lines), colour


def write_contact_sheet(report, images, cfg, out_dir, max_images: int = MAX_IMAGES) -> Path:
    """Write ``out_dir/flips.png`` (atomically) and return its path. No flips: a sheet that says so."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vit_edge.errors import OutputError

    flips = report.flips[:max_images]
    cols = max(1, min(COLUMNS, len(flips)))
    rows = max(1, math.ceil(len(flips) / cols))
    fig = Figure(figsize=(2.3 * cols, 2.9 * rows + 0.6), dpi=100)
    FigureCanvasAgg(fig)
    fig.suptitle(f"{report.candidate['name']} vs {report.reference['name']} on {report.data}: "
                 f"{report.flip_count} flips of {report.samples}" +
                 (f", worst {len(flips)}" if report.flip_count > len(flips) else ""), fontsize=9)
    if not flips:
        fig.text(0.5, 0.5, "no flipped images", ha="center", va="center")
    for k, flip in enumerate(flips):
        ax = fig.add_subplot(rows, cols, k + 1)
        picture = _picture(images, flip["index"], cfg)
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None, interpolation="nearest")
        title, colour = _title(flip)
        ax.set_title(title, fontsize=7, color=colour, family="monospace", loc="left")
        ax.set_xlabel(f"{Path(flip['path']).name[-26:]}  m={flip['reference_margin']:.2f}", fontsize=6)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    out = Path(out_dir)
    path = out / SHEET
    tmp = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{SHEET}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getvalue())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp and os.path.exists(tmp):
            os.remove(tmp)
        raise OutputError(f"cannot write {path} ({exc.strerror or exc})", hint="check that --flips-dir is writable") \
            from None
    return path
