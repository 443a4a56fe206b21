"""Where vit-edge keeps its caches: ``$VIT_EDGE_CACHE_DIR/<kind>``, else ``~/.cache/vit-edge/<kind>``
(``$XDG_CACHE_HOME`` honoured); ``VIT_EDGE_CACHE_DIR=off`` turns every cache off. One rule for all of them
(compiled OpenVINO models, reference outputs), so one variable moves or disables them together."""

from __future__ import annotations

import os
from pathlib import Path

OFF = ("off", "0", "false", "no", "")


def is_off(value) -> bool:
    return value is False or str(value).strip().lower() in OFF


def cache_dir(kind: str) -> Path | None:
    """The folder of cache ``kind``, or None when caching is off (it may not exist yet)."""
    value = os.environ.get("VIT_EDGE_CACHE_DIR")
    if value is not None and is_off(value):
        return None
    base = Path(value) if value else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vit-edge"
    return base / kind
