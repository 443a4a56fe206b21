"""How far a benchmark's numbers can be trusted: the machine's load when it started and how much the rounds of
one row disagree. ``vit-edge bench`` prints what this finds as one warning, and the reports keep it."""

from __future__ import annotations

import os


def load_1min() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not available on every platform (Windows has no getloadavg)
        return None


# Rounds of one row this far apart (fastest / slowest) did not measure the same machine: something else ran.
# Alternating rounds hit every artifact alike, so a speedup survives some noise, but the absolute numbers do not.
SPREAD_WARNING = 1.5


def noise_warnings(results, load_at_start: float | None, cores: int | None) -> list:
    """At most one line saying why these numbers are noisy, and how it was told: a 1-minute load average
    above the core count when the run started (other programs wanted every core), or a row whose rounds
    differ by more than SPREAD_WARNING times in throughput."""
    reasons = []
    if load_at_start is not None and cores and load_at_start > cores:
        reasons.append(f"the load average was {load_at_start:.2f} on {cores} cores when it started")

    def ratio(r) -> float:
        rounds = r.throughput_rounds
        return max(rounds) / min(rounds) if rounds and min(rounds) > 0 else 1.0

    worst = max(results, key=ratio, default=None)
    if worst is not None and ratio(worst) > SPREAD_WARNING:
        reasons.append(f"the fastest round of {worst.name} at batch {worst.batch} was {ratio(worst):.1f}x its "
                       f"slowest (over {SPREAD_WARNING:g}x)")
    if not reasons:
        return []
    return ["the machine was busy: " + "; ".join(reasons) + ". Other programs took CPU time, so throughput and "
            "latency are noisy (speedups less so: the rounds alternate); rerun on an idle machine, or with more "
            "--rounds"]
