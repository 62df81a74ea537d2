"""Bias metrics against values computed by hand from the thesis formulas (chapter 2.3)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qbias_check import metrics

# Rows are true classes, columns predictions.
THREE = np.array([[8, 1, 1], [2, 6, 2], [0, 3, 7]])
EMPTY_MIDDLE = np.array([[5, 0, 1], [0, 0, 0], [2, 0, 8]])
BINARY = np.array([[4, 1], [3, 12]])


@pytest.mark.parametrize(
    ("confusion", "fnr", "fpr"),
    [
        # FNR_i = 1 - TP_i / P_i; FPR_i = mean_{j != i} FP_ji / P_j (eq. 2.7)
        (
            THREE,
            [0.2, 0.4, 0.3],
            [(2 / 10 + 0 / 10) / 2, (1 / 10 + 3 / 10) / 2, (1 / 10 + 2 / 10) / 2],
        ),
        # class 1 has no examples: NaN FNR, and it is left out of the others' FPR means
        (EMPTY_MIDDLE, [1 / 6, np.nan, 0.2], [2 / 10, (0 / 6 + 0 / 10) / 2, 1 / 6]),
        # two classes: balanced FPR of class 1 is the ordinary FPR 1 / 5
        (BINARY, [1 / 5, 3 / 15], [3 / 15, 1 / 5]),
    ],
)
def test_rates_from_confusion(confusion: np.ndarray, fnr: list[float], fpr: list[float]) -> None:
    np.testing.assert_allclose(metrics.fnr_from_confusion(confusion), fnr)
    np.testing.assert_allclose(metrics.balanced_fpr_from_confusion(confusion), fpr)


def test_confusion_level_functions_take_a_batch_axis() -> None:
    batch = np.stack([THREE, EMPTY_MIDDLE])
    np.testing.assert_allclose(metrics.fnr_from_confusion(batch)[1], [1 / 6, np.nan, 0.2])
    np.testing.assert_allclose(metrics.accuracy_from_confusion(batch), [21 / 30, 13 / 16])


def test_label_level_functions_match_the_confusion_matrix() -> None:
    y = np.array([0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 0, 1, 2, 2, 0, 2])
    cm = metrics.confusion_matrix(y, pred, n_classes=3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 1, 1], [1, 0, 2]])
    np.testing.assert_allclose(metrics.fnr_per_class(y, pred, n_classes=3), [1 / 3, 1 / 2, 1 / 3])
    np.testing.assert_allclose(
        metrics.balanced_fpr_per_class(y, pred, n_classes=3),
        [(0 + 1 / 3) / 2, (1 / 3 + 0) / 2, (0 + 1 / 2) / 2],
    )


def test_scores_are_reduced_to_their_top_label() -> None:
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    np.testing.assert_array_equal(metrics.to_labels(scores, n_classes=2), [1, 0, 1])


def test_max_min_variance_and_variance_increase() -> None:
    before, after = np.array([0.2, 0.4, 0.3]), np.array([0.1, 0.5, 0.3])
    assert metrics.max_min(before) == pytest.approx(0.2)
    assert metrics.variance(before) == pytest.approx(0.02 / 3)
    # (Var_int8 - Var_float) / 0.25 = (0.08 / 3 - 0.02 / 3) / 0.25
    assert metrics.variance_increase(before, after) == pytest.approx(0.08)
    # NaN classes are ignored; one value is not a spread
    assert metrics.max_min([0.1, np.nan, 0.4]) == pytest.approx(0.3)
    assert np.isnan(metrics.max_min([0.1, np.nan]))


FPR_FLOAT, FNR_FLOAT = np.array([0.1, 0.2, 0.1]), np.array([0.2, 0.4, 0.2])
FPR_INT8, FNR_INT8 = np.array([0.2, 0.2, 0.1]), np.array([0.2, 0.6, 0.1])


def test_cev_and_sde_by_hand() -> None:
    # d = (int8 - float) / float: dFPR = (1, 0, 0), dFNR = (0, 0.5, -0.5); centroid (1/3, 0)
    # squared distances 4/9, 1/9 + 1/4, 1/9 + 1/4 -> mean 7/18
    assert metrics.cev(FPR_FLOAT, FNR_FLOAT, FPR_INT8, FNR_INT8) == pytest.approx(7 / 18)
    assert metrics.cev(
        FPR_FLOAT, FNR_FLOAT, FPR_INT8, FNR_INT8, variant="half_percent"
    ) == pytest.approx(7 / 18 * 100**2 / 2)
    assert metrics.sde(FPR_FLOAT, FNR_FLOAT, FPR_INT8, FNR_INT8) == pytest.approx(
        (1 + 0.5 + 0.5) / 3
    )


def test_cev_leaves_out_classes_with_a_zero_float_rate_and_names_them() -> None:
    fpr_float = np.array([0.0, 0.2, 0.1])
    # class 0 is left out: points (0, 0.5) and (0, -0.5), centroid (0, 0)
    assert metrics.cev(fpr_float, FNR_FLOAT, FPR_INT8, FNR_INT8) == pytest.approx(0.25)
    assert metrics.cev_excluded_classes(fpr_float, FNR_FLOAT, ["a", "b", "c"]) == ["a"]
    assert np.isnan(metrics.cev(np.zeros(3), FNR_FLOAT, FPR_INT8, FNR_INT8))


def test_unknown_cev_variant_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown CEV variant"):
        metrics.cev(FPR_FLOAT, FNR_FLOAT, FPR_INT8, FNR_INT8, variant="nope")


def test_cie_fraction_and_its_modal_form() -> None:
    assert metrics.cie_fraction([0, 1, 2, 2], [0, 1, 1, 0]) == pytest.approx(0.5)
    # three seeds per population: the modal labels are (0, 1, 2) and (0, 2, 2)
    float_seeds = np.array([[0, 1, 2], [0, 1, 2], [1, 0, 2]])
    int8_seeds = np.array([[0, 2, 2], [0, 2, 1], [0, 1, 2]])
    assert metrics.cie_fraction(float_seeds, int8_seeds) == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("pred", "message"),
    [
        ([0, 1, 3], metrics.ERR_LABEL_RANGE.format(name="y_pred", high=2, bad="3")),
        ([0, -1, 1], metrics.ERR_LABEL_RANGE.format(name="y_pred", high=2, bad="-1")),
        (np.ones((3, 4)), metrics.ERR_SCORE_COLUMNS.format(name="y_pred", got=4, expected=3)),
        (np.array([[0.1, np.nan, 0.2]] * 3), metrics.ERR_NONFINITE.format(name="y_pred")),
        ([0.5, 1, 2], metrics.ERR_NOT_INTEGER.format(name="y_pred", dtype="float64")),
        (np.zeros((3, 3, 3)), metrics.ERR_NOT_1D.format(name="y_pred", shape=(3, 3, 3))),
    ],
)
def test_bad_predictions_are_named(pred: object, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        metrics.confusion_matrix([0, 1, 2], pred, n_classes=3)  # type: ignore[arg-type]


def test_length_mismatch_and_too_few_classes() -> None:
    with pytest.raises(
        ValueError,
        match=re.escape(
            metrics.ERR_LENGTH.format(name="y_pred", got=2, reference="y_true", expected=3)
        ),
    ):
        metrics.confusion_matrix([0, 1, 1], [0, 1], n_classes=2)
    with pytest.raises(ValueError, match=re.escape(metrics.ERR_FEW_CLASSES.format(n=1))):
        metrics.confusion_matrix([0], [0], n_classes=1)
