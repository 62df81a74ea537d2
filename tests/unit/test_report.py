"""Failure tables, summaries and Markdown from a real compare() on hand-made labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qbias_check import compare
from qbias_check.checks import FAILED, Check, Verdict
from qbias_check.report import check_record, failure_table, markdown, summary_text


@pytest.fixture(scope="module")
def comparison():  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 4000)
    # class 3 ("d") loses recall in int8; the others barely move
    ref = np.where(rng.random(4000) < 0.9, y, (y + 1) % 4)
    q = np.where((y == 3) & (rng.random(4000) < 0.3), 0, ref)
    group = np.where(rng.random(4000) < 0.5, "f", "m")
    return compare(y, ref, q, classes=list("abcd"), attributes={"sex": group}, bootstrap=100)


def fail(check: Check, comparison) -> str:  # type: ignore[no-untyped-def]
    verdict = Verdict(
        FAILED, comparison.estimate(check.quantity), comparison.interval(check.quantity)
    )
    return failure_table(check, verdict, comparison, "estimate")


def test_max_min_failure_shows_the_classes_at_either_end(comparison) -> None:  # type: ignore[no-untyped-def]
    text = fail(Check("m", "", "fnr_max_min_increase", 0.01), comparison)
    assert text.startswith("m::fnr_max_min_increase: change +0.")
    rows = text.split("\n\n")[1]
    assert "d " in rows  # the worst class after quantization
    assert len(rows.splitlines()) - 2 <= 4  # at most the ends before and after, not every class


def test_gap_failure_shows_each_group(comparison) -> None:  # type: ignore[no-untyped-def]
    text = fail(Check("m", "sex[d]", "fnr_gap_increase", 0.0), comparison)
    rows = text.split("\n\n")[1]
    assert "f " in rows and "m " in rows and "fnr_int8" in rows
    text = fail(Check("m", "sex", "accuracy_gap_increase", 0.0), comparison)
    assert "accuracy_float" in text.split("\n\n")[1]
    assert text.rstrip().endswith("narrows the interval")


def test_summary_and_markdown_render_from_the_json_dict(comparison) -> None:  # type: ignore[no-untyped-def]
    check = Check("m", "class[d]", "fnr_increase", 0.05)
    verdict = Verdict(
        FAILED, comparison.estimate(check.quantity), comparison.interval(check.quantity)
    )
    data = json.loads(
        json.dumps(
            {
                **comparison.to_dict(),
                "dataset": "d.npz",
                "reference": "f",
                "quantized": "q",
                "checks": [check_record(check, verdict)],
            }
        )
    )
    text = summary_text("m", data)
    assert text.startswith("m: accuracy 0.") and "worst classes (FNR increase): d 0.2" in text
    assert "largest gap increases: sex[" in text
    # classes and groups below min_support are left out of the summary's highlights
    thin = summary_text("m", {**data, "min_support": 10**6})
    assert "worst classes (FNR increase): none with n >= 1000000" in thin
    assert "largest gap" not in thin
    md = markdown("m", data)
    assert md.startswith("## qbias-check: m") and "0 passed, 1 failed, 0 skipped" in md
    assert any(
        line.startswith("| m::class[d]::fnr_increase ") and "| failed " in line
        for line in md.splitlines()
    )
