"""The thesis's bias metrics (chapter 2.3) as pure numpy functions.

Rates are computed from confusion matrices with rows = true class and columns = predicted class.
Every confusion-level function accepts a leading batch axis (``(..., C, C)``), so the bootstrap
evaluates all its replicates in one call. A rate that has no data behind it is NaN, never 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

ERR_NOT_1D = "{name} must be a label vector (N,) or a score matrix (N, C); got shape {shape}"
ERR_LENGTH = "{name} has {got} entries but {reference} has {expected}"
ERR_LABEL_RANGE = "{name} holds labels outside 0..{high}: {bad}"
ERR_SCORE_COLUMNS = "{name} has {got} score columns but there are {expected} classes"
ERR_NONFINITE = "{name} holds NaN or inf scores"
ERR_NOT_INTEGER = "{name} must hold integer class ids; got dtype {dtype}"
ERR_FEW_CLASSES = "need at least two classes, got {n}"

# The largest possible population variance of values in [0, 1] (thesis eq. 2.11).
MAX_VARIANCE = 0.25


def _quiet_nan(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a numpy nan-reduction without the warning for an all-NaN slice (NaN is the answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        return func(*args, **kwargs)


def check_n_classes(n_classes: int) -> None:
    """Raise if fewer than two classes are asked for."""
    if n_classes < 2:
        raise ValueError(ERR_FEW_CLASSES.format(n=n_classes))


def to_labels(pred: ArrayLike, *, n_classes: int, name: str = "y_pred") -> IntArray:
    """Return integer labels from a label vector (N,) or a score matrix (N, C), validated."""
    arr = np.asarray(pred)
    if arr.ndim == 2:
        if arr.shape[1] != n_classes:
            raise ValueError(
                ERR_SCORE_COLUMNS.format(name=name, got=arr.shape[1], expected=n_classes)
            )
        if not np.all(np.isfinite(arr)):
            raise ValueError(ERR_NONFINITE.format(name=name))
        labels: IntArray = np.argmax(arr, axis=1).astype(np.int64)
        return labels
    if arr.ndim != 1:
        raise ValueError(ERR_NOT_1D.format(name=name, shape=arr.shape))
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(ERR_NOT_INTEGER.format(name=name, dtype=arr.dtype))
    labels = arr.astype(np.int64)
    bad = labels[(labels < 0) | (labels >= n_classes)]
    if bad.size:
        shown = ", ".join(str(v) for v in np.unique(bad)[:5])
        raise ValueError(ERR_LABEL_RANGE.format(name=name, high=n_classes - 1, bad=shown))
    return labels


def check_length(arr: np.ndarray, *, expected: int, name: str, reference: str = "y_true") -> None:
    """Raise if ``arr`` does not have as many entries as ``reference`` (``expected``)."""
    if len(arr) != expected:
        raise ValueError(
            ERR_LENGTH.format(name=name, got=len(arr), reference=reference, expected=expected)
        )


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, *, n_classes: int) -> IntArray:
    """Return the (C, C) confusion matrix, rows = true class, columns = predicted class."""
    check_n_classes(n_classes)
    true = to_labels(y_true, n_classes=n_classes, name="y_true")
    pred = to_labels(y_pred, n_classes=n_classes, name="y_pred")
    check_length(pred, expected=len(true), name="y_pred")
    flat = np.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def fnr_from_confusion(confusion: ArrayLike) -> FloatArray:
    """FNR per class, ``1 - TP_i / P_i``; NaN for a class with no examples."""
    cm = np.asarray(confusion, dtype=np.float64)
    positives = cm.sum(axis=-1)
    hits = np.diagonal(cm, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(positives > 0, 1.0 - hits / positives, np.nan)


def balanced_fpr_from_confusion(confusion: ArrayLike) -> FloatArray:
    """Balanced FPR per class (thesis eq. 2.7): mean over other classes j of ``FP_ji / P_j``.

    A class j with no examples is left out of the mean; NaN when no other class has examples.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    n = cm.shape[-1]
    positives = cm.sum(axis=-1)  # P_j, one per true class
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = cm / positives[..., :, None]  # rate[j, i] = FP_ji / P_j
    usable = (positives > 0)[..., :, None] & ~np.eye(n, dtype=bool)
    total = np.where(usable, rate, 0.0).sum(axis=-2)
    count = usable.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def accuracy_from_confusion(confusion: ArrayLike) -> FloatArray:
    """Share of correct predictions; NaN for an empty matrix."""
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum(axis=(-2, -1))
    hits = np.trace(cm, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, hits / total, np.nan)


def fnr_per_class(y_true: ArrayLike, y_pred: ArrayLike, *, n_classes: int) -> FloatArray:
    """FNR of each class from labels (or scores)."""
    return fnr_from_confusion(confusion_matrix(y_true, y_pred, n_classes=n_classes))


def balanced_fpr_per_class(y_true: ArrayLike, y_pred: ArrayLike, *, n_classes: int) -> FloatArray:
    """Balanced FPR of each class (thesis eq. 2.7) from labels (or scores)."""
    return balanced_fpr_from_confusion(confusion_matrix(y_true, y_pred, n_classes=n_classes))


