"""Render gate results: failure tables, the end-of-run summary, JSON and Markdown reports.

Summaries and files are rendered from the JSON-ready dict of a comparison (``to_dict()``), so the
pytest-xdist controller, which only sees what workers send, renders exactly what a worker would.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from qbias_check.atomic import write_text
from qbias_check.checks import FAILED, Check, Verdict
from qbias_check.comparison import Comparison

NEXT_STEP = (
    "next step: check the candidates side by side with `qbias-check mitigate` (QAT, the "
    "post-processing corrector, selective quantization), or retrain with class weighting; "
    "a wider eval set narrows the interval"
)

GATE_RULES = {
    "estimate": "fails when the estimate exceeds the limit",
    "significant": "fails when the whole interval lies above the limit",
    "assured": "passes only when the whole interval lies at or below the limit",
}


def fmt_number(value: Any, digits: int = 4) -> str:
    """A number for a table: integers as they are, NaN and None as ``n/a``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def fmt_interval(low: Any, high: Any) -> str:
    """An interval for a table, ``[-0.0123, +0.0456]``; ``n/a`` when a bound is missing."""
    if low is None or high is None or any(math.isnan(float(v)) for v in (low, high)):
        return "n/a"
    return f"[{low:+.4f}, {high:+.4f}]"


def failure_table(check: Check, verdict: Verdict, comparison: Comparison, gate: str) -> str:
    """Why a check failed: its numbers, the rows behind them and what to try next."""
    before, after = _float_int8(check, comparison)
    pct = round(comparison.confidence * 100)
    head = [
        check.quantity,
        fmt_number(before),
        fmt_number(after),
        fmt_number(verdict.estimate),
        fmt_number(check.limit),
        fmt_interval(*verdict.interval),
    ]
    return "\n".join(
        [
            f"{check.id}: change {verdict.estimate:+.4f}, limit {check.limit:.4f}; "
            f"gate '{gate}' {GATE_RULES[gate]}",
            tabulate(
                [head], headers=["metric", "float", "int8", "change", "limit", f"{pct} % interval"]
            ),
            "",
            _rows_behind(check, comparison),
            "",
            NEXT_STEP,
        ]
    )


def _float_int8(check: Check, comparison: Comparison) -> tuple[float | None, float | None]:
    """The float and int8 values whose change the check limits, where there are such values."""
    if check.metric == "accuracy_drop":
        return comparison.estimate("accuracy_float"), comparison.estimate("accuracy_int8")
    stem = check.quantity.removesuffix("_increase")
    names = [f"{stem}_float", f"{stem}_int8"]
    if all(n in comparison.estimates for n in names):
        return comparison.estimate(names[0]), comparison.estimate(names[1])
    return None, None


def _table(frame: Any) -> str:
    return tabulate(frame.to_dict(orient="records"), headers="keys", floatfmt=".4f")


def _rows_behind(check: Check, comparison: Comparison) -> str:
    """The classes or groups that the checked number is made of."""
    per_class = comparison.per_class.reset_index()
    rate = check.metric[:3] if check.metric[:3] in ("fnr", "fpr") else None
    if check.scope.startswith("class["):
        name = check.scope[len("class[") : -1]
        rows = per_class[per_class["class"] == name]
        return _table(
            rows[["class", "support", f"{rate}_float", f"{rate}_int8", "broken", "fixed"]]
        )
    if check.scope:  # an attribute, or an attribute x class
        attribute, _, rest = check.scope.partition("[")
        rows = comparison.per_group[comparison.per_group["attribute"] == attribute]
        if rest:
            rows = rows[rows["class"] == rest[:-1]]
            return _table(rows[["group", "class", "support", f"{rate}_float", f"{rate}_int8"]])
        sizes = rows.groupby("group", sort=False)["support"].sum().rename("support")
        accuracy = rows.drop_duplicates("group").set_index("group")
        return _table(accuracy[["accuracy_float", "accuracy_int8"]].join(sizes).reset_index())
    if rate is None:  # accuracy drop, CIE fraction, CEV: where the answers changed
        cols = [
            "class",
            "support",
            "fnr_float",
            "fnr_int8",
            "fpr_float",
            "fpr_int8",
            "broken",
            "fixed",
            "mcnemar_p",
        ]
        return _table(per_class[cols])
    cols = ["class", "support", f"{rate}_float", f"{rate}_int8", f"{rate}_increase"]
    rows = per_class[cols]
    if check.metric.endswith("max_min_increase"):
        # The classes at either end of the spread, before and after quantization.
        values = rows[[f"{rate}_float", f"{rate}_int8"]].to_numpy(dtype=float)
        ends = {*np.nanargmax(values, axis=0).tolist(), *np.nanargmin(values, axis=0).tolist()}
        rows = rows.iloc[sorted(ends)]
    return _table(rows.sort_values(f"{rate}_int8", ascending=False))


def check_record(check: Check, verdict: Verdict) -> dict[str, Any]:
    """A check and its verdict as a JSON-ready dict (also sent as pytest ``user_properties``)."""
    return {
        "id": check.id,
        "model": check.model,
        "metric": check.metric,
        "scope": check.scope or "model",
        "estimate": _finite(verdict.estimate),
        "interval": [_finite(v) for v in verdict.interval],
        "limit": check.limit,
        "outcome": verdict.outcome,
        "reason": verdict.reason,
    }


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


SUMMARY_ROWS = [
    ("accuracy_drop", "accuracy drop"),
    ("cie_fraction", "CIE fraction"),
    ("fnr_max_min_increase", "FNR Max-Min increase"),
    ("fpr_max_min_increase", "FPR Max-Min increase"),
    ("fnr_variance_increase", "FNR variance increase"),
    ("fpr_variance_increase", "FPR variance increase"),
    ("cev", "CEV"),
]


