"""Paired, stratified bootstrap on joint cell counts, percentile intervals and McNemar's exact test.

The unit of resampling is the example, but an example is fully described by its stratum (true
class x protected groups) and the two predictions. So each stratum is a multinomial over
``C x C`` (float prediction, int8 prediction) cells, and a bootstrap replicate is one multinomial
draw per stratum: the same draw serves both models (a paired bootstrap), stratum sizes stay fixed,
and the cost does not grow with the number of examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

ERR_CONFIDENCE = "confidence must lie strictly between 0 and 1; got {value}"
ERR_REPLICATES = "bootstrap must be a non-negative number of replicates; got {value}"


@dataclass(frozen=True)
class JointCounts:
    """Examples counted by stratum and the two models' predictions.

    ``counts[s, p, q]`` is the number of examples of stratum ``s`` that the float model labels
    ``p`` and the int8 model labels ``q``. Stratum ``s`` holds true class ``stratum_class[s]`` and
    group code ``stratum_groups[s, a]`` of attribute ``a``.
    """

    counts: IntArray
    stratum_class: IntArray
    stratum_groups: IntArray


def joint_counts(
    y_true: IntArray,
    pred_float: IntArray,
    pred_int8: IntArray,
    group_codes: IntArray,
    *,
    n_classes: int,
) -> JointCounts:
    """Count examples per (class x groups) stratum and (float, int8) prediction pair.

    ``group_codes`` is (N, A): the group index of every example for each of A attributes.
    """
    keys = np.column_stack([y_true, group_codes]) if group_codes.size else y_true[:, None]
    strata, stratum_of = np.unique(keys, axis=0, return_inverse=True)
    stratum_of = stratum_of.reshape(-1)
    cells = n_classes * n_classes
    flat = np.bincount(
        stratum_of * cells + pred_float * n_classes + pred_int8, minlength=len(strata) * cells
    )
    return JointCounts(
        counts=flat.reshape(len(strata), n_classes, n_classes).astype(np.int64),
        stratum_class=strata[:, 0].astype(np.int64),
        stratum_groups=strata[:, 1:].astype(np.int64),
    )


def bootstrap_counts(counts: IntArray, *, replicates: int, seed: int) -> IntArray:
    """Resample the cells of every stratum: returns (replicates, *counts.shape).

    Each stratum keeps its size; its cells are drawn from a multinomial with the observed shares.
    """
    if replicates < 0:
        raise ValueError(ERR_REPLICATES.format(value=replicates))
    rng = np.random.default_rng(seed)
    strata = counts.reshape(counts.shape[0], -1)
    out = np.zeros((replicates, *strata.shape), dtype=np.int64)
    for s, row in enumerate(strata):
        size = int(row.sum())
        if size:
            out[:, s] = rng.multinomial(size, row / size, size=replicates)
    return out.reshape(replicates, *counts.shape)


def check_confidence(confidence: float) -> None:
    """Raise if ``confidence`` is not strictly between 0 and 1."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(ERR_CONFIDENCE.format(value=confidence))


def percentile_interval(samples: FloatArray, *, confidence: float) -> tuple[FloatArray, FloatArray]:
    """Percentile interval over the first axis, ignoring NaN replicates; NaN when all are NaN."""
    check_confidence(confidence)
    tail = (1.0 - confidence) / 2.0 * 100.0
    values = np.asarray(samples, dtype=np.float64)
    if values.shape[0] == 0:
        empty = np.full(values.shape[1:], np.nan)
        return empty, empty.copy()
    finite = np.isfinite(values).any(axis=0)
    safe = np.where(finite, values, 0.0)  # an all-NaN column would warn; it is masked below
    low, high = np.nanpercentile(safe, [tail, 100.0 - tail], axis=0)
    return np.where(finite, low, np.nan), np.where(finite, high, np.nan)


def mcnemar_exact(broken: int, fixed: int) -> float:
    """Two-sided exact McNemar p-value for ``broken`` vs ``fixed`` discordant pairs.

    Under the null hypothesis each flip is equally likely to go either way, so the smaller count
    is Binomial(broken + fixed, 1/2); computed in exact integer arithmetic.
    """
    n = broken + fixed
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(broken, fixed) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))
