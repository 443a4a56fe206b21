"""The INT8 recipe, chosen per model by measurement: a small fixed set of candidates, each quantized with NNCF
and scored against the FP32 model on calibration-source images that calibration did not use.

Why a search: which recipe stays closest to FP32 depends on the weights, not the architecture. Measured here:
SmoothQuant takes Swin-T from cosine 0.948 to 0.999 by being switched *off* (random weights), while a planted
outlier channel in a trained model needs it *on*; the symmetric PERFORMANCE preset beat the default MIXED
preset on a foreign CIFAR-10 ViT (agreement 98.5% vs 97.9% on 10,000 images). An explicit recipe flag
(``--preset``, ``--smooth-quant-alpha``) fixes that axis; a target that needs symmetric activations
(TensorRT) searches only among those.

The activation ranges are a third axis, searched in a second stage to keep the cost at one more pass: every
first-stage candidate takes each activation's range as the global min/max over the calibration images
(``minmax``), then the winner is quantized once more with NNCF's default, the mean over images of each
image's min/max (``mean-minmax``), and the closer one kept. Measured on the imagenette-64 fixtures (all 3,925
val photos, OpenVINO INT8, every recipe): global min/max took the ReLU twin from 98.60-99.11% agreement to
99.08-99.36% and the GELU ViT from 98.42-98.93% to 99.21-99.36%; the mean of per-image ranges clips the
rare large activations that decide the close calls. The second stage keeps NNCF's default where one
outlier image would stretch a global range (``--activation-range`` fixes it).

What is shared between candidates: the preprocessed calibration images, the held-out scoring images and the
FP32 reference outputs on them (computed once), and NNCF's statistics passes (:mod:`.shared_ptq`: two passes
over the calibration images for every candidate of both stages; timm ViT-S on OpenVINO, 5 candidates: 42 s
instead of 122 s, bit-identical models).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from vit_edge import metrics
from vit_edge.progress import phase

log = logging.getLogger("vit_edge")

PRESETS = ("mixed", "performance")
RANGES = ("minmax", "mean-minmax")  # the first is what the first stage uses


@dataclass(frozen=True)
class Recipe:
    preset: str  # NNCF preset: mixed (asymmetric activations) or performance (symmetric)
    smooth_quant_alpha: float | None  # None: NNCF's default for transformers; negative: off
    activation_range: str = RANGES[0]  # minmax (global over the images) or mean-minmax (NNCF's default)

    @property
    def name(self) -> str:
        if self.smooth_quant_alpha is None:
            sq = "sq"
        elif self.smooth_quant_alpha < 0:
            sq = "no-sq"
        else:
            sq = f"sq{self.smooth_quant_alpha:g}"
        return f"{self.preset}+{sq}+{self.activation_range}"


def candidates(*, preset: str | None, smooth_quant_alpha: float | None, symmetric_only: bool,
               activation_range: str | None = None) -> list:
    """The first-stage recipes; an axis the user fixed (or the target requires) has one value."""
    presets = ["performance"] if symmetric_only else ([preset] if preset else list(PRESETS))
    alphas = [smooth_quant_alpha] if smooth_quant_alpha is not None else [None, -1.0]
    return [Recipe(p, a, activation_range or RANGES[0]) for p in presets for a in alphas]


def second_stage(best: Recipe, activation_range: str | None) -> list:
    """The first stage's winner with the other activation ranges (none when ``--activation-range`` fixed it)."""
    if activation_range is not None:
        return []
    return [Recipe(best.preset, best.smooth_quant_alpha, r) for r in RANGES if r != best.activation_range]


# Candidates this close to the best one are "equally close" (one scoring image, a cosine within noise), and
# the one with the most GEMM MACs in INT8 among them wins: it is the faster artifact. Measured on random-weight
# ViT-S: without SmoothQuant NNCF leaves the attention projection and the head inputs in float (37 of 50 GEMMs
# INT8 for TensorRT), with it all 50.
COSINE_TIE = 1e-3


