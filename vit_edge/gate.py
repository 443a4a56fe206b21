"""The top-1 gate, and what flipped: decisions and tables from the two sides' outputs (numpy only).

The rule (README "Validate" gives the reasoning): with T = ``--max-top1-drop``, d the observed drop, p the
exact McNemar p-value and [lo, hi] the paired 95% interval of the drop,

- d <= T: the top-1 gate holds (a model whose top-1 did not move never fails it, however many images flipped
  both ways; the agreement gate judges those);
- d > T and p < 0.05: FAIL, a real regression beyond the tolerance;
- d > T, p >= 0.05, hi > EVIDENCE_FACTOR * T: FAIL, the data are too few to vouch for the model (it may have
  lost up to ``hi``); more images, or a larger tolerance, settle it;
- d > T, p >= 0.05, hi <= EVIDENCE_FACTOR * T: pass, with a note: over the tolerance but indistinguishable
  from noise, and a large loss is ruled out.
"""

from __future__ import annotations

import numpy as np

from vit_edge import gate_stats

ALPHA = 0.05  # McNemar: a drop is "real" below this p-value
EVIDENCE_FACTOR = 5.0  # a drop over T that is not significant still fails when its CI reaches 5 x T
FLIPS_LISTED = 1000  # the JSON lists at most this many flips (the worst first); flip_count counts all
METHOD = ("drop CI: Newcombe (1998) hybrid score, method 10; p: exact McNemar (two-sided binomial on b vs c); "
          "agreement CI: Wilson score")


def top1_verdict(reference_correct, candidate_correct, max_drop_pts: float) -> tuple[dict, str | None, str | None]:
    """Judge the top-1 drop from per-image correctness (booleans, same images in the same order).

    Returns ``(record, failure, note)``: the JSON record (``value`` and ``ci95`` as fractions like the top-1
    values, ``mcnemar_p``, the discordant counts, the decision), the failure message when the gate fails,
    and a note worth printing when it holds for a reason the user should know."""
    ref = np.asarray(reference_correct, bool)
    cand = np.asarray(candidate_correct, bool)
    n = int(ref.size)
    a = int((ref & cand).sum())
    b = int((ref & ~cand).sum())
    c = int((~ref & cand).sum())
    d = n - a - b - c
    drop = (b - c) / n if n else 0.0
    lo, hi = gate_stats.paired_difference_ci(a, b, c, d)
    p = gate_stats.mcnemar_exact_p(b, c)
    tol = float(max_drop_pts) / 100
    limit = EVIDENCE_FACTOR * tol
    significant = p < ALPHA
    evidence = (f"McNemar p={p:.3g}, 95% CI {100 * lo:.2f}..{100 * hi:.2f} pts, "
                f"{b} images lost / {c} gained of {n}")
    moved = f"top-1 dropped {100 * drop:.2f} pts ({100 * (a + b) / n:.2f}% -> {100 * (a + c) / n:.2f}%)" if n \
        else "top-1 dropped 0 pts"
    failure = note = None
    if drop <= tol + 1e-12:
        decision = "within tolerance"
        if significant and drop > 0:
            note = f"{moved}: within {max_drop_pts:g} pts, but a real drop ({evidence})"
    elif significant:
        decision = "real regression"
        failure = f"{moved} > {max_drop_pts:g} pts, and the drop is real ({evidence})"
    elif hi > limit + 1e-12:
        decision = "too few images"
        failure = (f"{moved} > {max_drop_pts:g} pts; not significant ({evidence}), but {n} images cannot rule "
                   f"out a drop of {100 * hi:.2f} pts > {EVIDENCE_FACTOR:g} x the tolerance: validate on more "
                   "images")
    else:
        decision = "not significant"
        note = (f"{moved} > {max_drop_pts:g} pts, but that is indistinguishable from noise ({evidence}) and "
                f"the 95% upper end is within {EVIDENCE_FACTOR:g} x the tolerance: not failed")
    record = {"value": drop, "ci95": [lo, hi], "mcnemar_p": p, "significant": significant, "alpha": ALPHA,
              "reference_only": b, "candidate_only": c, "samples": n, "evidence_limit": limit,
              "decision": decision, "method": METHOD}
    return record, failure, note


def agreement_ci(agreeing: int, n: int) -> list:
    lo, hi = gate_stats.wilson_interval(agreeing, n)
    return [lo, hi]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def margins(probs: np.ndarray) -> np.ndarray:
    """p1 - p2 of each row (the top-1 probability less the runner-up's); p1 for a single class."""
    if probs.shape[1] < 2:
        return probs[:, 0].copy()
    top2 = -np.partition(-probs, 1, axis=1)[:, :2]
    return top2[:, 0] - top2[:, 1]


def _r(value: float) -> float:
    return round(float(value), 6)


def flip_analysis(reference: np.ndarray, candidate: np.ndarray, labels, indices, item_id, names=None) -> dict:
    """Which images flipped and where: ``flips`` (worst first: the most confident reference overturned),
    ``flip_count``, ``per_class`` (labelled data) and ``agreement_by_margin`` (the reference's top-1 margin
    in rank quartiles, least confident first)."""
    name = (lambda k: str(names[k]) if names is not None and 0 <= k < len(names) else str(k))  # noqa: E731
    ref_p, cand_p = softmax(reference), softmax(candidate)
    ref_top, cand_top = ref_p.argmax(1), cand_p.argmax(1)
    margin = margins(ref_p)
    flipped = np.flatnonzero(ref_top != cand_top)
    order = flipped[np.lexsort((np.asarray(indices)[flipped], -margin[flipped]))]
    flips = []
    for i in order[:FLIPS_LISTED]:
        r, c = int(ref_top[i]), int(cand_top[i])
        entry = {"path": item_id(int(indices[i])), "index": int(indices[i]),
                 "reference": {"class": r, "label": name(r), "p": _r(ref_p[i, r])},
                 "candidate": {"class": c, "label": name(c), "p": _r(cand_p[i, c]),
                               "p_of_reference": _r(cand_p[i, r])},
                 "reference_margin": _r(margin[i])}
        if labels is not None:
            y = int(labels[i])
            entry["label"] = name(y)
            entry["kind"] = "lost" if r == y else ("gained" if c == y else "both wrong")
        flips.append(entry)
    per_class = None
    if labels is not None:
        y = np.asarray(labels)
        per_class = []
        for k in np.unique(y):
            rows = y == k
            ref_ok, cand_ok = ref_top[rows] == k, cand_top[rows] == k
            per_class.append({"class": int(k), "label": name(int(k)), "samples": int(rows.sum()),
                              "reference_top1": float(ref_ok.mean()), "candidate_top1": float(cand_ok.mean()),
                              "flips": int((ref_top[rows] != cand_top[rows]).sum()),
                              "lost": int((ref_ok & ~cand_ok).sum()), "gained": int((~ref_ok & cand_ok).sum())})
    by_margin = []
    ranked = np.lexsort((np.asarray(indices), margin))
    for q, rows in enumerate(np.array_split(ranked, min(4, len(ranked))), start=1):
        agree = int((ref_top[rows] == cand_top[rows]).sum())
        by_margin.append({"quartile": q, "margin": [_r(margin[rows].min()), _r(margin[rows].max())],
                          "samples": int(len(rows)), "agreement": agree / len(rows),
                          "agreement_ci95": agreement_ci(agree, len(rows)), "flips": int(len(rows) - agree)})
    return {"flips": flips, "flip_count": int(len(flipped)), "per_class": per_class,
            "agreement_by_margin": by_margin}
