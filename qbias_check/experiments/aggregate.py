"""Mean and 95 % t-interval across seeds (thesis chapter 4: "average with 95 % confidence")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qbias_check._optional import require


@dataclass(frozen=True)
class Estimate:
    """One number over seeds: the mean, its t-interval, and the per-seed values.

    The interval is NaN with fewer than two finite values (one seed has no spread); ``n``
    counts the finite values, so a seed whose value is NaN (e.g. a class with no examples)
    is visibly left out rather than averaged as 0.
    """

    mean: float
    low: float
    high: float
    n: int
    values: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN becomes None)."""
        return {
            "mean": _json(self.mean),
            "interval": [_json(self.low), _json(self.high)],
            "n_seeds": self.n,
            "per_seed": [_json(v) for v in self.values],
        }


def across_seeds(values: Sequence[float], *, confidence: float = 0.95) -> Estimate:
    """Mean and Student-t interval of ``values`` (one per seed), ignoring NaN."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    raw = tuple(math.nan if v is None else float(v) for v in values)
    n = len(finite)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, raw)
    mean = sum(finite) / n
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, raw)
    sd = math.sqrt(sum((v - mean) ** 2 for v in finite) / (n - 1))
    t = float(require("scipy.stats").t.ppf(0.5 + confidence / 2, n - 1))
    half = t * sd / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n, raw)


def aggregate(
    per_seed: Sequence[Mapping[str, float]], *, confidence: float = 0.95
) -> dict[str, Estimate]:
    """Every key of the per-seed dicts -> its :class:`Estimate` (a key missing in a seed is NaN)."""
    keys: dict[str, None] = {}
    for numbers in per_seed:
        keys.update(dict.fromkeys(numbers))
    return {
        key: across_seeds([s.get(key, math.nan) for s in per_seed], confidence=confidence)
        for key in keys
    }


def _json(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
