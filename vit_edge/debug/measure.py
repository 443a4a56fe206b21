"""How far each point has drifted, accumulated batch by batch, and where the error jumps.

Per point (all images together, each tensor flattened): SNR in dB (reference power over error power),
cosine, max abs error, relative error (max abs error over max |reference|), and for FP16 the values that are
non-finite or beyond +-65504 (and how many reference values are beyond it: what FP16 cannot hold).

Where the error jumps: every point has the points that feed it (:meth:`~.taps.OnnxTaps.upstream`); the
noise a point *adds* is its error power minus its noisiest input's, as an SNR (``local_snr_db``: about 30-45
dB for one ordinary INT8 rounding, 100 when it adds nothing). Noise is only injected where the candidate
computes something of its own (a quantized input, a quantized weight's output, any FP16 op: ``injects``);
elsewhere float ops the two graphs share only carry it (a Softmax amplifies its input's error). The noise
floor is the median ``local_snr_db`` of the injecting points in the first third of the graph, with its robust
spread; a point diverges when it injects, its SNR drops more than ``JUMP_DB`` below its inputs' and its added
noise is beyond the floor by ``max(MARGIN_DB, SPREAD_FACTOR x spread)`` (at most ``MAX_MARGIN_DB``), or when it holds non-finite values of
its own. The first divergence is the first such point in graph order, the largest jump the worst one.
"""

from __future__ import annotations

import math

import numpy as np

CAP_DB = 100.0  # the SNR reported for a point with no error (float rounding alone sits near or above it)
FP16_MAX = 65504.0
JUMP_DB = 6.0  # 4x the error power: how far a point's SNR must drop below its inputs'
MARGIN_DB = 10.0  # 10x the floor's noise power: how far beyond the floor a jump's added noise must be, at least
ADDS_ERROR_DB = 80.0  # a point whose added noise is below this (in SNR) adds error: rounding, quantization
EARLY_SHARE = 1 / 3
SPREAD_FACTOR = 3.0  # a jump must clear the floor by this many spreads (and by MARGIN_DB at least)
MAX_MARGIN_DB = 15.0  # ... but never by more than this (a floor measured among many jumps spreads widely)


class Accumulator:
    """Running sums of one point's reference and candidate values over the batches."""

    def __init__(self):
        self.signal = self.error = self.dot = self.cand_sq = 0.0
        self.max_abs_error = self.max_abs_ref = 0.0
        self.non_finite = self.beyond_fp16 = self.ref_beyond_fp16 = self.values = 0
        self.shape_mismatch = False

    def add(self, candidate, reference) -> None:
        """Accumulate one batch (float32 BLAS dot products: fast, and exact enough for an SNR)."""
        cand = np.asarray(candidate).astype(np.float32, copy=False).ravel()
        ref = np.asarray(reference).astype(np.float32, copy=False).ravel()
        if cand.size != ref.size:
            self.shape_mismatch = True
            return
        if cand.size == 0:
            return
        diff = cand - ref
        error = float(np.dot(diff, diff))
        if not math.isfinite(error):  # inf/nan (or values near float32's limit): count them, measure the rest
            finite = np.isfinite(cand)
            self.non_finite += int(cand.size - finite.sum())
            cand = np.where(finite, cand, np.float32(0)).astype(np.float64)
            ref = ref.astype(np.float64)
            diff = cand - ref
            error = float(np.dot(diff, diff))
        signal, cross = float(np.dot(ref, ref)), float(np.dot(diff, ref))
        # cand.ref and cand.cand from the three products: one pass fewer, and exact in the small-error limit
        self.signal += signal
        self.error += error
        self.dot += signal + cross
        self.cand_sq += signal + 2 * cross + error
        self.max_abs_error = max(self.max_abs_error, float(diff.max()), -float(diff.min()))
        peak_ref = max(float(ref.max()), -float(ref.min()))
        self.max_abs_ref = max(self.max_abs_ref, peak_ref)
        if peak_ref > FP16_MAX / 2 or self.max_abs_error > FP16_MAX / 2:  # else no candidate value can be beyond
            self.beyond_fp16 += int((np.abs(cand) > FP16_MAX).sum())
        if peak_ref > FP16_MAX:
            self.ref_beyond_fp16 += int((np.abs(ref) > FP16_MAX).sum())
        self.values += int(ref.size)

    def metrics(self) -> dict:
        broken = self.non_finite > 0 or self.shape_mismatch
        if broken:
            snr = cosine = None
        elif self.error == 0:
            snr, cosine = CAP_DB, 1.0
        else:
            snr = min(CAP_DB, 10 * math.log10(max(self.signal, 1e-300) / self.error))
            cosine = self.dot / max(math.sqrt(self.signal * self.cand_sq), 1e-300)
        return {"snr_db": snr, "cosine": cosine, "max_abs_error": None if broken else self.max_abs_error,
                "rel_error": None if broken else self.max_abs_error / max(self.max_abs_ref, 1e-12),
                "non_finite": self.non_finite, "beyond_fp16": self.beyond_fp16,
                "ref_beyond_fp16": self.ref_beyond_fp16, "values": self.values}


