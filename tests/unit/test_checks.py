"""Check expansion (ids, overrides, unknown names) and verdicts under the three gate modes."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from qbias_check import compare
from qbias_check.checks import FAILED, PASSED, SKIPPED, Check, expand, judge
from qbias_check.thresholds import ConfigError, Statistics, parse

CONFIG = """
[[model]]
name = "m"
reference = "f.keras"
[limits]
accuracy_drop = 0.02
[limits.per_class]
fnr_increase = 0.05
[limits.class.b]
fnr_increase = 0.2
[limits.per_attribute]
fnr_gap_increase = 0.05
accuracy_gap_increase = 0.03
"""


def test_expansion_gives_sorted_readable_ids_with_overrides() -> None:
    spec = parse(CONFIG, source="t.toml", base=Path("."))
    checks = expand(spec, ["a", "b"], ["male"])
    assert [c.id for c in checks] == sorted(c.id for c in checks)
    ids = {c.id: c.limit for c in checks}
    assert ids == {
        "m::accuracy_drop": 0.02,
        "m::class[a]::fnr_increase": 0.05,
        "m::class[b]::fnr_increase": 0.2,
        "m::male::accuracy_gap_increase": 0.03,
        "m::male[a]::fnr_gap_increase": 0.05,
        "m::male[b]::fnr_gap_increase": 0.05,
    }


def test_limits_for_unknown_classes_or_attributes_are_errors() -> None:
    spec = parse(CONFIG, source="t.toml", base=Path("."))
    with pytest.raises(
        ConfigError,
        match=re.escape("t.toml: limits.class.b: the eval set has no class 'b'; it has a, c"),
    ):
        expand(spec, ["a", "c"], [])


@pytest.fixture(scope="module")
def comparison():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    ref = np.where(rng.random(2000) < 0.9, y, 1 - y)
    q = np.where(rng.random(2000) < 0.97, ref, 1 - ref)  # about 3 % flips
    group = rng.choice(["f", "m"], 2000)
    return compare(y, ref, q, classes=["a", "b"], attributes={"male": group}, bootstrap=300)


@pytest.mark.parametrize(
    ("gate", "limit_vs_interval", "outcome"),
    [
        ("estimate", "below_low", FAILED),
        ("estimate", "between", None),  # depends on the estimate: checked below
        ("estimate", "above_high", PASSED),
        ("significant", "below_low", FAILED),
        ("significant", "between", PASSED),
        ("assured", "between", FAILED),
        ("assured", "above_high", PASSED),
    ],
)
def test_gate_modes(comparison, gate: str, limit_vs_interval: str, outcome: str | None) -> None:  # type: ignore[no-untyped-def]
    low, high = comparison.interval("cie_fraction")
    estimate = comparison.estimate("cie_fraction")
    limit = {"below_low": low - 1e-6, "between": (low + estimate) / 2, "above_high": high + 1e-6}[
        limit_vs_interval
    ]
    verdict = judge(
        Check("m", "", "cie_fraction", limit), comparison, Statistics(gate=gate, min_support=1)
    )
    expected = outcome or (FAILED if estimate > limit else PASSED)
    assert verdict.outcome == expected
    assert verdict.estimate == estimate and verdict.interval == (low, high)


def test_thin_support_skips_with_counts(comparison) -> None:  # type: ignore[no-untyped-def]
    stats = Statistics(min_support=10_000)
    verdict = judge(Check("m", "class[a]", "fnr_increase", 0.1), comparison, stats)
    assert verdict.outcome == SKIPPED
    assert verdict.reason.startswith("insufficient support (n=") and verdict.reason.endswith(
        "< 10000)"
    )
    verdict = judge(Check("m", "male[a]", "fnr_gap_increase", 0.1), comparison, stats)
    assert verdict.outcome == SKIPPED and "f n=" in verdict.reason and "m n=" in verdict.reason
    stats = replace(stats, min_support=1)
    assert (
        judge(Check("m", "male", "accuracy_gap_increase", 1.0), comparison, stats).outcome == PASSED
    )


def test_a_nan_estimate_skips_with_the_note() -> None:
    c = compare([0, 0, 2, 2], [0, 1, 2, 2], [0, 0, 2, 1], classes=["a", "b", "c"], bootstrap=20)
    verdict = judge(Check("m", "class[b]", "fnr_increase", 0.1), c, Statistics(min_support=0))
    assert verdict.outcome == SKIPPED and "no examples of this class" in verdict.reason
