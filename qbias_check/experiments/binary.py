"""Blond vs not blond with a ResNet-18-style network under PTQ (thesis 4.1, table 4.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from qbias_check import metrics
from qbias_check.experiments import results, tables, trials
from qbias_check.experiments.aggregate import Estimate, aggregate
from qbias_check.experiments.data import load_splits
from qbias_check.experiments.training import describe_network

POSITIVE = "blond"
RECIPE = "ResNet-18"
# Table 4.1's sub-groups -> (attribute, group) in the comparison; None is the whole test set.
SUBGROUPS: dict[str, tuple[str, str] | None] = {
    "Overall": None,
    "M": ("male", "male"),
    "F": ("male", "female"),
    "Y": ("young", "young"),
    "O": ("young", "old"),
    "MY": ("male_x_young", "male/young"),
    "MO": ("male_x_young", "male/old"),
    "FY": ("male_x_young", "female/young"),
    "FO": ("male_x_young", "female/old"),
}
PARTS = {"float": "float", "change": "increase", "relative": "relative_change"}


def _key(subgroup: str, rate: str, part: str) -> str:
    where = SUBGROUPS[subgroup]
    prefix = f"class[{POSITIVE}]" if where is None else f"group[{where[0]}={where[1]}][{POSITIVE}]"
    return f"{prefix}.{rate}_{PARTS[part]}"


def binary(ctx: results.Context) -> Path:
    """FPR and FNR of blond per sub-group: float, absolute and relative change after int8."""
    splits = load_splits(ctx.data, "blond", ctx.budget)
    recipe = trials.RECIPES[RECIPE]
    per_seed = []
    settings = []
    for seed in ctx.seeds:
        t = trials.trial(recipe, splits, ctx.budget, seed)
        numbers = trials.numbers(
            trials.comparison(splits, t.scores("test", "float"), t.scores("test", "int8"))
        )
        for rate in ("fnr", "fpr"):
            before = numbers[f"class[{POSITIVE}].{rate}_float"]
            after = numbers[f"class[{POSITIVE}].{rate}_int8"]
            numbers[f"class[{POSITIVE}].{rate}_relative_change"] = float(
                metrics.relative_change(np.float64(before), np.float64(after))
            )
        per_seed.append(numbers)
        settings.append({"seed": seed, "seconds": round(t.seconds, 1), **t.training})
    agg = aggregate(per_seed, confidence=results.CONFIDENCE)
    values: dict[str, Estimate] = {
        f"{rate}.{part}.{g}": agg[_key(g, rate, part)]
        for g in SUBGROUPS
        for rate in ("fpr", "fnr")
        for part in PARTS
        if _key(g, rate, part) in agg
    }
    overview = tables.markdown(
        ["Model", "Floating-point accuracy", "Quantized accuracy", "CIE fraction"],
        [
            [
                RECIPE,
                tables.cell(agg["accuracy_float"]),
                tables.cell(agg["accuracy_int8"]),
                tables.cell(agg["cie_fraction"]),
            ]
        ],
    )
    groups = {a: sorted(set(splits.test.attributes[a].tolist())) for a in results.FIGURE_ATTRIBUTES}
    report = results.report_dict(RECIPE, agg, splits.classes, groups)
    pngs, notes = results.figures({RECIPE: report}, ("rates", "gaps"))
    b = ctx.budget
    network = describe_network(
        recipe.architecture, alpha_v2=b.alpha_v2, alpha_v3=b.alpha_v3, width=b.resnet_width
    )
    return results.write(
        ctx,
        splits=splits.describe(),
        networks={RECIPE: network},
        settings={RECIPE: {"recipe": recipe.to_dict(), "training": settings}},
        tables={
            "Accuracy and CIE fraction (thesis 4.1)": overview,
            "Table 4.1 (positive class: blond; FPR and FNR of blond)": tables.subgroup_table(
                values
            ),
        },
        results={RECIPE: agg},
        figures_png=pngs,
        notes=[
            "sub-groups: M male, F female, Y young, O old, MY/MO/FY/FO their intersections",
            *notes,
        ],
    )
