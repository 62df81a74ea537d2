"""Class weights of thesis eq. 2.1 (N_max / N_c), checked against counts worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from qbias_check.mitigation.class_weights import (
    BAD_LABELS,
    BAD_N_CLASSES,
    EMPTY_CLASSES,
    EMPTY_LABELS,
    GROUPS_LENGTH,
    class_weights,
    group_class_weights,
)

# 6 of class 0, 3 of class 1, 1 of class 2, 2 of class 3: N_max = 6.
LABELS = [0] * 6 + [1] * 3 + [2] + [3] * 2


@pytest.mark.parametrize(
    ("y", "n_classes", "expected"),
    [
        (LABELS, None, {0: 1.0, 1: 2.0, 2: 6.0, 3: 3.0}),
        (np.array(LABELS)[::-1], 4, {0: 1.0, 1: 2.0, 2: 6.0, 3: 3.0}),  # order does not matter
        ([1, 1, 1, 1, 0], None, {0: 4.0, 1: 1.0}),
        ([0, 1, 2], None, {0: 1.0, 1: 1.0, 2: 1.0}),  # balanced: all ones
        (np.array([2.0, 2.0, 0.0, 1.0]), None, {0: 2.0, 1: 2.0, 2: 1.0}),  # whole floats are fine
        (np.eye(3)[[0, 0, 0, 1, 2, 2]], None, {0: 1.0, 1: 3.0, 2: 1.5}),  # one-hot rows
    ],
)
def test_weights_are_n_max_over_n_c(
    y: object, n_classes: int | None, expected: dict[int, float]
) -> None:
    weights = class_weights(y, n_classes=n_classes)  # type: ignore[arg-type]
    assert weights == pytest.approx(expected)
    assert list(weights) == sorted(expected)
    assert all(type(k) is int and type(v) is float for k, v in weights.items())  # Keras-ready


def test_weighted_class_totals_are_equal() -> None:
    # Thesis 3.4.3: "the sum of misclassifying every sample of a class should be equal".
    weights = class_weights(LABELS)
    counts = np.bincount(LABELS)
    assert {weights[c] * counts[c] for c in weights} == {6.0}


@pytest.mark.parametrize(
    ("y", "n_classes", "message"),
    [
        ([0, 0, 2], None, EMPTY_CLASSES.format("1")),
        ([0, 1], 4, EMPTY_CLASSES.format("2, 3")),
        ([], None, EMPTY_LABELS),
        ([0, -1], None, BAD_LABELS),
        ([0.5, 1.0], None, BAD_LABELS),
        (["a", "b"], None, BAD_LABELS),
        ([[[0]]], None, BAD_LABELS),
        ([0, 3], 2, BAD_N_CLASSES),
        ([0, 1], 0, BAD_N_CLASSES),
    ],
)
def test_bad_labels_raise_clear_errors(y: object, n_classes: int | None, message: str) -> None:
    with pytest.raises(ValueError) as info:
        class_weights(y, n_classes=n_classes)  # type: ignore[arg-type]
    assert str(info.value) == message


def test_group_weights_balance_cells() -> None:
    # Cells: (0, f) x3, (0, m) x1, (1, f) x1, (1, m) x2 -> N_max = 3.
    y = [0, 0, 0, 0, 1, 1, 1]
    groups = ["f", "f", "m", "f", "f", "m", "m"]
    weights = group_class_weights(y, groups)
    assert weights.dtype == np.float64
    np.testing.assert_allclose(weights, [1.0, 1.0, 3.0, 1.0, 3.0, 1.5, 1.5])


def test_group_weights_with_one_group_equal_class_weights() -> None:
    per_class = class_weights(LABELS)
    weights = group_class_weights(LABELS, np.zeros(len(LABELS), dtype=bool))
    np.testing.assert_allclose(weights, [per_class[c] for c in LABELS])


def test_group_weights_errors() -> None:
    with pytest.raises(ValueError) as info:
        group_class_weights([0, 1, 1], ["a", "b"])
    assert str(info.value) == GROUPS_LENGTH.format(3, 2)
    with pytest.raises(ValueError) as info:
        group_class_weights([0, 2], ["a", "b"])
    assert str(info.value) == EMPTY_CLASSES.format("1")