def summary_text(model: str, data: Mapping[str, Any], *, fmt: str = "simple") -> str:
    """The end-of-run summary of one model from its report dict (``report_dict``)."""
    s = data["summary"]
    pct = round(data["confidence"] * 100)
    lines = [
        f"{model}: accuracy {fmt_number(s['accuracy_float']['estimate'])} float -> "
        f"{fmt_number(s['accuracy_int8']['estimate'])} int8 on n = {data['n']} ({data['dataset']})",
        tabulate(
            [
                [label, fmt_number(s[k]["estimate"]), fmt_interval(*s[k]["interval"])]
                for k, label in SUMMARY_ROWS
            ],
            headers=["metric", "change", f"{pct} % interval"],
            tablefmt=fmt,
        ),
    ]
    # Only numbers with enough examples behind them: a thin group's gap is noise, not news.
    enough = data.get("min_support", 0)
    classes = [r for r in data["per_class"] if r["support"] >= enough]
    worst = sorted(classes, key=lambda r: -(r["fnr_increase"] or -math.inf))[:3]
    named = ", ".join(f"{r['class']} {fmt_number(r['fnr_increase'], 3)}" for r in worst)
    lines.append(f"worst classes (FNR increase): {named or f'none with n >= {enough}'}")
    thinnest = _thinnest_groups(data["per_group"])
    gaps = [
        g
        for g in data["gaps"]
        if g["gap_increase"] is not None and thinnest.get((g["attribute"], g["class"]), 0) >= enough
    ]
    if gaps:
        top = sorted(gaps, key=lambda g: -g["gap_increase"])[:3]
        lines.append(
            "largest gap increases: "
            + ", ".join(
                f"{g['attribute']}[{g['class']}] {g['metric']} {fmt_number(g['gap_increase'], 3)}"
                for g in top
            )
        )
    return "\n".join(lines)


def _thinnest_groups(per_group: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], int]:
    """The smallest group's support per (attribute, class), and per attribute over all classes
    under the class ``"*"``, as the gap table names them."""
    by_class: dict[tuple[str, str], list[int]] = {}
    totals: dict[tuple[str, str], int] = {}
    for r in per_group:
        by_class.setdefault((r["attribute"], r["class"]), []).append(r["support"])
        key = (r["attribute"], r["group"])
        totals[key] = totals.get(key, 0) + r["support"]
    thinnest = {key: min(sizes) for key, sizes in by_class.items()}
    for (attribute, _), size in totals.items():
        star = (attribute, "*")
        thinnest[star] = min(thinnest.get(star, size), size)
    return thinnest


def report_dict(evaluation_meta: Mapping[str, Any], comparison: Comparison) -> dict[str, Any]:
    """The JSON report of one model, before its checks are added."""
    return {**evaluation_meta, **comparison.to_dict(), "checks": []}


def markdown(model: str, data: Mapping[str, Any]) -> str:
    """A Markdown report: summary, failed and skipped checks, per-class table."""
    checks = data.get("checks", [])
    counts = {o: sum(c["outcome"] == o for c in checks) for o in ("passed", "failed", "skipped")}
    lines = [
        f"## qbias-check: {model}",
        "",
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
        f"(reference `{data['reference']}`, int8 `{data['quantized']}`)",
        "",
        *_corrector_lines(data.get("corrector")),
        summary_text(model, data, fmt="github"),
        "",
    ]
    notable = [c for c in checks if c["outcome"] != "passed"]
    if notable:
        lines += [checks_table(notable, fmt="github"), ""]
    rows = [
        [
            r["class"],
            r["support"],
            fmt_number(r["fnr_float"]),
            fmt_number(r["fnr_int8"]),
            fmt_number(r["fpr_float"]),
            fmt_number(r["fpr_int8"]),
        ]
        for r in data["per_class"]
    ]
    lines.append(
        tabulate(
            rows,
            headers=["class", "n", "FNR float", "FNR int8", "FPR float", "FPR int8"],
            tablefmt="github",
        )
    )
    return "\n".join(lines) + "\n"


def _corrector_lines(corrector: Mapping[str, Any] | None) -> list[str]:
    if not corrector:
        return []
    line = (
        f"int8 outputs pass through the corrector `{corrector['path']}`, "
        f"trained on {corrector['trained_on']}"
    )
    if corrector["trained_on_this_eval_set"]:
        line += " -- **the gate's own eval set: these numbers flatter it**"
    return [line, ""]


def checks_table(records: Iterable[Mapping[str, Any]], *, fmt: str = "simple") -> str:
    """One row per check: id, outcome, estimate, limit, interval and the reason of a skip."""
    rows = [
        [
            r["id"],
            r["outcome"],
            fmt_number(r["estimate"]),
            fmt_number(r["limit"]),
            fmt_interval(*r["interval"]),
            r["reason"],
        ]
        for r in records
    ]
    headers = ["check", "outcome", "estimate", "limit", "interval", "reason"]
    return tabulate(rows, headers=headers, tablefmt=fmt)


def write_reports(directory: Path, model: str, data: Mapping[str, Any]) -> list[Path]:
    """Write ``<model>.json``, ``<model>.md`` and ``<model>.html`` (with figures) into
    ``directory``; return their paths."""
    from qbias_check.html_report import write_html

    json_path, md_path = directory / f"{model}.json", directory / f"{model}.md"
    write_text(json_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    write_text(md_path, markdown(model, data))
    return [json_path, md_path, write_html(directory, model, data)]


def failed(records: Iterable[Mapping[str, Any]]) -> bool:
    """True when any check record failed."""
    return any(r["outcome"] == FAILED for r in records)
