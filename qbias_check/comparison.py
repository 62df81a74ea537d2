"""``compare()``: labels and two models' predictions -> a :class:`Comparison` with intervals.

The module is named ``comparison`` so that ``qbias_check.compare`` stays the function.


Every number is computed by one function, :func:`_measure`, from joint cell counts. The observed
counts give the estimates; the bootstrap replicates of the same counts (``stats.bootstrap_counts``)
give the intervals. So an estimate and its interval can never disagree on a definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from tabulate import tabulate

from qbias_check import metrics, stats

FloatArray = NDArray[np.float64]

ERR_CLASSES = "classes must be distinct names; got {classes}"
ERR_ONE_GROUP = "attribute {name!r} has a single group ({group!r}); a gap needs at least two"
ERR_UNKNOWN_INTERSECTION = "intersection {combo} names unknown attribute {name!r}; known: {known}"
ERR_SHORT_INTERSECTION = "an intersection needs at least two attributes; got {combo}"
ERR_UNKNOWN_METRIC = "no interval named {name!r}; known names include: {known}"

# An intersection of attributes is an attribute of its own: male x young -> "male_x_young" with
# groups such as "male/young" (thesis table 4.1: MY, MO, FY, FO).
INTERSECTION_JOIN = "_x_"
GROUP_JOIN = "/"

SUMMARY_KEYS = (
    "accuracy_float",
    "accuracy_int8",
    "accuracy_drop",
    "cie_fraction",
    "fnr_max_min_float",
    "fnr_max_min_int8",
    "fnr_max_min_increase",
    "fpr_max_min_float",
    "fpr_max_min_int8",
    "fpr_max_min_increase",
    "fnr_variance_increase",
    "fpr_variance_increase",
    "cev",
    "cev_half_percent",
    "sde",
)
RATES = ("fnr", "fpr")
SUMMARY_CHANGE_LABELS = {
    "cie_fraction": "CIE fraction",
    "fnr_variance_increase": "FNR variance increase",
    "fpr_variance_increase": "FPR variance increase",
    "cev": "CEV",
    "sde": "SDE",
}
PER_CLASS_TEXT_COLUMNS = [
    "support",
    "fnr_float",
    "fnr_int8",
    "fnr_increase",
    "fpr_float",
    "fpr_int8",
    "fpr_increase",
    "broken",
    "fixed",
    "mcnemar_p",
]
GAP_TEXT_COLUMNS = [
    "attribute",
    "class",
    "metric",
    "gap_float",
    "gap_int8",
    "gap_increase",
    "low",
    "high",
]


@dataclass(frozen=True)
class _Layout:
    """How strata map to classes and to the groups of every attribute (intersections included)."""

    classes: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    class_onehot: FloatArray  # (S, C)
    membership: dict[str, FloatArray]  # attribute -> (S, G)


def _rates(confusion: FloatArray) -> dict[str, FloatArray]:
    return {
        "fnr": metrics.fnr_from_confusion(confusion),
        "fpr": metrics.balanced_fpr_from_confusion(confusion),
    }


def _measure(counts: NDArray[Any], layout: _Layout) -> dict[str, FloatArray]:
    """Every named quantity of joint counts ``(..., S, C, C)``; each value has shape ``(...)``."""
    onehot = layout.class_onehot
    cm_float = np.einsum("...spq,st->...tp", counts, onehot)
    cm_int8 = np.einsum("...spq,st->...tq", counts, onehot)
    before, after = _rates(cm_float), _rates(cm_int8)
    out: dict[str, FloatArray] = {}

    out["accuracy_float"] = metrics.accuracy_from_confusion(cm_float)
    out["accuracy_int8"] = metrics.accuracy_from_confusion(cm_int8)
    out["accuracy_drop"] = out["accuracy_float"] - out["accuracy_int8"]
    total = counts.sum(axis=(-3, -2, -1))
    same = np.trace(counts, axis1=-2, axis2=-1).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["cie_fraction"] = np.where(total > 0, 1.0 - same / total, np.nan)
    for rate in RATES:
        out[f"{rate}_max_min_float"] = metrics.max_min(before[rate])
        out[f"{rate}_max_min_int8"] = metrics.max_min(after[rate])
        out[f"{rate}_max_min_increase"] = out[f"{rate}_max_min_int8"] - out[f"{rate}_max_min_float"]
        out[f"{rate}_variance_increase"] = metrics.variance_increase(before[rate], after[rate])
    cev_args = (before["fpr"], before["fnr"], after["fpr"], after["fnr"])
    out["cev"] = metrics.cev(*cev_args)
    out["cev_half_percent"] = metrics.cev(*cev_args, variant="half_percent")
    out["sde"] = metrics.sde(*cev_args)

    for i, name in enumerate(layout.classes):
        for rate in RATES:
            out[f"class[{name}].{rate}_float"] = before[rate][..., i]
            out[f"class[{name}].{rate}_int8"] = after[rate][..., i]
            out[f"class[{name}].{rate}_increase"] = after[rate][..., i] - before[rate][..., i]

    for attribute, member in layout.membership.items():
        g_float = np.einsum("...spq,sg,st->...gtp", counts, member, onehot)
        g_int8 = np.einsum("...spq,sg,st->...gtq", counts, member, onehot)
        g_before, g_after = _rates(g_float), _rates(g_int8)
        g_before["accuracy"] = metrics.accuracy_from_confusion(g_float)[..., None]
        g_after["accuracy"] = metrics.accuracy_from_confusion(g_int8)[..., None]
        two_groups = member.shape[1] == 2
        for rate, rates_before in g_before.items():
            # rates are (..., G, C); gaps and differences run over the group axis.
            gap_before = metrics.max_min(np.moveaxis(rates_before, -2, -1))
            gap_after = metrics.max_min(np.moveaxis(g_after[rate], -2, -1))
            diff_before = rates_before[..., -1, :] - rates_before[..., 0, :]
            diff_after = g_after[rate][..., -1, :] - g_after[rate][..., 0, :]
            scopes = ["*"] if rate == "accuracy" else list(layout.classes)
            for i, scope in enumerate(scopes):
                prefix = attribute if scope == "*" else f"{attribute}[{scope}]"
                out[f"{prefix}.{rate}_gap_float"] = gap_before[..., i]
                out[f"{prefix}.{rate}_gap_int8"] = gap_after[..., i]
                out[f"{prefix}.{rate}_gap_increase"] = gap_after[..., i] - gap_before[..., i]
                if two_groups:
                    out[f"{prefix}.{rate}_difference_float"] = diff_before[..., i]
                    out[f"{prefix}.{rate}_difference_int8"] = diff_after[..., i]
                    out[f"{prefix}.{rate}_difference_change"] = (
                        diff_after[..., i] - diff_before[..., i]
                    )
    return out


def _encode_attributes(
    attributes: Mapping[str, ArrayLike] | None,
    intersections: Sequence[Sequence[str]] | None,
    n: int,
) -> tuple[NDArray[np.int64], dict[str, tuple[str, ...]], list[tuple[str, ...]]]:
    """Validate attributes; return group codes (N, A), group names and the intersections."""
    names: dict[str, tuple[str, ...]] = {}
    codes = []
    for name, values in (attributes or {}).items():
        arr = np.asarray(values)
        metrics.check_length(arr, expected=n, name=f"attribute {name!r}", reference="y")
        groups, code = np.unique(arr.astype(str), return_inverse=True)
        if len(groups) < 2:
            raise ValueError(
                ERR_ONE_GROUP.format(name=name, group=str(groups[0]) if len(groups) else "")
            )
        names[name] = tuple(str(g) for g in groups)
        codes.append(code.reshape(-1))
    combos = []
    for combo in intersections or []:
        combo = tuple(combo)
        if len(combo) < 2:
            raise ValueError(ERR_SHORT_INTERSECTION.format(combo=list(combo)))
        for name in combo:
            if name not in names:
                raise ValueError(
                    ERR_UNKNOWN_INTERSECTION.format(
                        combo=list(combo), name=name, known=sorted(names)
                    )
                )
        combos.append(combo)
    matrix = np.column_stack(codes).astype(np.int64) if codes else np.zeros((n, 0), np.int64)
    return matrix, names, combos


def _layout(
    joint: stats.JointCounts,
    classes: tuple[str, ...],
    groups: dict[str, tuple[str, ...]],
    combos: list[tuple[str, ...]],
) -> _Layout:
    onehot = np.eye(len(classes))[joint.stratum_class]
    membership: dict[str, FloatArray] = {}
    labels: dict[str, tuple[str, ...]] = {}
    order = list(groups)
    for a, name in enumerate(order):
        membership[name] = np.eye(len(groups[name]))[joint.stratum_groups[:, a]]
        labels[name] = groups[name]
    for combo in combos:
        per_stratum = [
            GROUP_JOIN.join(groups[n][joint.stratum_groups[s, order.index(n)]] for n in combo)
            for s in range(len(joint.stratum_class))
        ]
        names, code = np.unique(np.asarray(per_stratum, dtype=str), return_inverse=True)
        key = INTERSECTION_JOIN.join(combo)
        membership[key] = np.eye(len(names))[code.reshape(-1)]
        labels[key] = tuple(str(x) for x in names)
    return _Layout(classes, labels, onehot, membership)


@dataclass(frozen=True, eq=False)
class Comparison:
    """The float-vs-int8 comparison of one model on one eval set, with bootstrap intervals.

    ``summary`` holds the model-level numbers (``SUMMARY_KEYS``); ``per_class``, ``per_group``
    and ``gaps`` are DataFrames; ``interval(name)`` gives the percentile interval of any named
    quantity (``"cev"``, ``"class[bald].fnr_increase"``, ``"male[blond].fnr_gap_increase"``,
    ``"male.accuracy_gap_increase"``); ``notes`` says why a number is NaN or what it left out.
    """

    classes: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]
    estimates: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    per_class: pd.DataFrame
    per_group: pd.DataFrame
    gaps: pd.DataFrame
    notes: dict[str, str]
    bootstrap: int
    confidence: float
    seed: int
    n: int
    summary: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "summary", {k: self.estimates[k] for k in SUMMARY_KEYS})

    def estimate(self, name: str) -> float:
        """The point estimate of a named quantity (see :meth:`interval` for the names)."""
        self._check_name(name)
        return self.estimates[name]

    def interval(self, name: str) -> tuple[float, float]:
        """The bootstrap percentile interval ``(low, high)`` of a named quantity."""
        self._check_name(name)
        return self.intervals[name]

    def _check_name(self, name: str) -> None:
        if name not in self.estimates:
            raise KeyError(ERR_UNKNOWN_METRIC.format(name=name, known=", ".join(SUMMARY_KEYS)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes None)."""

        def entry(name: str) -> dict[str, Any]:
            low, high = self.intervals[name]
            return {"estimate": _json(self.estimates[name]), "interval": [_json(low), _json(high)]}

        return {
            "n": self.n,
            "classes": list(self.classes),
            "groups": {k: list(v) for k, v in self.groups.items()},
            "bootstrap": self.bootstrap,
            "confidence": self.confidence,
            "seed": self.seed,
            "summary": {key: entry(key) for key in SUMMARY_KEYS},
            "per_class": _records(self.per_class.reset_index()),
            "per_group": _records(self.per_group),
            "gaps": _records(self.gaps),
            "notes": dict(self.notes),
        }

    def to_text(self) -> str:
        """The summary, per-class and gap tables as plain text."""
        pct = round(self.confidence * 100)
        parts = [
            f"n = {self.n}, {self.bootstrap} paired bootstrap replicates, {pct} % intervals",
            tabulate(
                self._summary_rows(),
                headers=["metric", "float", "int8", "change", f"{pct} % interval"],
                floatfmt=".4f",
                missingval="",
            ),
            "",
            _table(self.per_class.reset_index()[["class", *PER_CLASS_TEXT_COLUMNS]]),
        ]
        if len(self.gaps):
            parts += ["", _table(self.gaps[GAP_TEXT_COLUMNS])]
        parts += [f"note: {key}: {text}" for key, text in sorted(self.notes.items())]
        return "\n".join(parts)

    def _summary_rows(self) -> list[list[Any]]:
        s, iv = self.summary, self.intervals
        rows: list[list[Any]] = [
            [
                "accuracy",
                s["accuracy_float"],
                s["accuracy_int8"],
                -s["accuracy_drop"],
                _fmt_interval(iv["accuracy_drop"], negate=True),
            ],
        ]
        for rate in RATES:
            key = f"{rate}_max_min_increase"
            rows.append(
                [
                    f"{rate.upper()} Max-Min",
                    s[f"{rate}_max_min_float"],
                    s[f"{rate}_max_min_int8"],
                    s[key],
                    _fmt_interval(iv[key]),
                ]
            )
        for key, label in SUMMARY_CHANGE_LABELS.items():
            rows.append([label, None, None, s[key], _fmt_interval(iv[key])])
        return rows

    def __str__(self) -> str:
        return self.to_text()


