"""Limits -> sorted :class:`Check` items; check + :class:`Comparison` -> :class:`Verdict`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from qbias_check.comparison import Comparison
from qbias_check.thresholds import ConfigError, GateSpec, Statistics

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"

# Model-level metrics that read every class's rates: a thin class makes them unreliable.
PER_CLASS_SUMMARIES = {
    "fnr_max_min_increase",
    "fpr_max_min_increase",
    "fnr_variance_increase",
    "fpr_variance_increase",
    "cev",
}


@dataclass(frozen=True, order=True)
class Check:
    """One limit on one number: a model metric, a class's rate, or an attribute's gap.

    ``scope`` is ``""`` (whole model), ``class[bald]``, ``male[blond]`` (attribute x class) or
    ``male`` (attribute over all classes).
    """

    model: str
    scope: str
    metric: str
    limit: float

    @property
    def id(self) -> str:
        """The readable test id, e.g. ``hair-v3small::class[bald]::fnr_increase``."""
        return "::".join(part for part in (self.model, self.scope, self.metric) if part)

    @property
    def quantity(self) -> str:
        """The name of the number in a :class:`Comparison`."""
        return f"{self.scope}.{self.metric}" if self.scope else self.metric


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check and the numbers behind it."""

    outcome: str
    estimate: float
    interval: tuple[float, float]
    reason: str = ""


def expand(spec: GateSpec, classes: Sequence[str], attributes: Sequence[str]) -> list[Check]:
    """Every check of every model, sorted by id so that every xdist worker collects the same list.

    ``attributes`` are the attribute names of the comparison, intersections included.
    """
    limits = spec.limits
    _known("limits.class", limits.classes, classes, "class", spec.source)
    _known("limits.attribute", limits.attributes, attributes, "attribute", spec.source)
    checks = []
    for model in spec.models:
        for metric, limit in limits.model.items():
            checks.append(Check(model.name, "", metric, limit))
        for name in classes:
            for metric, limit in limits.for_class(name).items():
                checks.append(Check(model.name, f"class[{name}]", metric, limit))
        for attribute in attributes:
            for metric, limit in limits.for_attribute(attribute).items():
                if metric == "accuracy_gap_increase":
                    checks.append(Check(model.name, attribute, metric, limit))
                else:
                    checks += [
                        Check(model.name, f"{attribute}[{name}]", metric, limit) for name in classes
                    ]
    return sorted(checks, key=lambda c: c.id)


def _known(
    key: str,
    given: Mapping[str, object],
    known: Sequence[str],
    what: str,
    source: str = "thresholds.toml",
) -> None:
    for name in given:
        if name not in known:
            raise ConfigError(
                f"{source}: {key}.{name}: the eval set has no {what} {name!r}; "
                f"it has {', '.join(known) or 'none'}"
            )


def judge(check: Check, comparison: Comparison, statistics: Statistics) -> Verdict:
    """Decide one check under the gate mode; too little data gives a skip with the reason."""
    estimate = comparison.estimate(check.quantity)
    interval = comparison.interval(check.quantity)
    thin = _thin_support(check, comparison, statistics.min_support)
    if thin:
        return Verdict(SKIPPED, estimate, interval, f"insufficient support ({thin})")
    if math.isnan(estimate):
        return Verdict(SKIPPED, estimate, interval, _why_nan(check, comparison))
    low, high = interval
    if statistics.gate == "estimate":
        failed = estimate > check.limit
    elif statistics.gate == "significant":
        failed = not math.isnan(low) and low > check.limit
    else:  # assured: pass only when the whole interval lies at or below the limit
        failed = math.isnan(high) or high > check.limit
    return Verdict(FAILED if failed else PASSED, estimate, interval)


def _thin_support(check: Check, comparison: Comparison, min_support: int) -> str:
    """Describe the classes or groups below ``min_support`` that the check reads, or ''."""
    per_class = comparison.per_class["support"]
    if not check.scope:
        if check.metric in PER_CLASS_SUMMARIES:
            thin = per_class[per_class < min_support]
            return ", ".join(f"{name} n={n} < {min_support}" for name, n in thin.items())
        return f"n={comparison.n} < {min_support}" if comparison.n < min_support else ""
    if check.scope.startswith("class["):
        n = int(per_class[check.scope[len("class[") : -1]])
        return f"n={n} < {min_support}" if n < min_support else ""
    attribute, _, rest = check.scope.partition("[")
    rows = comparison.per_group[comparison.per_group["attribute"] == attribute]
    if rest:
        rows = rows[rows["class"] == rest[:-1]]
        support = rows.set_index("group")["support"]
    else:
        support = rows.groupby("group")["support"].sum()
    thin = support[support < min_support]
    return ", ".join(f"{group} n={n} < {min_support}" for group, n in thin.items())


def _why_nan(check: Check, comparison: Comparison) -> str:
    notes = comparison.notes
    reason = notes.get(check.scope) or notes.get(check.metric) or "no data behind this number"
    return f"cannot be estimated: {reason}"
