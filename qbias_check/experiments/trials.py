"""One trial: a float model trained with one seed, its PTQ int8 build, and their test scores.

Trials are memoized per process, keyed by recipe, data, task, budget and seed, so
``qbias-check experiment all`` (or a test module) trains each float model once: V3Small
baseline serves the architecture, hyperparameter, post-processing and attribute experiments.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from qbias_check.comparison import Comparison, compare
from qbias_check.experiments import training
from qbias_check.experiments.config import Budget
from qbias_check.experiments.data import Splits

ATTRIBUTES = ("male", "young")
INTERSECTIONS = (("male", "young"),)


@dataclass(eq=False)
class Trial:
    """A trained float model, its PTQ int8 flatbuffer, and cached scores per split."""

    recipe: training.Recipe
    seed: int
    model: Any
    int8: bytes
    training: dict[str, Any]
    seconds: float
    splits: Splits
    qat: tuple[bytes, dict[str, Any]] | None = None
    _scores: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    def scores(self, part: str, which: str) -> np.ndarray:
        """Scores of the float (``"float"``) or int8 (``"int8"``) model on a split."""
        key = (part, which)
        if key not in self._scores:
            x = np.asarray(getattr(self.splits, part).x)
            if which == "float":
                self._scores[key] = training.predict(self.model, x)
            else:
                self._scores[key] = training.predict_int8(self.int8, x, name=self.recipe.name)
        return self._scores[key]


_TRIALS: dict[tuple[Any, ...], Trial] = {}


def trial(recipe: training.Recipe, splits: Splits, budget: Budget, seed: int) -> Trial:
    """Train (or reuse) the float model of ``recipe`` with ``seed`` and quantize it by PTQ."""
    key = (recipe, splits.data, splits.task, budget, seed)
    if key not in _TRIALS:
        _TRIALS[key] = _train(recipe, splits, budget, seed)
    return _TRIALS[key]


def _train(recipe: training.Recipe, splits: Splits, budget: Budget, seed: int) -> Trial:
    from qbias_check.artifacts import build_int8
    from qbias_check.mitigation.class_weights import class_weights
    from qbias_check.mitigation.l1 import with_l1_last_layer

    start = time.perf_counter()
    model = training.build_model(
        recipe.architecture,
        size=budget.size,
        n_classes=len(splits.classes),
        alpha_v2=budget.alpha_v2,
        alpha_v3=budget.alpha_v3,
        width=budget.resnet_width,
        seed=seed,
    )
    if recipe.l1:
        model = with_l1_last_layer(model, recipe.l1)
    weights = (
        class_weights(splits.train.y, n_classes=len(splits.classes))
        if recipe.class_weighting
        else None
    )
    history = training.train(
        model,
        (np.asarray(splits.train.x), splits.train.y),
        (np.asarray(splits.val.x), splits.val.y),
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        seed=seed,
        class_weight=weights,
        augment=recipe.augment,
    )
    # Thesis 3.4.4: calibrate on randomly chosen validation images.
    int8 = build_int8(
        model,
        np.asarray(splits.val.x).astype(np.float32),
        samples=budget.calibration,
        seed=seed,
    )
    return Trial(recipe, seed, model, int8, history, time.perf_counter() - start, splits)


def comparison(splits: Splits, pred_float: np.ndarray, pred_int8: np.ndarray) -> Comparison:
    """Float vs int8 on the test split, with gender, age and their intersection.

    No bootstrap: the intervals the thesis reports are across seeds (see ``aggregate``).
    """
    test = splits.test
    return compare(
        test.y,
        pred_float,
        pred_int8,
        classes=test.classes,
        attributes={a: test.attributes[a] for a in ATTRIBUTES},
        intersections=INTERSECTIONS,
        bootstrap=0,
    )


def numbers(result: Comparison) -> dict[str, float]:
    """Every number of a comparison as a flat dict: the named estimates plus group-level rates.

    Group rates are keyed ``group[male=female][blond].fnr_float`` (also ``_int8``,
    ``_increase``, ``_relative_change``; ``accuracy_float``/``_int8`` per group).
    """
    out = dict(result.estimates)
    for row in result.per_class.reset_index().to_dict(orient="records"):
        out[f"class[{row['class']}].support"] = float(row["support"])
    for row in result.per_group.to_dict(orient="records"):
        prefix = f"group[{row['attribute']}={row['group']}]"
        out[f"{prefix}.accuracy_float"] = float(row["accuracy_float"])
        out[f"{prefix}.accuracy_int8"] = float(row["accuracy_int8"])
        out[f"{prefix}[{row['class']}].support"] = float(row["support"])
        for rate in ("fnr", "fpr"):
            for part in ("float", "int8", "increase", "relative_change"):
                out[f"{prefix}[{row['class']}].{rate}_{part}"] = float(row[f"{rate}_{part}"])
    return out


# The float-model settings of thesis table 3.1, named once so that experiments share them.
RECIPES: dict[str, training.Recipe] = {
    r.name: r
    for r in (
        training.Recipe("ResNet-18", "ResNet-18", l1=0.001),
        training.Recipe("V2", "MobileNetV2", l1=0.01),
        training.Recipe("V3Small", "MobileNetV3Small"),
        training.Recipe("V3Small L1", "MobileNetV3Small", l1=0.01),
        training.Recipe("V3Small class weighting", "MobileNetV3Small", class_weighting=True),
        training.Recipe("V3Small minimalistic", "MobileNetV3Small-minimalistic", augment=True),
    )
}


def qat_int8(base: Trial, budget: Budget) -> tuple[bytes, dict[str, Any]]:
    """QAT of a copy of ``base``'s float model (thesis 3.4.5: same recipe, best on validation).

    Returns the full-integer flatbuffer and the fine-tuning history; memoized per trial.
    """
    from qbias_check.mitigation.qat import convert_qat, quantize_aware

    if base.qat is None:
        qat_model = quantize_aware(training.copy_model(base.model))
        history = training.train(
            qat_model,
            (np.asarray(base.splits.train.x), base.splits.train.y),
            (np.asarray(base.splits.val.x), base.splits.val.y),
            epochs=budget.qat_epochs,
            batch_size=budget.batch_size,
            seed=base.seed,
            augment=base.recipe.augment,
        )
        base.qat = (convert_qat(qat_model), history)
    return base.qat
