"""Markdown tables in the thesis's layouts (tables 4.1-4.5), each cell "mean [95 % interval]".

Pure: the functions take :class:`~qbias_check.experiments.aggregate.Estimate` values keyed by
what they measure and return Markdown text, so the layouts are testable with fake numbers.
Rates are printed in percent (the thesis does); CEV as a plain number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from qbias_check.experiments.aggregate import Estimate

# Table 4.1 columns: overall, then the sub-groups and their intersections.
SUBGROUPS = ("Overall", "M", "F", "Y", "O", "MY", "MO", "FY", "FO")
SUBGROUP_RATES = ("FPR", "FNR")
# (block title, key part) of table 4.1, in the thesis's order.
SUBGROUP_BLOCKS = (
    ("Baseline", "float"),
    ("Absolute change", "change"),
    ("Relative increase", "relative"),
)

# Tables 4.2-4.5: (summary key, row label, True when higher is better, printed in percent).
METRIC_ROWS: tuple[tuple[str, str, bool, bool], ...] = (
    ("accuracy_float", "Floating-point accuracy", True, True),
    ("accuracy_int8", "Quantized accuracy", True, True),
    ("cie_fraction", "CIE fraction", False, True),
    ("fpr_variance_increase", "FPR variance increase", False, True),
    ("fnr_variance_increase", "FNR variance increase", False, True),
    ("fpr_max_min_increase", "FPR Max-Min increase", False, True),
    ("fnr_max_min_increase", "FNR Max-Min increase", False, True),
    ("cev", "CEV", False, False),
)
CHANGE_ROWS = METRIC_ROWS[1:]


def cell(estimate: Estimate | None, *, percent: bool = True, bold: bool = False) -> str:
    """``"2.35% [1.90, 2.80]"``; ``n/a`` for a missing or NaN value; no interval for one seed."""
    if estimate is None or math.isnan(estimate.mean):
        return "n/a"
    scale, unit, digits = (100.0, "%", 2) if percent else (1.0, "", 4)
    text = f"{estimate.mean * scale:.{digits}f}{unit}"
    if bold:
        text = f"**{text}**"
    if not math.isnan(estimate.low):
        text += f" [{estimate.low * scale:.{digits}f}, {estimate.high * scale:.{digits}f}]"
    return text


def markdown(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def subgroup_table(values: Mapping[str, Estimate]) -> str:
    """Thesis table 4.1: FPR and FNR of the float model, their absolute and relative change.

    ``values`` maps ``"{fpr|fnr}.{float|change|relative}.{subgroup}"`` (subgroups as in
    :data:`SUBGROUPS`) to estimates; missing cells print ``n/a``.
    """
    rows: list[list[str]] = []
    for title, part in SUBGROUP_BLOCKS:
        model = "Baseline" if part == "float" else "Quantized"
        if part != "float":
            rows.append([f"*{title}*", *[""] * (len(SUBGROUPS) + 1)])
        for rate in SUBGROUP_RATES:
            rows.append(
                [
                    model,
                    rate,
                    *(cell(values.get(f"{rate.lower()}.{part}.{g}")) for g in SUBGROUPS),
                ]
            )
    return markdown(["Model", "Metric", *SUBGROUPS], rows)


def _best(candidates: Sequence[Estimate | None], higher: bool) -> int | None:
    means = [c.mean if c is not None else math.nan for c in candidates]
    finite = [(m, i) for i, m in enumerate(means) if not math.isnan(m)]
    if len(finite) < 2:
        return None
    return (max if higher else min)(finite)[1]


def metric_table(
    values: Mapping[tuple[str, str], Estimate],
    models: Sequence[str],
    *,
    float_models: Sequence[str] | None = None,
) -> str:
    """Thesis tables 4.2, 4.3 and 4.5: rows "Metric | Model | Value", best value in bold.

    ``values`` maps ``(summary key, model)`` to estimates. ``float_models`` lists the rows of
    "Floating-point accuracy" when they differ from ``models`` (table 4.5: one float model
    shared by PTQ and QAT).
    """
    rows: list[list[str]] = []
    for key, label, higher, percent in METRIC_ROWS:
        names = list(float_models if key == "accuracy_float" and float_models else models)
        found = [values.get((key, m)) for m in names]
        best = _best(found, higher)
        for i, (model, estimate) in enumerate(zip(names, found, strict=True)):
            rows.append(
                [
                    label if i == 0 else "",
                    model,
                    cell(estimate, percent=percent, bold=i == best),
                ]
            )
    return markdown(["Metric", "Model", "Value"], rows)


def postprocess_tables(
    float_accuracy: Mapping[str, Estimate],
    values: Mapping[tuple[str, str, str], Estimate],
    models: Sequence[str],
    methods: Sequence[str],
) -> str:
    """Thesis table 4.4: float accuracy per model, then every metric per model and method.

    ``values`` maps ``(summary key, model, method)`` to estimates; the best method of each
    model and metric is in bold.
    """
    first = markdown(
        ["", "Model", "Floating-point model"],
        [
            ["Floating-point accuracy" if i == 0 else "", m, cell(float_accuracy.get(m))]
            for i, m in enumerate(models)
        ],
    )
    rows: list[list[str]] = []
    for key, label, higher, percent in CHANGE_ROWS:
        for i, model in enumerate(models):
            found = [values.get((key, model, method)) for method in methods]
            best = _best(found, higher)
            rows.append(
                [
                    label if i == 0 else "",
                    model,
                    *(cell(e, percent=percent, bold=j == best) for j, e in enumerate(found)),
                ]
            )
    return first + "\n" + markdown(["Metric", "Model", *methods], rows)


DIFFERENCE_PARTS = ("float", "int8", "change")
DIFFERENCE_METRICS = (("accuracy", "Δ accuracy"), ("fnr", "Δ FNR"), ("fpr", "Δ FPR"))


def difference_table(
    values: Mapping[tuple[str, str, str, str, str], Estimate],
    attributes: Mapping[str, str],
    models: Sequence[str],
    classes: Sequence[str],
) -> str:
    """Thesis figures 4.12-4.17 as a table: signed group differences before and after int8.

    ``values`` maps ``(attribute, class or "*", metric, model, part)`` with ``metric`` in
    accuracy/fnr/fpr and ``part`` in float/int8/change to estimates; ``attributes`` maps an
    attribute to how its difference is taken (``"male - female"``). Accuracy is over all
    classes ("*"); FNR and FPR are per class.
    """
    rows: list[list[str]] = []
    for attribute, how in attributes.items():
        for metric, label in DIFFERENCE_METRICS:
            scopes = ["*"] if metric == "accuracy" else list(classes)
            for scope in scopes:
                for model in models:
                    rows.append(
                        [
                            attribute,
                            f"{label} ({how})",
                            "all" if scope == "*" else scope,
                            model,
                            *(
                                cell(values.get((attribute, scope, metric, model, part)))
                                for part in DIFFERENCE_PARTS
                            ),
                        ]
                    )
    return markdown(["Attribute", "Difference", "Class", "Model", "Float", "Int8", "Change"], rows)
