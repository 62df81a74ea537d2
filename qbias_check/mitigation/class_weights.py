"""Class weighting (thesis eq. 2.1): each class's loss scaled by N_max / N_c.

Pure numpy, so it can be used with any trainer; :func:`class_weights` returns the dict that Keras's
``fit(class_weight=...)`` takes, :func:`group_class_weights` per-example weights for
``fit(sample_weight=...)`` that balance every class x group cell the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

EMPTY_LABELS = "class weights need at least one label"
BAD_LABELS = "labels must be whole numbers in [0, n_classes) as a vector (N,) or one-hot (N, C)"
BAD_N_CLASSES = "n_classes must be a positive whole number at least max(label) + 1"
EMPTY_CLASSES = "no examples of class {}: its weight N_max / N_c would be infinite"
GROUPS_LENGTH = "groups must give one group per label: {} labels but {} groups"


def class_weights(y: ArrayLike, *, n_classes: int | None = None) -> dict[int, float]:
    """Weights ``N_max / N_c`` per class (thesis eq. 2.1), as Keras's ``class_weight`` dict.

    ``y`` holds class indices (N,) or one-hot rows (N, C); ``n_classes`` defaults to
    ``max(y) + 1`` (or C for one-hot). A class with no examples is a ValueError.
    """
    labels = _labels(y)
    counts = _counts(labels, n_classes if n_classes is not None else _n_classes(y, labels))
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(EMPTY_CLASSES.format(", ".join(str(c) for c in empty)))
    return {c: float(counts.max() / n) for c, n in enumerate(counts)}


def group_class_weights(
    y: ArrayLike, groups: ArrayLike | Sequence[Any], *, n_classes: int | None = None
) -> NDArray[np.float64]:
    """Per-example weights ``N_max / N_cell`` over class x group cells, for ``sample_weight``.

    Eq. 2.1 applied to the cells (e.g. blond x male) rather than the classes, so every cell that
    occurs weighs as much in the loss as the largest one. ``groups`` is one label of any kind per
    example. Cells without examples need no weight; a class with none at all is a ValueError.
    """
    labels = _labels(y)
    class_weights(labels, n_classes=n_classes if n_classes is not None else _n_classes(y, labels))
    group_labels = np.asarray(groups)
    if group_labels.ndim != 1 or len(group_labels) != len(labels):
        raise ValueError(GROUPS_LENGTH.format(len(labels), group_labels.size))
    _, group_index = np.unique(group_labels, return_inverse=True)
    cell = labels * (int(group_index.max()) + 1) + group_index.reshape(-1)
    _, cell_index, cell_counts = np.unique(cell, return_inverse=True, return_counts=True)
    weights: NDArray[np.float64] = (cell_counts.max() / cell_counts)[cell_index.reshape(-1)]
    return weights.astype(np.float64)


def _labels(y: ArrayLike) -> NDArray[np.int64]:
    """Class indices from a label vector or one-hot matrix, validated."""
    array = np.asarray(y)
    if array.size == 0:
        raise ValueError(EMPTY_LABELS)
    if array.ndim == 2:
        array = array.argmax(axis=1)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.number):
        raise ValueError(BAD_LABELS)
    if np.issubdtype(array.dtype, np.bool_) or np.any(array != np.round(array)) or array.min() < 0:
        raise ValueError(BAD_LABELS)
    return array.astype(np.int64)


def _n_classes(y: ArrayLike, labels: NDArray[np.int64]) -> int:
    """Number of classes implied by the labels: one-hot width, else largest label + 1."""
    array = np.asarray(y)
    return int(array.shape[1]) if array.ndim == 2 else int(labels.max()) + 1


def _counts(labels: NDArray[np.int64], n_classes: int) -> NDArray[np.int64]:
    """Examples per class 0 .. n_classes - 1."""
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
        raise ValueError(BAD_N_CLASSES)
    if n_classes < 1 or labels.max() >= n_classes:
        raise ValueError(BAD_N_CLASSES)
    return np.bincount(labels, minlength=n_classes)
