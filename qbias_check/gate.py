"""The state of one gate run, kept apart from pytest so it can be used and tested on its own.

A :class:`GateRun` loads the eval set once, evaluates each model at most once per process (the
cache shares the work across processes), judges checks, and assembles a model's report from
the records of its judged checks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from qbias_check.cache import Cache
from qbias_check.checks import Check, Verdict, expand, judge
from qbias_check.comparison import INTERSECTION_JOIN
from qbias_check.datasets import EvalSet
from qbias_check.evaluate import Evaluation, evaluate_model, load_data
from qbias_check.report import report_dict
from qbias_check.thresholds import ConfigError, GateSpec


@dataclass
class GateRun:
    """The eval set and lazily evaluated models of one :class:`GateSpec`."""

    spec: GateSpec
    cache: Cache
    _evalset: EvalSet | None = None
    _evaluations: dict[str, Evaluation | Exception] = field(default_factory=dict)

    @property
    def evalset(self) -> EvalSet:
        """The eval set, loaded on first use."""
        if self._evalset is None:
            self._evalset = load_data(self.spec, self.cache)
        return self._evalset

    def attribute_names(self) -> list[str]:
        """Attributes of the eval set plus the configured intersections (``male_x_young``)."""
        names = list(self.evalset.attributes)
        for combo in self.spec.statistics.intersections:
            missing = [n for n in combo if n not in names]
            if missing:
                raise ConfigError(
                    f"{self.spec.source}: statistics.intersections: the eval set has no attribute "
                    f"{missing[0]!r}; it has {', '.join(names) or 'none'}"
                )
        return names + [INTERSECTION_JOIN.join(c) for c in self.spec.statistics.intersections]

    def checks(self) -> list[Check]:
        """Every check of the spec, sorted by id."""
        return expand(self.spec, self.evalset.classes, self.attribute_names())

    def evaluation(self, model: str) -> Evaluation:
        """The evaluation of ``model``; a failure is remembered and raised again on each call."""
        if model not in self._evaluations:
            try:
                self._evaluations[model] = evaluate_model(
                    self.spec, self.spec.model(model), self.evalset, self.cache
                )
            except Exception as exc:  # remembered so every check of the model reports it once
                self._evaluations[model] = exc
        result = self._evaluations[model]
        if isinstance(result, Exception):
            raise result
        return result

    def judge(self, check: Check) -> Verdict:
        """Judge ``check`` on its model's comparison."""
        return judge(check, self.evaluation(check.model).comparison, self.spec.statistics)

    def report(self, model: str, records: Iterable[dict[str, Any]]) -> dict[str, Any]:
        """The JSON report of ``model`` with the given check records."""
        ev = self.evaluation(model)
        meta = {
            "model": model,
            "dataset": self.spec.dataset,
            "reference": ev.reference,
            "quantized": ev.quantized,
            "quantized_built_by_ptq": ev.built,
            "gate": self.spec.statistics.gate,
            "min_support": self.spec.statistics.min_support,
        }
        corrector = self.spec.model(model).corrector
        if corrector is not None:
            meta["corrector"] = _corrector_record(corrector, self.evalset.content_hash)
        data = report_dict(meta, ev.comparison)
        data["checks"] = sorted(
            (r for r in records if r["model"] == model), key=lambda r: str(r["id"])
        )
        return data


def _corrector_record(path: str, eval_hash: str) -> dict[str, Any]:
    """What the report says of a corrector: where it is, what it was trained on, and whether
    that data is the gate's own eval set (it must not be: the numbers would flatter it)."""
    from qbias_check.mitigation.corrector import Corrector

    corrector = Corrector.load(path)
    trained_on = str(corrector.info.get("trained_on", "unknown"))
    return {
        "path": path,
        "trained_on": trained_on,
        "trained_on_this_eval_set": eval_hash in trained_on,
        "size_bytes": corrector.size_bytes,
    }
