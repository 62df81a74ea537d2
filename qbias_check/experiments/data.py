"""The train / validation / test splits an experiment trains and evaluates on.

Synthetic: ``budget.n`` images from the generator (data seed 0), split 60/20/20 as the thesis.
CelebA: the loader's random 60/20/20 split (seed 0), from which at most 60/20/20 % of
``budget.n`` images are drawn, decoded and resized. The split is the same for every training
seed, so seeds vary the networks (initialization, batches, calibration), not the data.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from qbias_check.datasets import EvalSet, split
from qbias_check.experiments.config import Budget, DataSpec, Task

FRACTIONS = (0.6, 0.2, 0.2)
DATA_SEED = 0


@dataclass(frozen=True, eq=False)
class Splits:
    """Train, validation and test sets of one task."""

    task: Task
    data: DataSpec
    train: EvalSet
    val: EvalSet
    test: EvalSet

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names."""
        return self.test.classes

    def describe(self) -> dict[str, Any]:
        """What the results record about the data."""
        return {
            "spec": self.data.label,
            "task": self.task,
            "classes": list(self.classes),
            **{
                part: {
                    "source": s.source,
                    "n": len(s),
                    "per_class": np.bincount(s.y, minlength=len(self.classes)).tolist(),
                }
                for part, s in (("train", self.train), ("val", self.val), ("test", self.test))
            },
        }


@functools.lru_cache(maxsize=4)
def load_splits(data: DataSpec, task: Task, budget: Budget) -> Splits:
    """The splits of ``task`` at ``budget``'s size (cached: experiments in one run share them)."""
    if data.root is None:
        from qbias_check.datasets.synthetic import make_blond, make_hair

        make = make_hair if task == "hair" else make_blond
        train, val, test = split(
            make(budget.n, seed=DATA_SEED, size=budget.size), FRACTIONS, seed=DATA_SEED
        )
        return Splits(task, data, train, val, test)
    from qbias_check.datasets import celeba

    parts = []
    names: tuple[celeba.Split, ...] = ("train", "val", "test")
    for name, fraction in zip(names, FRACTIONS, strict=True):
        full = celeba.load(
            data.root, task=task, size=budget.size, split=name, seed=DATA_SEED, lazy=True
        )
        take = min(len(full), max(1, round(budget.n * fraction)))
        index = np.sort(np.random.default_rng(DATA_SEED).choice(len(full), take, replace=False))
        chosen = full.subset(index)
        parts.append(
            EvalSet(
                x=chosen.inputs(),
                y=chosen.y,
                classes=chosen.classes,
                attributes=chosen.attributes,
                source=f"{full.source} [{take} of {len(full)}]",
                info=chosen.info,
            )
        )
    return Splits(task, data, *parts)
