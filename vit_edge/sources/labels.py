"""``--labels FILE``: class names from a text file (one a line) or JSON (a list, or a dict by index)."""

from __future__ import annotations

import json
from pathlib import Path

from vit_edge.errors import ModelSpecError


def read_labels(path) -> list:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"cannot read labels file {path} ({exc.__class__.__name__})") from None
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except ValueError:
            raise ModelSpecError(f"labels file {path} is not valid JSON") from None
        if isinstance(data, dict):
            data = [data[k] for k in sorted(data, key=lambda k: int(k))]
        return [str(x) for x in data]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ModelSpecError(f"labels file {path} is empty")
    return lines
