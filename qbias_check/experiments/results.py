"""What an experiment writes: ``tables.md``, ``results.json`` and ``figures/*.png``
(``figures/tsne_<model>.png`` for the t-SNE figures, first seed only).

Figures come from :mod:`qbias_check.plots`, fed with report dicts in the gate's format whose
numbers are means over seeds and whose intervals are the across-seed t-intervals.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbias_check.atomic import write_bytes, write_text
from qbias_check.experiments.aggregate import Estimate
from qbias_check.experiments.config import Budget, DataSpec

CONFIDENCE = 0.95
FIGURE_ATTRIBUTES = ("male", "young")


@dataclass(frozen=True)
class Context:
    """One experiment run: its name, data, budget, seeds and output folder."""

    name: str
    description: str
    data: DataSpec
    budget: Budget
    seeds: tuple[int, ...]
    folder: Path


def report_dict(
    label: str,
    agg: Mapping[str, Estimate],
    classes: Sequence[str],
    groups: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
    """A report dict in the gate's format (``Comparison.to_dict()``) from across-seed numbers."""

    def mean(key: str) -> float:
        e = agg.get(key)
        return math.nan if e is None else e.mean

    def bounds(key: str) -> tuple[float, float]:
        e = agg.get(key)
        return (math.nan, math.nan) if e is None else (e.low, e.high)

    per_class = []
    for c in classes:
        row: dict[str, Any] = {"class": c, "support": round(mean(f"class[{c}].support"))}
        for rate in ("fnr", "fpr"):
            for part in ("float", "int8", "increase"):
                key = f"class[{c}].{rate}_{part}"
                row[f"{rate}_{part}"] = mean(key)
                row[f"{rate}_{part}_low"], row[f"{rate}_{part}_high"] = bounds(key)
        per_class.append(row)
    gaps = []
    for attribute in groups:
        scopes = [(c, rate) for c in classes for rate in ("fnr", "fpr")] + [("*", "accuracy")]
        for scope, rate in scopes:
            prefix = attribute if scope == "*" else f"{attribute}[{scope}]"
            low, high = bounds(f"{prefix}.{rate}_gap_increase")
            gap: dict[str, Any] = {"attribute": attribute, "class": scope, "metric": rate}
            for part in ("float", "int8", "increase"):
                gap[f"gap_{part}"] = mean(f"{prefix}.{rate}_gap_{part}")
            gap["low"], gap["high"] = low, high
            for part in ("float", "int8", "change"):
                key = f"{prefix}.{rate}_difference_{part}"
                gap[f"difference_{part}"] = mean(key)
                gap[f"difference_{part}_low"], gap[f"difference_{part}_high"] = bounds(key)
            gaps.append(gap)
    n = sum(row["support"] for row in per_class)
    return {
        "model": label,
        "n": n,
        "confidence": CONFIDENCE,
        "classes": list(classes),
        "groups": {a: list(g) for a, g in groups.items()},
        "per_class": per_class,
        "gaps": gaps,
    }


def figures(
    reports: Mapping[str, Mapping[str, Any]], kinds: Sequence[str]
) -> tuple[dict[str, bytes], list[str]]:
    """PNG figures per setting (``kinds``: ``rates``, ``changes``, ``gaps``), and notes.

    Without matplotlib or :mod:`qbias_check.plots` the run still writes its tables and JSON;
    a note says why there are no figures.
    """
    try:
        from qbias_check import plots

        out: dict[str, bytes] = {}
        for label, data in reports.items():
            stem = _slug(label)
            if "rates" in kinds:
                out[f"{stem}_fnr_per_class.png"] = plots.per_class_rates(data, "fnr")
                out[f"{stem}_fpr_per_class.png"] = plots.per_class_rates(data, "fpr")
            if "changes" in kinds:
                out[f"{stem}_changes_per_class.png"] = plots.per_class_changes(data)
            if "gaps" in kinds:
                for attribute in FIGURE_ATTRIBUTES:
                    out[f"{stem}_gaps_{attribute}.png"] = plots.attribute_gaps(data, attribute)
        return out, []
    except (ImportError, AttributeError) as exc:
        return {}, [f"no figures: {exc}"]


def write(
    ctx: Context,
    *,
    splits: Mapping[str, Any],
    networks: Mapping[str, str],
    settings: Mapping[str, Any],
    tables: Mapping[str, str],
    results: Mapping[str, Mapping[str, Estimate]],
    figures_png: Mapping[str, bytes],
    notes: Sequence[str] = (),
) -> Path:
    """Write tables.md, results.json and the figures into ``ctx.folder``; return the folder."""
    folder = ctx.folder
    for name, png in figures_png.items():
        write_bytes(folder / "figures" / name, png)
    header = [
        f"# Experiment `{ctx.name}`: {ctx.description}",
        "",
        f"- data: **{ctx.data.label}** (task {splits['task']}; train {splits['train']['n']}, "
        f"validation {splits['val']['n']}, test {splits['test']['n']} images)",
        f"- budget: `{ctx.budget.name}` ({ctx.budget.description})",
        f"- seeds: {', '.join(str(s) for s in ctx.seeds)}; each cell is the mean over seeds "
        f"with its {round(CONFIDENCE * 100)} % t-interval in brackets (none with one seed)",
        *(f"- {label}: {text}" for label, text in networks.items()),
        *(f"- note: {n}" for n in notes),
        "",
    ]
    body = []
    for title, table in tables.items():
        body += [f"## {title}", "", table]
    if figures_png:
        body += ["## Figures", ""] + [f"![{n}](figures/{n})" for n in sorted(figures_png)] + [""]
    write_text(folder / "tables.md", "\n".join(header + body))
    record = {
        "experiment": ctx.name,
        "description": ctx.description,
        "data": dict(splits),
        "budget": ctx.budget.to_dict(),
        "seeds": list(ctx.seeds),
        "confidence": CONFIDENCE,
        "interval": "Student t over seeds (NaN/None with one seed)",
        "networks": dict(networks),
        "settings": dict(settings),
        "tables": dict(tables),
        "results": {
            label: {key: e.to_dict() for key, e in numbers.items()}
            for label, numbers in results.items()
        },
        "figures": sorted(figures_png),
        "notes": list(notes),
    }
    text = json.dumps(_finite(record), indent=1, sort_keys=True, allow_nan=False)
    write_text(folder / "results.json", text + "\n")
    return folder


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None (JSON has neither)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def tsne_name(label: str) -> str:
    """File name of the t-SNE figure of one model: ``tsne_<model>.png``."""
    return f"tsne_{_slug(label)}.png"


def _slug(label: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in label).strip("_").lower()