def _json(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _json(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _table(frame: pd.DataFrame) -> str:
    # Records, not frame.values, so integer columns are not printed as floats.
    return tabulate(frame.to_dict(orient="records"), headers="keys", floatfmt=".3f")


def _fmt_interval(bounds: tuple[float, float], *, negate: bool = False) -> str:
    low, high = (-bounds[1], -bounds[0]) if negate else bounds
    if math.isnan(low):
        return "n/a"
    return f"[{low:+.4f}, {high:+.4f}]"


def compare(
    y: ArrayLike,
    pred_reference: ArrayLike,
    pred_quantized: ArrayLike,
    *,
    classes: Sequence[str],
    attributes: Mapping[str, ArrayLike] | None = None,
    intersections: Sequence[Sequence[str]] | None = None,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Comparison:
    """Compare the float (reference) and int8 (quantized) predictions on one labelled set.

    ``pred_*`` are label vectors (N,) or score matrices (N, C); ``attributes`` maps a protected
    attribute to each example's group; ``intersections`` lists attribute combinations to treat as
    attributes of their own (``[("male", "young")]``). Intervals come from a paired, stratified
    bootstrap with ``bootstrap`` replicates (0 gives NaN intervals).
    """
    class_names = tuple(str(c) for c in classes)
    metrics.check_n_classes(len(class_names))
    if len(set(class_names)) != len(class_names):
        raise ValueError(ERR_CLASSES.format(classes=list(class_names)))
    n_classes = len(class_names)
    labels = metrics.to_labels(y, n_classes=n_classes, name="y")
    n = len(labels)
    ref = metrics.to_labels(pred_reference, n_classes=n_classes, name="pred_reference")
    quant = metrics.to_labels(pred_quantized, n_classes=n_classes, name="pred_quantized")
    metrics.check_length(ref, expected=n, name="pred_reference", reference="y")
    metrics.check_length(quant, expected=n, name="pred_quantized", reference="y")
    codes, groups, combos = _encode_attributes(attributes, intersections, n)
    stats.check_confidence(confidence)

    joint = stats.joint_counts(labels, ref, quant, codes, n_classes=n_classes)
    layout = _layout(joint, class_names, groups, combos)
    observed = _measure(joint.counts, layout)
    replicates = _measure(
        stats.bootstrap_counts(joint.counts, replicates=bootstrap, seed=seed), layout
    )
    names = list(observed)
    low, high = stats.percentile_interval(
        np.stack([replicates[k] for k in names], axis=-1).reshape(bootstrap, len(names)),
        confidence=confidence,
    )
    estimates = {k: float(observed[k]) for k in names}
    intervals = {k: (float(lo), float(hi)) for k, lo, hi in zip(names, low, high, strict=True)}
    notes = _notes(joint, layout, estimates)
    return Comparison(
        classes=class_names,
        groups=layout.groups,
        estimates=estimates,
        intervals=intervals,
        per_class=_per_class_table(joint, layout, estimates, intervals),
        per_group=_per_group_table(joint, layout),
        gaps=_gap_table(layout, estimates, intervals),
        notes=notes,
        bootstrap=bootstrap,
        confidence=confidence,
        seed=seed,
        n=n,
    )


def _per_class_table(
    joint: stats.JointCounts,
    layout: _Layout,
    estimates: dict[str, float],
    intervals: dict[str, tuple[float, float]],
) -> pd.DataFrame:
    per_class = np.einsum("spq,st->tpq", joint.counts, layout.class_onehot)
    rows = []
    for i, name in enumerate(layout.classes):
        cells = per_class[i]
        broken = int(cells[i, :].sum() - cells[i, i])  # float right, int8 wrong
        fixed = int(cells[:, i].sum() - cells[i, i])  # float wrong, int8 right
        row: dict[str, Any] = {"class": name, "support": int(cells.sum())}
        for rate in RATES:
            for part in ("float", "int8", "increase"):
                key = f"class[{name}].{rate}_{part}"
                row[f"{rate}_{part}"] = estimates[key]
                row[f"{rate}_{part}_low"], row[f"{rate}_{part}_high"] = intervals[key]
        flips = int(cells.sum() - np.trace(cells))
        row.update(
            flips=flips, broken=broken, fixed=fixed, mcnemar_p=stats.mcnemar_exact(broken, fixed)
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index("class")


def _per_group_table(joint: stats.JointCounts, layout: _Layout) -> pd.DataFrame:
    rows = []
    for attribute, member in layout.membership.items():
        cm_float = np.einsum("spq,sg,st->gtp", joint.counts, member, layout.class_onehot)
        cm_int8 = np.einsum("spq,sg,st->gtq", joint.counts, member, layout.class_onehot)
        before, after = _rates(cm_float), _rates(cm_int8)
        acc_before = metrics.accuracy_from_confusion(cm_float)
        acc_after = metrics.accuracy_from_confusion(cm_int8)
        for g, group in enumerate(layout.groups[attribute]):
            for i, name in enumerate(layout.classes):
                row: dict[str, Any] = {
                    "attribute": attribute,
                    "group": group,
                    "class": name,
                    "support": int(cm_float[g, i].sum()),
                }
                for rate in RATES:
                    b, a = before[rate][g, i], after[rate][g, i]
                    row[f"{rate}_float"], row[f"{rate}_int8"] = b, a
                    row[f"{rate}_increase"] = a - b
                    row[f"{rate}_relative_change"] = float(metrics.relative_change(b, a))
                row["accuracy_float"], row["accuracy_int8"] = acc_before[g], acc_after[g]
                row["accuracy_drop"] = acc_before[g] - acc_after[g]
                rows.append(row)
    columns = ["attribute", "group", "class", "support"]
    return pd.DataFrame(rows, columns=columns if not rows else None)


def _gap_table(
    layout: _Layout, estimates: dict[str, float], intervals: dict[str, tuple[float, float]]
) -> pd.DataFrame:
    rows = []
    for attribute in layout.membership:
        scopes = [(name, rate) for name in layout.classes for rate in RATES] + [("*", "accuracy")]
        for scope, rate in scopes:
            prefix = attribute if scope == "*" else f"{attribute}[{scope}]"
            key = f"{prefix}.{rate}_gap_increase"
            row: dict[str, Any] = {
                "attribute": attribute,
                "class": scope,
                "metric": rate,
                "gap_float": estimates[f"{prefix}.{rate}_gap_float"],
                "gap_int8": estimates[f"{prefix}.{rate}_gap_int8"],
                "gap_increase": estimates[key],
                "low": intervals[key][0],
                "high": intervals[key][1],
            }
            for part in ("float", "int8", "change"):
                name = f"{prefix}.{rate}_difference_{part}"
                row[f"difference_{part}"] = estimates.get(name, np.nan)
                row[f"difference_{part}_low"], row[f"difference_{part}_high"] = intervals.get(
                    name, (np.nan, np.nan)
                )
            rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["attribute", "class", "metric"])


def _notes(
    joint: stats.JointCounts, layout: _Layout, estimates: dict[str, float]
) -> dict[str, str]:
    """Why a number is NaN, or what a metric left out."""
    notes: dict[str, str] = {}
    support = np.bincount(
        joint.stratum_class, weights=joint.counts.sum(axis=(1, 2)), minlength=len(layout.classes)
    )
    for name, count in zip(layout.classes, support, strict=True):
        if count == 0:
            notes[f"class[{name}]"] = "no examples of this class: its rates are NaN"
    fpr = [estimates[f"class[{c}].fpr_float"] for c in layout.classes]
    fnr = [estimates[f"class[{c}].fnr_float"] for c in layout.classes]
    left_out = metrics.cev_excluded_classes(fpr, fnr, layout.classes)
    if left_out:
        notes["cev"] = (
            "classes whose float FPR or FNR is 0 have no relative change and are left out of "
            f"CEV and SDE: {', '.join(left_out)}"
        )
    for attribute in layout.membership:
        for name in layout.classes:
            if math.isnan(estimates[f"{attribute}[{name}].fnr_gap_float"]):
                notes[f"{attribute}[{name}]"] = (
                    "fewer than two groups have examples of this class: its gaps are NaN"
                )
    return notes