def max_min(rates: ArrayLike) -> FloatArray:
    """Max-Min over the last axis (thesis eq. 2.8), ignoring NaN entries.

    NaN when fewer than two entries have a value: a spread of one value is not a spread of 0.
    """
    arr = np.asarray(rates, dtype=np.float64)
    spread = _quiet_nan(np.nanmax, arr, axis=-1) - _quiet_nan(np.nanmin, arr, axis=-1)
    result: FloatArray = np.where(np.isfinite(arr).sum(axis=-1) >= 2, spread, np.nan)
    return result


def variance(rates: ArrayLike) -> FloatArray:
    """Population variance over the last axis (thesis eq. 2.9), ignoring NaN classes."""
    result: FloatArray = _quiet_nan(np.nanvar, np.asarray(rates, dtype=np.float64), axis=-1)
    return result


def variance_increase(rates_float: ArrayLike, rates_int8: ArrayLike) -> FloatArray:
    """``(Var_int8 - Var_float) / 0.25``: the thesis's V_score as a fraction (eq. 2.11 / 100)."""
    return (variance(rates_int8) - variance(rates_float)) / MAX_VARIANCE


def relative_change(before: ArrayLike, after: ArrayLike) -> FloatArray:
    """``(after - before) / before`` (thesis eq. 2.12); NaN where ``before`` is 0 or NaN."""
    b = np.asarray(before, dtype=np.float64)
    a = np.asarray(after, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, (a - b) / b, np.nan)


def _relative_changes(
    fpr_float: ArrayLike, fnr_float: ArrayLike, fpr_int8: ArrayLike, fnr_int8: ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Relative FPR and FNR changes, NaN in both for a class that lacks either."""
    d_fpr = relative_change(fpr_float, fpr_int8)
    d_fnr = relative_change(fnr_float, fnr_int8)
    usable = np.isfinite(d_fpr) & np.isfinite(d_fnr)
    return np.where(usable, d_fpr, np.nan), np.where(usable, d_fnr, np.nan)


def cev(
    fpr_float: ArrayLike,
    fnr_float: ArrayLike,
    fpr_int8: ArrayLike,
    fnr_int8: ArrayLike,
    *,
    variant: str = "measure_twice",
) -> FloatArray:
    """Combined error variance (thesis eq. 2.12-2.14) over the last (class) axis.

    Each class is a point of relative changes ``(dFPR_i, dFNR_i)``; CEV is the mean squared
    distance of those points from their centroid. Classes whose float FPR or FNR is 0 have no
    relative change and are left out (see :func:`cev_excluded_classes`).
    ``variant="half_percent"`` gives the other published form: relative changes in percent and
    the squared distance halved, i.e. ``5000 x`` the default.
    """
    d_fpr, d_fnr = _relative_changes(fpr_float, fnr_float, fpr_int8, fnr_int8)
    centre_fpr = _quiet_nan(np.nanmean, d_fpr, axis=-1)[..., None]
    centre_fnr = _quiet_nan(np.nanmean, d_fnr, axis=-1)[..., None]
    squared = (d_fpr - centre_fpr) ** 2 + (d_fnr - centre_fnr) ** 2
    value: FloatArray = _quiet_nan(np.nanmean, squared, axis=-1)
    if variant == "measure_twice":
        return value
    if variant == "half_percent":
        return value * (100.0**2) / 2.0
    raise ValueError(f"unknown CEV variant {variant!r}; expected 'measure_twice' or 'half_percent'")


def cev_excluded_classes(
    fpr_float: ArrayLike, fnr_float: ArrayLike, classes: Sequence[str]
) -> list[str]:
    """Names of the classes that CEV and SDE leave out: a float FPR or FNR of 0 (or no data)."""
    fpr = np.asarray(fpr_float, dtype=np.float64)
    fnr = np.asarray(fnr_float, dtype=np.float64)
    usable = (fpr > 0) & (fnr > 0)
    return [name for name, ok in zip(classes, usable, strict=True) if not ok]


def sde(
    fpr_float: ArrayLike, fnr_float: ArrayLike, fpr_int8: ArrayLike, fnr_int8: ArrayLike
) -> FloatArray:
    """Symmetric distance error: mean over classes of ``|dFPR_i - dFNR_i|``.

    The same classes as in CEV are left out.
    """
    d_fpr, d_fnr = _relative_changes(fpr_float, fnr_float, fpr_int8, fnr_int8)
    result: FloatArray = _quiet_nan(np.nanmean, np.abs(d_fpr - d_fnr), axis=-1)
    return result


def modal_prediction(predictions: ArrayLike) -> IntArray:
    """Most frequent label per example over a population of models (S, N); ties: lowest id."""
    preds = np.asarray(predictions, dtype=np.int64)
    if preds.ndim == 1:
        return preds
    n_labels = int(preds.max()) + 1 if preds.size else 1
    votes = np.zeros((preds.shape[1], n_labels), dtype=np.int64)
    for row in preds:
        votes[np.arange(preds.shape[1]), row] += 1
    modal: IntArray = np.argmax(votes, axis=1).astype(np.int64)
    return modal


def cie_fraction(pred_float: ArrayLike, pred_int8: ArrayLike) -> float:
    """Share of compression identified exemplars: examples whose top-1 label changed.

    Each argument is a label vector (N,) or, for several seeds, a matrix (S, N); a population is
    reduced to its modal label per example first (Hooker et al.).
    """
    before = modal_prediction(pred_float)
    after = modal_prediction(pred_int8)
    check_length(after, expected=len(before), name="pred_int8", reference="pred_float")
    if before.size == 0:
        return float("nan")
    return float(np.mean(before != after))
