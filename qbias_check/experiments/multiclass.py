"""The five-class hair-colour experiments (thesis 4.2-4.4): architectures, hyperparameters,
post-processing, QAT and protected attributes.

Each evaluates "candidates" (a float model and an int8 version of it) per seed on the test
split, aggregates every number across seeds, and writes the thesis's table layout.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from qbias_check.experiments import results, tables, trials
from qbias_check.experiments.aggregate import Estimate, aggregate
from qbias_check.experiments.data import Splits, load_splits
from qbias_check.experiments.training import describe_network

# Predictions of one candidate on the test split: (float scores, int8-side scores).
Candidate = Callable[[int], tuple[np.ndarray, np.ndarray]]

POST_METHODS = ("PTQ", "Post-processing", "Balanced post-processing")
ATTRIBUTE_LABELS = {"male": "male - female", "young": "young - old"}


def _splits(ctx: results.Context) -> Splits:
    return load_splits(ctx.data, "hair", ctx.budget)


def _ptq(ctx: results.Context, splits: Splits, recipe: str) -> Candidate:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        t = trials.trial(trials.RECIPES[recipe], splits, ctx.budget, seed)
        return t.scores("test", "float"), t.scores("test", "int8")

    return run


def _qat(ctx: results.Context, splits: Splits, recipe: str) -> Candidate:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        from qbias_check.experiments.training import predict_int8

        t = trials.trial(trials.RECIPES[recipe], splits, ctx.budget, seed)
        flatbuffer, _ = trials.qat_int8(t, ctx.budget)
        return t.scores("test", "float"), predict_int8(flatbuffer, np.asarray(splits.test.x))

    return run


def _evaluate(
    ctx: results.Context, splits: Splits, candidates: Mapping[str, Candidate]
) -> dict[str, dict[str, Estimate]]:
    """Every candidate on every seed -> across-seed estimates of every number."""
    out = {}
    for label, candidate in candidates.items():
        per_seed = [
            trials.numbers(trials.comparison(splits, *candidate(seed))) for seed in ctx.seeds
        ]
        out[label] = aggregate(per_seed, confidence=results.CONFIDENCE)
    return out


def _networks(ctx: results.Context, recipes: Sequence[str]) -> dict[str, str]:
    b = ctx.budget
    return {
        name: describe_network(
            trials.RECIPES[name].architecture,
            alpha_v2=b.alpha_v2,
            alpha_v3=b.alpha_v3,
            width=b.resnet_width,
        )
        for name in recipes
    }


def _settings(ctx: results.Context, splits: Splits, recipes: Sequence[str]) -> dict[str, Any]:
    """Recipe and per-seed training record of every float model used."""
    out = {}
    for name in recipes:
        records = []
        for seed in ctx.seeds:
            t = trials.trial(trials.RECIPES[name], splits, ctx.budget, seed)
            record = {"seed": seed, "seconds": round(t.seconds, 1), **t.training}
            if t.qat is not None:
                record["qat"] = t.qat[1]
            records.append(record)
        out[name] = {"recipe": trials.RECIPES[name].to_dict(), "training": records}
    return out


def _summary_values(
    agg: Mapping[str, Mapping[str, Estimate]], labels: Mapping[str, str]
) -> dict[tuple[str, str], Estimate]:
    """``(summary key, table row name) -> estimate`` for :func:`tables.metric_table`."""
    return {
        (key, row): agg[label][key]
        for label, row in labels.items()
        for key, *_ in tables.METRIC_ROWS
        if key in agg[label]
    }


def _finish(
    ctx: results.Context,
    splits: Splits,
    recipes: Sequence[str],
    tables_md: Mapping[str, str],
    agg: Mapping[str, Mapping[str, Estimate]],
    kinds: Sequence[str],
    notes: Sequence[str] = (),
    tsne: Mapping[str, str] | None = None,
) -> Path:
    """Figures, tables and JSON of an experiment; ``tsne`` maps recipe name -> figure label."""
    groups = {a: sorted(set(splits.test.attributes[a].tolist())) for a in results.FIGURE_ATTRIBUTES}
    reports = {
        label: results.report_dict(label, numbers, splits.classes, groups)
        for label, numbers in agg.items()
    }
    pngs, figure_notes = results.figures(reports, kinds)
    if tsne:
        tsne_pngs, tsne_notes = _tsne(ctx, splits, tsne)
        pngs.update(tsne_pngs)
        figure_notes += tsne_notes
    return results.write(
        ctx,
        splits=splits.describe(),
        networks=_networks(ctx, recipes),
        settings=_settings(ctx, splits, recipes),
        tables=tables_md,
        results=agg,
        figures_png=pngs,
        notes=[*notes, *figure_notes],
    )


def _tsne(
    ctx: results.Context, splits: Splits, labels: Mapping[str, str]
) -> tuple[dict[str, bytes], list[str]]:
    """Thesis 3.4.6, figures 4.5-4.7: t-SNE of penultimate features, float vs int8, first seed.

    The int8 side is read from inside the PTQ model the tables use (the head's input tensor),
    rather than from a separately quantized headless model as in the thesis: same calibration,
    same layer. Flips are the int8 runner's predictions, as in the tables.
    """
    try:
        from qbias_check import plots

        seed = ctx.seeds[0]
        test = splits.test
        n = min(len(test.y), ctx.budget.tsne_points)
        keep = np.sort(np.random.default_rng(seed).choice(len(test.y), size=n, replace=False))
        x = np.asarray(test.x)[keep].astype(np.float32)
        out: dict[str, bytes] = {}
        for name, label in labels.items():
            t = trials.trial(trials.RECIPES[name], splits, ctx.budget, seed)
            float_features = plots.penultimate_features(t.model, x)
            with tempfile.TemporaryDirectory() as tmp:
                # The LiteRT interpreter with preserved tensors loads from a file only.
                path = Path(tmp) / "int8.tflite"
                path.write_bytes(t.int8)
                int8_features = plots.penultimate_features(path, x)
            flipped = t.scores("test", "float")[keep].argmax(axis=1) != t.scores("test", "int8")[
                keep
            ].argmax(axis=1)
            out[results.tsne_name(label)] = plots.tsne(
                float_features,
                int8_features,
                np.asarray(test.y)[keep],
                flipped,
                splits.classes,
                seed=seed,
                max_points=n,
                title=label,
            )
        return out, []
    except ImportError as exc:
        return {}, [f"no t-SNE figures: {exc}"]


def architectures(ctx: results.Context) -> Path:
    """Table 4.2, figures 4.1-4.2 and a t-SNE per model: MobileNetV2, V3Small, V3Small
    minimalistic under PTQ."""
    labels = {"V2": "V2", "V3Small": "V3Small", "V3Small minimalistic": "V3Small Minimalistic"}
    return _ptq_study(ctx, labels, "Table 4.2")


def hyperparameters(ctx: results.Context) -> Path:
    """Table 4.3 and figures 4.3-4.7: V3Small baseline, L1 and class weighting under PTQ."""
    labels = {
        "V3Small": "Baseline",
        "V3Small L1": "L1",
        "V3Small class weighting": "Class weighting",
    }
    return _ptq_study(ctx, labels, "Table 4.3")


def _ptq_study(ctx: results.Context, labels: dict[str, str], title: str) -> Path:
    """Train each recipe in ``labels`` (recipe -> column), quantize by PTQ, and write one table,
    the per-class figures and a t-SNE per model."""
    splits = _splits(ctx)
    agg = _evaluate(ctx, splits, {row: _ptq(ctx, splits, name) for name, row in labels.items()})
    table = tables.metric_table(_summary_values(agg, {r: r for r in agg}), list(agg))
    return _finish(
        ctx, splits, list(labels), {title: table}, agg, ("rates", "changes"), tsne=labels
    )


def qat(ctx: results.Context) -> Path:
    """Table 4.5 and figures 4.10-4.11: PTQ vs QAT of the same V3Small minimalistic model."""
    splits = _splits(ctx)
    name = "V3Small minimalistic"
    agg = _evaluate(ctx, splits, {"PTQ": _ptq(ctx, splits, name), "QAT": _qat(ctx, splits, name)})
    values = _summary_values(agg, {"PTQ": "PTQ", "QAT": "QAT"})
    # One float model serves both: its accuracy is one row, "Baseline", as in the thesis.
    values[("accuracy_float", "Baseline")] = agg["PTQ"]["accuracy_float"]
    table = tables.metric_table(values, ["PTQ", "QAT"], float_models=["Baseline"])
    return _finish(ctx, splits, [name], {"Table 4.5": table}, agg, ("rates", "changes"))


def postprocess(ctx: results.Context) -> Path:
    """Table 4.4: PTQ, PTQ + corrector, PTQ + class-balanced corrector, for four setups.

    The correctors (XGBoost on the int8 scores, predicting the float model's label; thesis
    3.4.7) train on the training split, which is disjoint from the test split they are
    evaluated on: 5,000 examples of the natural distribution, or 1,000 per true class
    (scaled by the budget).
    """
    splits = _splits(ctx)
    labels = {
        "V2": "V2",
        "V3Small": "V3 baseline",
        "V3Small L1": "V3 L1",
        "V3Small class weighting": "V3 class weighting",
    }
    notes: list[str] = []
    candidates: dict[str, Candidate] = {}
    for name, row in labels.items():
        candidates[f"{row} / PTQ"] = _ptq(ctx, splits, name)
        for balanced, method in ((False, POST_METHODS[1]), (True, POST_METHODS[2])):
            candidates[f"{row} / {method}"] = _corrected(ctx, splits, name, balanced, notes)
    agg = _evaluate(ctx, splits, candidates)
    values = {
        (key, row, method): agg[f"{row} / {method}"][key]
        for row in labels.values()
        for method in POST_METHODS
        for key, *_ in tables.CHANGE_ROWS
    }
    float_accuracy = {row: agg[f"{row} / PTQ"]["accuracy_float"] for row in labels.values()}
    table = tables.postprocess_tables(float_accuracy, values, list(labels.values()), POST_METHODS)
    return _finish(ctx, splits, list(labels), {"Table 4.4": table}, agg, ("changes",), notes)


def _corrected(
    ctx: results.Context, splits: Splits, recipe: str, balanced: bool, notes: list[str]
) -> Candidate:
    def run(seed: int) -> tuple[np.ndarray, np.ndarray]:
        from qbias_check.mitigation.corrector import train_corrector

        b = ctx.budget
        t = trials.trial(trials.RECIPES[recipe], splits, b, seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            corrector = train_corrector(
                t.scores("train", "int8"),
                t.scores("train", "float").argmax(axis=1),
                balanced=balanced,
                per_class=b.corrector_per_class,
                samples=b.corrector_samples,
                seed=seed,
                y_true=splits.train.y,
                trained_on=f"{splits.train.source} (training split, disjoint from test)",
                num_boost_round=b.corrector_rounds,
            )
        kind = "balanced corrector" if balanced else "corrector"
        notes.extend(f"{recipe}, seed {seed}, {kind}: {w.message}" for w in caught)
        return t.scores("test", "float"), corrector.predict_scores(t.scores("test", "int8"))

    return run


def attributes(ctx: results.Context) -> Path:
    """Figures 4.12-4.17 as tables: accuracy, FNR and FPR differences by gender and age.

    The thesis's five models: V2, V3Small baseline, L1 and class weighting under PTQ, and
    V3Small minimalistic under QAT. Differences are second group minus first
    (male - female, young - old), before and after int8.
    """
    splits = _splits(ctx)
    candidates: dict[str, Candidate] = {
        "V2": _ptq(ctx, splits, "V2"),
        "V3 baseline": _ptq(ctx, splits, "V3Small"),
        "V3 L1": _ptq(ctx, splits, "V3Small L1"),
        "V3 class weighting": _ptq(ctx, splits, "V3Small class weighting"),
        "V3 minimalistic QAT": _qat(ctx, splits, "V3Small minimalistic"),
    }
    agg = _evaluate(ctx, splits, candidates)
    values: dict[tuple[str, str, str, str, str], Estimate] = {}
    for model, numbers in agg.items():
        for attribute in ATTRIBUTE_LABELS:
            for part in tables.DIFFERENCE_PARTS:
                key = f"{attribute}.accuracy_difference_{part}"
                values[(attribute, "*", "accuracy", model, part)] = numbers[key]
                for c in splits.classes:
                    for rate in ("fnr", "fpr"):
                        key = f"{attribute}[{c}].{rate}_difference_{part}"
                        values[(attribute, c, rate, model, part)] = numbers[key]
    table = tables.difference_table(values, ATTRIBUTE_LABELS, list(agg), splits.classes)
    recipes = ["V2", "V3Small", "V3Small L1", "V3Small class weighting", "V3Small minimalistic"]
    return _finish(
        ctx,
        splits,
        recipes,
        {"Figures 4.12-4.17: group differences before and after int8": table},
        agg,
        ("gaps",),
    )
