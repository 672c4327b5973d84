"""Small statistics for evaluation results: percentiles, a bootstrap interval
for a hit rate, and the exact sign test for paired runs.

Pure functions over plain numbers, so the evaluator, the sweep benchmark and
the report share one definition of each.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence


def sign_test_p(gained: int, lost: int) -> float:
    """Exact two-sided sign test (McNemar) on the questions two runs disagree on.

    Paired: both runs answered the same questions, so only the questions one
    got and the other missed carry information about which is better.
    """
    n = gained + lost
    if n == 0:
        return 1.0
    tail: float = sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n
    return min(1.0, 2 * tail)


def bootstrap_interval(
    hits: Sequence[bool], *, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> list[float] | None:
    """Percentile-bootstrap interval of a hit rate: how far the score could move
    on another draw of questions of the same kind.

    On ~100 questions one question is a point of score and the interval is
    about ±9 points wide, so settings whose scores differ by a few points are
    indistinguishable here; compare them question by question (the sweep's sign
    test) before changing a default. Seeded, so a re-run prints the same interval.
    """
    n = len(hits)
    if n == 0:
        return None
    rng = random.Random(seed)
    values = [float(hit) for hit in hits]
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(resamples))
    tail = (1.0 - confidence) / 2.0
    low = means[int(tail * (resamples - 1))]
    high = means[math.ceil((1.0 - tail) * (resamples - 1))]
    return [low, high]


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), without numpy."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


def latency_summary(timings: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """mean/p50/p95/p99 (seconds) and count of every timing key seen."""
    by_stage: dict[str, list[float]] = {}
    for record in timings:
        for stage, seconds in record.items():
            by_stage.setdefault(stage, []).append(seconds)
    return {
        stage: {
            "n": len(values),
            "mean": sum(values) / len(values),
            "p50": percentile(values, 50),
            "p95": percentile(values, 95),
            "p99": percentile(values, 99),
        }
        for stage, values in by_stage.items()
    }