@dataclass
class Score:
    recipe: Recipe
    agreement: float
    mean_cosine: float
    seconds: float
    int8_mac_share: float | None = None

    def key(self, task: str) -> tuple:
        """Higher is better: agreement first (what the gate checks), then cosine; cosine alone for features."""
        return (self.mean_cosine,) if task == "features" else (self.agreement, self.mean_cosine)

    def to_dict(self) -> dict:
        return {"recipe": self.recipe.name, "preset": self.recipe.preset,
                "smooth_quant_alpha": self.recipe.smooth_quant_alpha,
                "activation_range": self.recipe.activation_range, "top1_agreement": self.agreement,
                "mean_cosine": self.mean_cosine, "int8_mac_share": self.int8_mac_share}


def search(model, recipes: list, quantize, infer, scoring: list, *, task: str = "classify", coverage=None,
           refine=None):
    """Quantize ``model`` with each recipe (``quantize(recipe)``, a new model), score each on the ``scoring``
    batches against the FP32 model (``infer(model, batches)``), then the recipes ``refine(best so far)``
    returns (the second stage), and return (best model, best recipe, scores best first).
    ``coverage(quantized)`` gives the INT8 MAC share that breaks ties between equally close ones."""
    reference = infer(model, scoring)
    images = sum(len(b) for b in scoring)
    scored, models = [], {}
    total = len(recipes) + (len(refine(recipes[0])) if refine is not None else 0)

    def run(recipe):
        phase(f"quantizing: recipe {len(scored) + 1} of {total} ({recipe.name})" if total > 1 else
              f"quantizing ({recipe.name})")
        started = time.perf_counter()
        quantized = quantize(recipe)
        out = infer(quantized, scoring)
        scored.append(Score(recipe, metrics.agreement(out, reference),
                            float(np.mean(metrics.row_cosines(out, reference))), time.perf_counter() - started,
                            coverage(quantized) if coverage is not None else None))
        models[recipe] = quantized
        log.info("INT8 recipe %s: agreement %.4f, mean cosine %.6f (%.1f s)", recipe.name, scored[-1].agreement,
                 scored[-1].mean_cosine, scored[-1].seconds)

    for recipe in recipes:
        run(recipe)
    for recipe in (refine(_ranked(scored, task, images)[0].recipe) if refine is not None else []):
        run(recipe)
    ranked = _ranked(scored, task, images)
    best = ranked[0].recipe
    return models[best], best, ranked


def _ranked(scored: list, task: str, images: int) -> list:
    """The scores best first: the closest to FP32, except that among the equally close ones the one with the
    most GEMM MACs in INT8 comes first."""
    # Stable: among equals the earlier candidate (NNCF's defaults come first) wins.
    ranked = sorted(scored, key=lambda s: s.key(task), reverse=True)
    top = ranked[0]
    tied = [s for s in ranked if s.mean_cosine >= top.mean_cosine - COSINE_TIE
            and (task == "features" or s.agreement >= top.agreement - 1.0 / max(images, 1) - 1e-12)]
    fastest = max(tied, key=lambda s: s.int8_mac_share or 0.0)  # max keeps the first among equals
    if fastest is not top:
        ranked.remove(fastest)
        ranked.insert(0, fastest)
    return ranked


def summary_line(ranked: list, images: int, held_out: bool, task: str) -> str:
    """``INT8 recipe: X (agreement .., cosine ..) over runner-up Y (..) on N held-out images``."""
    def describe(score):
        if task == "features":
            return f"{score.recipe.name} (cosine {score.mean_cosine:.5f})"
        return f"{score.recipe.name} (agreement {100 * score.agreement:.2f}%, cosine {score.mean_cosine:.5f})"

    where = f"{images} held-out calibration images" if held_out else f"{images} calibration images (none held out)"
    if len(ranked) == 1:
        return f"INT8 recipe: {describe(ranked[0])} on {where}"
    return f"INT8 recipe: {describe(ranked[0])}; runner-up {describe(ranked[1])}; on {where}"