def _power(snr):
    """Relative error power of an SNR (None: non-finite, infinitely bad)."""
    return math.inf if snr is None else 10 ** (-snr / 10)


def _snr(power) -> float | None:
    if math.isinf(power):
        return None
    return CAP_DB if power <= 10 ** (-CAP_DB / 10) else min(CAP_DB, -10 * math.log10(power))


def analyse(points: list, upstream: dict, key: str = "snr_db") -> dict:
    """Fill ``upstream_snr_db``, ``drop_db`` and ``local_snr_db`` of each point (dicts in graph order, with
    ``key`` as their SNR) from ``upstream`` (index -> indices of the points feeding it); return the noise
    floor and the index of the first divergence (None when nothing jumps)."""
    for i, point in enumerate(points):
        feeding = [points[j][key] for j in upstream.get(i, ())]
        # The noisiest input bounds what comes in: a product's relative errors add, a sum's average out.
        best = None if any(s is None for s in feeding) else min(feeding, default=CAP_DB)
        snr = point[key]
        point["upstream_snr_db"] = best
        if best is None:  # fed by a non-finite value: nothing of its own can be measured
            point["drop_db"] = point["local_snr_db"] = None
            point["inherited_non_finite"] = True
            continue
        point["drop_db"] = math.inf if snr is None else max(0.0, best - snr)
        point["local_snr_db"] = _snr(max(0.0, _power(snr) - _power(best)))
    floor, spread = noise_floor(points)
    margin = min(max(MARGIN_DB, SPREAD_FACTOR * spread), MAX_MARGIN_DB)
    jumps = [i for i, p in enumerate(points) if diverges(p, floor, margin)]
    largest = max(jumps, key=lambda i: (excess_db(points[i], floor), -i)) if jumps else None
    return {"noise_floor_db": floor, "noise_spread_db": spread, "margin_db": margin,
            "first_divergence": jumps[0] if jumps else None, "largest_jump": largest}


def noise_floor(points: list) -> tuple[float, float]:
    """The median noise one error-adding point adds in the first third of the graph (at least 5 of them),
    and the robust spread of the calmer half (1.4826 x its median absolute deviation). Only points where the candidate
    computes something of its own count (``injects``: after a quantizer, a quantized weight, an FP16 op)."""
    adding = [(i, p["local_snr_db"]) for i, p in enumerate(points) if p.get("injects", True)
              and p["local_snr_db"] is not None and p["local_snr_db"] < ADDS_ERROR_DB]
    if not adding:
        return CAP_DB, 0.0
    early = [s for i, s in adding if i < max(1, len(points) * EARLY_SHARE)]
    if len(early) < 5:
        early = [s for _, s in adding[:5]]
    median = float(np.median(early))
    calm = np.asarray([v for v in early if v >= median])  # the spread of ordinary steps, not of the damage
    return median, float(1.4826 * np.median(np.abs(calm - np.median(calm))))


def diverges(point: dict, floor: float, margin: float = MARGIN_DB) -> bool:
    """Whether the error jumps at this point: non-finite values of its own, or (where the candidate computes
    something of its own) an SNR drop of more than ``JUMP_DB`` below its inputs with an added noise more
    than ``margin`` beyond the floor."""
    if point.get("inherited_non_finite"):
        return False
    if point["snr_db"] is None:
        return True
    local = point["local_snr_db"]
    return (point.get("injects", True) and point["drop_db"] is not None and point["drop_db"] > JUMP_DB and local is not None
            and local < floor - margin)


def excess_db(point: dict, floor: float) -> float:
    """How much more noise than the floor a point adds, in dB (infinite for non-finite values of its own)."""
    if point["snr_db"] is None and not point.get("inherited_non_finite"):
        return math.inf
    local = point["local_snr_db"]
    return floor - (CAP_DB if local is None else local)
