"""``--labels FILE``: class names from a text file (one a line) or JSON (a list, or a dict by index).

A JSON dict must be keyed 0..N-1 with no gaps: a missing or negative key would shift every later name onto
the wrong class without a sound, so it is refused instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from vit_edge.errors import ModelSpecError

JSON_HINT = 'use a list ["cat", "dog"] or a dict {"0": "cat", "1": "dog"} keyed 0..N-1'


def read_labels(path) -> list:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelSpecError(f"cannot read labels file {path} ({exc.__class__.__name__})") from None
    if path.suffix.lower() == ".json":
        return _json_labels(path, text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ModelSpecError(f"labels file {path} is empty")
    return lines


def _json_labels(path: Path, text: str) -> list:
    try:
        data = json.loads(text)
    except RecursionError:  # the decoder recurses once per nesting level
        raise ModelSpecError(f"labels file {path} nests too deeply to be a list of names", hint=JSON_HINT) from None
    except ValueError:
        raise ModelSpecError(f"labels file {path} is not valid JSON") from None
    if isinstance(data, dict):
        data = _by_index(path, data)
    if not isinstance(data, list):
        raise ModelSpecError(f"labels file {path} holds a JSON {_kind(data)}, not a list or dict of names",
                             hint=JSON_HINT)
    if not data:
        raise ModelSpecError(f"labels file {path} holds no names", hint=JSON_HINT)
    bad = next((i for i, x in enumerate(data) if not isinstance(x, (str, int, float)) or isinstance(x, bool)), None)
    if bad is not None:
        raise ModelSpecError(f"labels file {path}: name {bad} is a JSON {_kind(data[bad])}, not a string",
                             hint=JSON_HINT)
    return [str(x) for x in data]


def _by_index(path: Path, data: dict) -> list:
    """A dict keyed by class index -> the names in index order; the keys must be exactly 0..N-1."""
    indices = {}
    for key, value in data.items():
        try:
            index = int(key)
        except ValueError:
            raise ModelSpecError(f"labels file {path}: key {key!r} is not a class index", hint=JSON_HINT) from None
        if index in indices:
            raise ModelSpecError(f"labels file {path}: class {index} is named twice", hint=JSON_HINT)
        indices[index] = value
    missing = sorted(set(range(len(indices))) - set(indices))
    if missing:
        odd = sorted(i for i in indices if not 0 <= i < len(indices))
        raise ModelSpecError(f"labels file {path}: its keys are not 0..{len(indices) - 1} (missing {missing[:3]}, "
                             f"out of range {odd[:3]}); the names would shift onto the wrong classes",
                             hint=JSON_HINT)
    return [indices[i] for i in range(len(indices))]


def _kind(value) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")
