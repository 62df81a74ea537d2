"""Thesis table layouts and across-seed aggregation, with fake numbers (no TensorFlow)."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from pathlib import Path

import pytest

from qbias_check.experiments import BUDGETS, EXPERIMENTS, add_cli, run, tables
from qbias_check.experiments.aggregate import Estimate, across_seeds, aggregate


def est(mean: float, low: float = math.nan, high: float = math.nan) -> Estimate:
    return Estimate(mean, low, high, 1, (mean,))


def rows(markdown: str) -> list[list[str]]:
    """Cells of every line of a Markdown table (header included, rule excluded)."""
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in markdown.strip().splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


def test_across_seeds_is_a_student_t_interval() -> None:
    e = across_seeds([1.0, 3.0])
    # t(0.975, df=1) = 12.7062; sd = sqrt(2); half = t * sd / sqrt(2).
    assert e.mean == 2.0
    assert e.high - e.mean == pytest.approx(12.7062, abs=1e-3)
    assert e.low == pytest.approx(2.0 - 12.7062, abs=1e-3)


def test_one_seed_or_nan_seeds_give_no_interval() -> None:
    one = across_seeds([0.5])
    assert one.mean == 0.5 and math.isnan(one.low) and one.n == 1
    partial = across_seeds([0.2, math.nan, 0.4])
    assert partial.n == 2 and partial.mean == pytest.approx(0.3)
    assert math.isnan(across_seeds([math.nan]).mean)
    assert aggregate([{"a": 1.0}, {"b": 2.0}])["a"].n == 1


def test_cell_prints_percent_and_interval() -> None:
    assert tables.cell(est(0.0235, 0.019, 0.028)) == "2.35% [1.90, 2.80]"
    assert tables.cell(est(0.0941), percent=False) == "0.0941"
    assert tables.cell(est(0.5), bold=True) == "**50.00%**"
    assert tables.cell(None) == "n/a" and tables.cell(est(math.nan)) == "n/a"


def test_subgroup_table_has_the_layout_of_table_4_1() -> None:
    values = {
        f"{rate}.{part}.{g}": est(0.01 * i)
        for i, g in enumerate(tables.SUBGROUPS)
        for rate in ("fpr", "fnr")
        for part in ("float", "change", "relative")
    }
    del values["fnr.relative.MO"]
    cells = rows(tables.subgroup_table(values))
    assert cells[0] == ["Model", "Metric", "Overall", "M", "F", "Y", "O", "MY", "MO", "FY", "FO"]
    assert [r[:2] for r in cells[1:]] == [
        ["Baseline", "FPR"],
        ["Baseline", "FNR"],
        ["*Absolute change*", ""],
        ["Quantized", "FPR"],
        ["Quantized", "FNR"],
        ["*Relative increase*", ""],
        ["Quantized", "FPR"],
        ["Quantized", "FNR"],
    ]
    assert cells[1][3] == "1.00%"  # M is the second sub-group
    assert cells[-1][8] == "n/a"  # the missing MO cell


def test_metric_table_has_the_rows_of_table_4_2_and_bolds_the_best() -> None:
    models = ["V2", "V3Small", "V3Small Minimalistic"]
    values = {
        (key, m): est(0.1 * (i + 1)) for key, *_ in tables.METRIC_ROWS for i, m in enumerate(models)
    }
    cells = rows(tables.metric_table(values, models))
    assert cells[0] == ["Metric", "Model", "Value"]
    labels = [r[0] for r in cells[1:] if r[0]]
    assert labels == [label for _, label, *_ in tables.METRIC_ROWS]
    assert [r[1] for r in cells[1:4]] == models
    # Highest accuracy, lowest CIE fraction are bold.
    assert cells[3][2].startswith("**30.00%**")
    assert cells[7][2].startswith("**10.00%**")
    assert cells[-3][2] == "**0.1000**"  # CEV is a plain number


def test_metric_table_with_one_float_model_as_table_4_5() -> None:
    values = {(k, m): est(0.2) for k, *_ in tables.METRIC_ROWS for m in ("PTQ", "QAT")}
    values[("accuracy_float", "Baseline")] = est(0.9)
    cells = rows(tables.metric_table(values, ["PTQ", "QAT"], float_models=["Baseline"]))
    assert cells[1] == ["Floating-point accuracy", "Baseline", "90.00%"]
    assert cells[2][:2] == ["Quantized accuracy", "PTQ"] and cells[3][1] == "QAT"


def test_postprocess_tables_have_the_layout_of_table_4_4() -> None:
    models = ["V2", "V3 baseline"]
    methods = ["PTQ", "Post-processing", "Balanced post-processing"]
    values = {
        (k, m, method): est(0.1 + 0.1 * j)
        for k, *_ in tables.CHANGE_ROWS
        for m in models
        for j, method in enumerate(methods)
    }
    text = tables.postprocess_tables({"V2": est(0.9)}, values, models, methods)
    first, second = text.split("\n\n")
    assert rows(first)[0] == ["", "Model", "Floating-point model"]
    assert rows(first)[2] == ["", "V3 baseline", "n/a"]
    cells = rows(second)
    assert cells[0] == ["Metric", "Model", *methods]
    assert cells[1][0] == "Quantized accuracy" and cells[1][4] == "**30.00%**"
    assert cells[3][0] == "CIE fraction" and cells[3][2] == "**10.00%**"


def test_difference_table_lists_attribute_metric_class_model() -> None:
    values = {("male", "*", "accuracy", "V2", "change"): est(-0.01)}
    cells = rows(tables.difference_table(values, {"male": "male - female"}, ["V2"], ["a", "b"]))
    assert cells[0] == ["Attribute", "Difference", "Class", "Model", "Float", "Int8", "Change"]
    assert cells[1] == ["male", "Δ accuracy (male - female)", "all", "V2", "n/a", "n/a", "-1.00%"]
    assert len(cells) == 1 + 1 + 2 + 2  # accuracy, then FNR and FPR per class


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "nope"}, "unknown experiment 'nope'; known: binary, architectures"),
        ({"name": "qat", "budget": "huge"}, "unknown budget 'huge'; known: smoke, default, full"),
        ({"name": "qat", "data": "imagenet"}, "unknown data spec 'imagenet'"),
        ({"name": "qat", "data": "celeba:/no/such/dir"}, "is not a folder"),
        ({"name": "qat", "seeds": 0}, "seeds must be a positive integer"),
    ],
)
def test_run_rejects_unknown_names(kwargs: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        run(out=tmp_path, **kwargs)  # type: ignore[arg-type]


def test_cli_help_names_experiments_budgets_and_defaults() -> None:
    parser = argparse.ArgumentParser(prog="qbias-check")
    sub = add_cli(parser.add_subparsers(dest="command"))
    text = " ".join(sub.format_help().split())  # argparse wraps lines
    for word in [*EXPERIMENTS, *BUDGETS, "(default: synthetic)", "(default: default)", "all"]:
        assert word in text
    args = parser.parse_args(["experiment", "all", "--budget", "smoke", "--seeds", "2"])
    assert (args.name, args.budget, args.seeds, args.data) == ("all", "smoke", 2, "synthetic")


def test_importing_experiments_does_not_import_tensorflow() -> None:
    code = "import sys, qbias_check.experiments; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_celeba_spec_loads_capped_splits_in_memory(tmp_path: Path) -> None:
    from dataclasses import replace

    from qbias_check.experiments.config import parse_data
    from qbias_check.experiments.data import load_splits
    from tests.unit.test_celeba import write_tree

    root = write_tree(tmp_path / "celeba", rows=60)
    budget = replace(BUDGETS["smoke"], n=50, size=16)
    splits = load_splits(parse_data(f"celeba:{root}"), "blond", budget)
    assert [len(s) for s in (splits.train, splits.val, splits.test)] == [30, 10, 10]
    assert splits.test.x.shape == (10, 16, 16, 3)  # type: ignore[union-attr]
    described = splits.describe()
    assert described["spec"] == f"celeba:{root}"
    assert described["test"]["source"].startswith(f"celeba:{root}")
    assert set(splits.test.attributes) == {"male", "young"}
