"""How far a candidate's outputs are from a reference's: the bottom layer every check uses.

One definition of each metric, so the export parity check, the INT8 recipe choice and ``validate`` can
never disagree on what "max relative error" or "agreement" means. Needs only numpy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    """What a parity gate accepts. Top-1 drop in points; agreement in 0..1; cosine for feature models."""

    max_top1_drop: float = 0.5
    min_agreement: float = 0.98
    min_cosine: float = 0.99

    @classmethod
    def from_options(cls, values: dict | None = None) -> "Thresholds":
        """Defaults, overridden by the values given (None means "the default")."""
        given = {k: float(v) for k, v in (values or {}).items() if v is not None}
        unknown = set(given) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown thresholds: {', '.join(sorted(unknown))}")
        return cls(**given)

    def to_dict(self) -> dict:
        return asdict(self)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (outputs of one image each)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def max_abs_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Largest absolute difference, computed in the arrays' own dtype (cast to float64 first for a
    float64 answer)."""
    return float(np.abs(np.asarray(candidate) - np.asarray(reference)).max())


def output_scale(reference: np.ndarray) -> float:
    """What errors are measured relative to: max(1, max |reference output|), so a tolerance means the same
    for logits of size 0.1 and of size 30."""
    return max(1.0, float(np.abs(reference).max()))


def max_rel_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Max abs error relative to :func:`output_scale` of the reference."""
    return max_abs_error(candidate, reference) / output_scale(reference)


def agreement(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Share of rows whose top-1 class is the same on both sides."""
    return float((np.asarray(candidate).argmax(1) == np.asarray(reference).argmax(1)).mean())
