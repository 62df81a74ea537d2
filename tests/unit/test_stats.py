"""Paired stratified bootstrap on joint counts, percentile intervals and McNemar's exact test."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qbias_check import stats


def _joint() -> stats.JointCounts:
    y = np.array([0, 0, 0, 1, 1, 1, 1, 2])
    ref = np.array([0, 0, 1, 1, 1, 0, 1, 2])
    q = np.array([0, 1, 1, 1, 0, 0, 1, 2])
    groups = np.array([[0], [1], [1], [0], [0], [1], [1], [0]])
    return stats.joint_counts(y, ref, q, groups, n_classes=3)


def test_joint_counts_keep_every_example_in_its_stratum_and_cell() -> None:
    joint = _joint()
    assert joint.counts.sum() == 8
    # strata sorted by (class, group): (0,0) (0,1) (1,0) (1,1) (2,0)
    np.testing.assert_array_equal(joint.stratum_class, [0, 0, 1, 1, 2])
    np.testing.assert_array_equal(joint.stratum_groups[:, 0], [0, 1, 0, 1, 0])
    assert joint.counts[1, 0, 1] == 1  # class 0, group 1: float 0, int8 1
    assert joint.counts[1, 1, 1] == 1
    assert joint.counts[3, 0, 0] == 1 and joint.counts[3, 1, 1] == 1


def test_bootstrap_keeps_stratum_sizes_and_is_reproducible() -> None:
    counts = _joint().counts
    first = stats.bootstrap_counts(counts, replicates=200, seed=3)
    again = stats.bootstrap_counts(counts, replicates=200, seed=3)
    other = stats.bootstrap_counts(counts, replicates=200, seed=4)
    assert first.shape == (200, *counts.shape)
    np.testing.assert_array_equal(
        first.sum(axis=(2, 3)), np.broadcast_to(counts.sum(axis=(1, 2)), (200, 5))
    )
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()
    # a cell that is empty in the data stays empty in every replicate
    assert first[:, 0, 2, 2].max() == 0


def test_bootstrap_cell_shares_match_the_observed_shares_on_average() -> None:
    counts = np.array([[[30, 10], [0, 60]]])
    draws = stats.bootstrap_counts(counts, replicates=4000, seed=0)
    np.testing.assert_allclose(draws.mean(axis=0) / 100, counts / 100, atol=0.01)


def test_percentile_interval_ignores_nan_replicates() -> None:
    samples = np.column_stack([np.arange(101.0), np.full(101, np.nan)])
    samples[0, 0] = np.nan
    low, high = stats.percentile_interval(samples, confidence=0.9)
    assert low[0] == pytest.approx(1 + 0.05 * 99)
    assert high[0] == pytest.approx(1 + 0.95 * 99)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_bad_confidence_and_replicates() -> None:
    with pytest.raises(ValueError, match=re.escape(stats.ERR_CONFIDENCE.format(value=1.5))):
        stats.percentile_interval(np.zeros((3, 1)), confidence=1.5)
    with pytest.raises(ValueError, match=re.escape(stats.ERR_REPLICATES.format(value=-1))):
        stats.bootstrap_counts(np.ones((1, 2, 2), dtype=np.int64), replicates=-1, seed=0)


@pytest.mark.parametrize(
    ("broken", "fixed", "p"),
    [
        (0, 0, 1.0),
        (1, 0, 1.0),  # 2 * P(X <= 0), X ~ Bin(1, 1/2) = 1
        (10, 0, 2 / 1024),
        (5, 2, 2 * (1 + 7 + 21) / 128),
        (2, 5, 2 * (1 + 7 + 21) / 128),
    ],
)
def test_mcnemar_exact(broken: int, fixed: int, p: float) -> None:
    assert stats.mcnemar_exact(broken, fixed) == pytest.approx(p)
