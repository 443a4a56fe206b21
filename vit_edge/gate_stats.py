"""The statistics of a paired accuracy comparison, exact where it is cheap. Pure Python (``math`` only).

Reference and candidate are judged on the *same* images, so their top-1 accuracies are paired proportions.
Of the 2x2 table of (reference right?, candidate right?) only the discordant cells carry information about the
difference: ``b`` = images only the reference gets right, ``c`` = images only the candidate gets right, and
the top-1 drop is ``(b - c) / n``.

- :func:`mcnemar_exact_p`: McNemar's test in its exact form, a two-sided binomial test of ``b`` against
  Binomial(b + c, 1/2) (McNemar 1947, Psychometrika 12:153-157; the exact conditional version as in
  Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol 13:91).
- :func:`paired_difference_ci`: Newcombe's hybrid score interval for the difference of paired proportions,
  his method 10 (Newcombe 1998, "Improved confidence intervals for the difference between binomial
  proportions based on paired data", Stat Med 17:2635-2650), one of the intervals Fagerland, Lydersen &
  Laake recommend (2014, Stat Med 33:2850-2875). Unlike the Wald interval it is never degenerate (b = c = 0
  still gives a width) and stays inside [-1, 1].
- :func:`wilson_interval`: the Wilson score interval of one proportion (Wilson 1927, JASA 22:209-212), for the
  top-1 agreement and as Newcombe's building block.
"""

from __future__ import annotations

import math
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)  # 1.959963984540054: two-sided 95%


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of ``successes / n``: centre (k + z^2/2) / (n + z^2), half-width
    z sqrt(k (n - k) / n + z^2 / 4) / (n + z^2). ``(0.0, 1.0)`` when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..{n} (got {successes})")
    z2 = z * z
    centre = (successes + z2 / 2) / (n + z2)
    half = z * math.sqrt(successes * (n - successes) / n + z2 / 4) / (n + z2)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: p = min(1, 2 * sum_{k <= min(b, c)} C(b + c, k) / 2^(b + c)); 1.0 when
    there are no discordant pairs. Computed in integers, then one correctly rounded division."""
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    m = b + c
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, k) for k in range(min(b, c) + 1))
    return min(1.0, (2 * tail) / (1 << m))


def paired_difference_ci(a: int, b: int, c: int, d: int, z: float = Z95) -> tuple[float, float]:
    """Newcombe's (1998) method-10 interval for p1 - p2, where p1 = (a + b) / n is the reference's accuracy and
    p2 = (a + c) / n the candidate's: a = both right, b = reference only, c = candidate only, d = neither.

    With Wilson intervals (l1, u1) of p1 and (l2, u2) of p2 and phi Newcombe's estimate of the correlation
    of the two proportions, phi = A / sqrt((a+b)(c+d)(a+c)(b+d)) with A = ad - bc - n/2 when ad - bc > n/2,
    0 when 0 <= ad - bc <= n/2 and ad - bc when it is negative (0 when the product is 0; as implemented in
    Fagerland, Lydersen & Laake's contingencytables, "Newcombe square-and-add CI, paired 2x2"):
    lower = (p1 - p2) - sqrt((p1 - l1)^2 - 2 phi (p1 - l1)(u2 - p2) + (u2 - p2)^2),
    upper = (p1 - p2) + sqrt((u1 - p1)^2 - 2 phi (u1 - p1)(p2 - l2) + (p2 - l2)^2)."""
    if min(a, b, c, d) < 0:
        raise ValueError("counts must be non-negative")
    n = a + b + c + d
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_interval(a + b, n, z)
    l2, u2 = wilson_interval(a + c, n, z)
    product = (a + b) * (c + d) * (a + c) * (b + d)
    cross = a * d - b * c
    # Newcombe's correlation estimate, shrunk towards 0 by n/2 when positive (0 when 0 <= ad - bc <= n/2)
    phi = 0.0 if product == 0 else (cross - n / 2 if cross > n / 2 else min(cross, 0)) / math.sqrt(product)
    delta = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    epsilon = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    diff = p1 - p2
    return max(-1.0, diff - delta), min(1.0, diff + epsilon)
