"""The one syntax of every ``--batch`` list (``bench``, ``convert --target tensorrt``, ``build-engine``).

Its own module because convert's target flags may not import the CLI layer (tests/test_structure.py).
"""

from __future__ import annotations

import click


def batch_sizes(text: str, expected: str = "comma-separated positive integers, e.g. 1,8,32") -> list[int]:
    """Every ``--batch`` list: ``1,8,32``. ``1:8:32`` is read the same, because TensorRT's ``--batch`` took
    colons before bench and convert shared this syntax (scripts written then keep working)."""
    text = str(text)
    separator = ":" if ":" in text and "," not in text else ","
    try:
        values = [int(x) for x in text.split(separator) if x.strip()]
    except ValueError:
        raise click.BadParameter(f"use {expected} (got {text!r})") from None
    if not values or any(v < 1 for v in values):
        raise click.BadParameter(f"use {expected} (got {text!r})")
    return values
