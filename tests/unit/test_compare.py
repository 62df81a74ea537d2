"""compare(): hand-computed comparisons, bad input, invariants and interval coverage."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbias_check import compare, metrics
from qbias_check import comparison as cmp

# (true, float predictions, int8 predictions, male, young) per block; 0 = not blond, 1 = blond.
BLOCKS = [
    (1, [1, 1, 1, 0], [1, 1, 0, 0], "male", "young"),
    (1, [1] * 9 + [0], [1] * 8 + [0, 0], "female", "young"),
    (1, [1] * 5, [1] * 4 + [0], "female", "old"),
    (0, [0] * 10, [0] * 9 + [1], "male", "young"),
    (0, [0] * 5 + [1], [0] * 6, "female", "old"),
    (0, [0] * 5, [0] * 5, "male", "old"),
    (0, [0] * 5, [0] * 5, "female", "young"),
]


def _blond() -> dict[str, np.ndarray]:
    cols: dict[str, list[object]] = {"y": [], "ref": [], "q": [], "male": [], "young": []}
    for true, ref, q, male, young in BLOCKS:
        cols["y"] += [true] * len(ref)
        cols["ref"] += ref
        cols["q"] += q
        cols["male"] += [male] * len(ref)
        cols["young"] += [young] * len(ref)
    return {k: np.asarray(v) for k, v in cols.items()}


@pytest.fixture(scope="module")
def blond() -> cmp.Comparison:
    d = _blond()
    return compare(
        d["y"],
        d["ref"],
        d["q"],
        classes=["not_blond", "blond"],
        attributes={"male": d["male"], "young": d["young"]},
        intersections=[("male", "young")],
        bootstrap=200,
    )


def test_binary_summary_by_hand(blond: cmp.Comparison) -> None:
    # 19 blond: float misses 2, int8 misses 5; 26 not blond: float 1 false alarm, int8 1.
    pc = blond.per_class
    assert pc.loc["blond", "fnr_float"] == pytest.approx(2 / 19)
    assert pc.loc["blond", "fnr_int8"] == pytest.approx(5 / 19)
    assert pc.loc["blond", "fpr_float"] == pytest.approx(1 / 26)
    assert pc.loc["blond", "support"] == 19
    assert blond.summary["accuracy_drop"] == pytest.approx((42 - 39) / 45)
    # one flip in each of the first five blocks: 5 of 45
    assert blond.summary["cie_fraction"] == pytest.approx(5 / 45)
    assert pc.loc["blond", "broken"] == 3 and pc.loc["blond", "fixed"] == 0
    fnr_f, fnr_q = [1 / 26, 2 / 19], [1 / 26, 5 / 19]  # FNR of not blond = FPR of blond
    assert blond.summary["fnr_max_min_increase"] == pytest.approx(
        (fnr_q[1] - fnr_q[0]) - (fnr_f[1] - fnr_f[0])
    )


def test_table_4_1_subgroups_by_hand(blond: cmp.Comparison) -> None:
    g = blond.per_group.set_index(["attribute", "group", "class"])
    male_blond = g.loc[("male", "male", "blond")]
    assert male_blond["fnr_float"] == pytest.approx(1 / 4)
    assert male_blond["fnr_int8"] == pytest.approx(2 / 4)
    assert male_blond["fnr_relative_change"] == pytest.approx(1.0)
    assert g.loc[("male", "female", "blond"), "fnr_int8"] == pytest.approx(3 / 15)
    # binary: FPR of blond in a group = false alarms / not-blond examples of the group
    assert g.loc[("male", "male", "blond"), "fpr_int8"] == pytest.approx(1 / 15)
    assert g.loc[("male", "female", "blond"), "fpr_float"] == pytest.approx(1 / 11)
    # intersections: MY, MO (no blond: NaN), FY, FO
    assert g.loc[("male_x_young", "male/young", "blond"), "fnr_int8"] == pytest.approx(0.5)
    assert np.isnan(g.loc[("male_x_young", "male/old", "blond"), "fnr_float"])
    assert g.loc[("male_x_young", "female/old", "blond"), "fnr_int8"] == pytest.approx(0.2)
    assert np.isnan(g.loc[("male_x_young", "female/old", "blond"), "fnr_relative_change"])


def test_gaps_and_signed_differences_by_hand(blond: cmp.Comparison) -> None:
    # FNR gap over gender for blond: float 1/4 - 1/15, int8 2/4 - 3/15
    expected = (0.5 - 0.2) - (0.25 - 1 / 15)
    assert blond.estimate("male[blond].fnr_gap_increase") == pytest.approx(expected)
    # two groups: the signed difference is last group minus first (male - female)
    assert blond.estimate("male[blond].fnr_difference_change") == pytest.approx(expected)
    # float accuracy per group: male 18/19, female 24/26
    assert blond.estimate("male.accuracy_gap_float") == pytest.approx(18 / 19 - 24 / 26)
    low, high = blond.interval("male[blond].fnr_gap_increase")
    assert low <= high


def test_intervals_bracket_their_estimates(blond: cmp.Comparison) -> None:
    for key in ("accuracy_drop", "cie_fraction", "class[blond].fnr_increase"):
        low, high = blond.interval(key)
        assert low <= blond.estimate(key) <= high, key


def test_json_and_text_rendering(blond: cmp.Comparison) -> None:
    data = json.loads(json.dumps(blond.to_dict()))
    assert set(data["summary"]) == set(cmp.SUMMARY_KEYS)
    assert data["summary"]["cie_fraction"]["estimate"] == pytest.approx(5 / 45)
    assert len(data["summary"]["cie_fraction"]["interval"]) == 2
    assert {r["class"] for r in data["per_class"]} == {"not_blond", "blond"}
    text = blond.to_text()
    assert "FNR Max-Min" in text and "blond" in text and "male_x_young" in text


def test_same_inputs_give_the_same_bytes() -> None:
    d = _blond()
    runs = [
        json.dumps(
            compare(d["y"], d["ref"], d["q"], classes=["n", "b"], bootstrap=100, seed=7).to_dict()
        )
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_unknown_interval_name_lists_known_ones(blond: cmp.Comparison) -> None:
    with pytest.raises(KeyError, match="no interval named 'fnr_gap'"):
        blond.interval("fnr_gap")


def test_class_without_examples_is_nan_with_a_reason() -> None:
    c = compare([0, 0, 2, 2], [0, 1, 2, 2], [0, 0, 2, 1], classes=["a", "b", "c"], bootstrap=50)
    assert np.isnan(c.per_class.loc["b", "fnr_float"])
    assert c.per_class.loc["b", "support"] == 0
    assert "no examples" in c.notes["class[b]"]


N = 6
Y = [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"pred_reference": [0, 1]},
            metrics.ERR_LENGTH.format(name="pred_reference", got=2, reference="y", expected=N),
        ),
        (
            {"pred_quantized": [0, 1, 2, 3, 0, 0]},
            metrics.ERR_LABEL_RANGE.format(name="pred_quantized", high=2, bad="3"),
        ),
        (
            {"pred_reference": np.ones((N, 2))},
            metrics.ERR_SCORE_COLUMNS.format(name="pred_reference", got=2, expected=3),
        ),
        (
            {"pred_reference": np.full((N, 3), np.inf)},
            metrics.ERR_NONFINITE.format(name="pred_reference"),
        ),
        ({"classes": ["only"]}, metrics.ERR_FEW_CLASSES.format(n=1)),
        ({"classes": ["a", "a", "b"]}, cmp.ERR_CLASSES.format(classes=["a", "a", "b"])),
        (
            {"attributes": {"male": ["m"] * 5}},
            metrics.ERR_LENGTH.format(name="attribute 'male'", got=5, reference="y", expected=N),
        ),
        ({"attributes": {"male": ["m"] * N}}, cmp.ERR_ONE_GROUP.format(name="male", group="m")),
        (
            {"attributes": {"male": ["m", "f"] * 3}, "intersections": [("male", "young")]},
            cmp.ERR_UNKNOWN_INTERSECTION.format(
                combo=["male", "young"], name="young", known=["male"]
            ),
        ),
        (
            {"attributes": {"male": ["m", "f"] * 3}, "intersections": [("male",)]},
            cmp.ERR_SHORT_INTERSECTION.format(combo=["male"]),
        ),
    ],
)
def test_bad_input_is_named(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"pred_reference": Y, "pred_quantized": Y, "classes": ["a", "b", "c"]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        compare(Y, bootstrap=10, **args)  # type: ignore[arg-type]


labelled = st.integers(min_value=2, max_value=5).flatmap(
    lambda c: st.tuples(
        st.just(c),
        st.lists(
            st.tuples(
                st.integers(0, c - 1), st.integers(0, c - 1), st.integers(0, c - 1), st.booleans()
            ),
            min_size=4,
            max_size=60,
        ),
    )
)


@settings(max_examples=40, deadline=None)
@given(labelled)
def test_identical_models_change_nothing(
    data: tuple[int, list[tuple[int, int, int, bool]]],
) -> None:
    c, rows = data
    y = np.array([r[0] for r in rows])
    pred = np.array([r[1] for r in rows])
    result = compare(y, pred, pred, classes=[f"c{i}" for i in range(c)], bootstrap=20)
    s = result.summary
    for key in ("accuracy_drop", "cie_fraction", "fnr_max_min_increase", "fpr_variance_increase"):
        assert s[key] == 0 or np.isnan(s[key]), key
    assert result.per_class["flips"].sum() == 0
    assert s["cev"] == 0 or (np.isnan(s["cev"]) and "cev" in result.notes)


@settings(max_examples=40, deadline=None)
@given(labelled, st.randoms(use_true_random=False))
def test_renaming_classes_permutes_rows_and_keeps_the_summary(data, rnd) -> None:  # type: ignore[no-untyped-def]
    c, rows = data
    y, ref, q = (np.array([r[i] for r in rows]) for i in range(3))
    group = np.array(["a" if r[3] else "b" for r in rows])
    names = [f"c{i}" for i in range(c)]
    perm = list(range(c))
    rnd.shuffle(perm)
    mapping = np.array(perm)  # old id -> new id
    renamed = [names[perm.index(i)] for i in range(c)]  # new id -> the same name as before
    attrs = {"g": group} if len(set(group)) > 1 else None
    before = compare(y, ref, q, classes=names, attributes=attrs, bootstrap=0)
    after = compare(
        mapping[y], mapping[ref], mapping[q], classes=renamed, attributes=attrs, bootstrap=0
    )
    for key in cmp.SUMMARY_KEYS:
        np.testing.assert_allclose(after.summary[key], before.summary[key], err_msg=key, atol=1e-12)
    np.testing.assert_allclose(
        after.per_class.loc[names].to_numpy(dtype=float),
        before.per_class.loc[names].to_numpy(dtype=float),
        atol=1e-12,
    )


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=2, max_size=80))
def test_binary_balanced_fpr_is_the_ordinary_fpr(rows: list[tuple[int, int]]) -> None:
    y = np.array([r[0] for r in rows])
    pred = np.array([r[1] for r in rows])
    negatives = y == 0
    ordinary = np.sum(negatives & (pred == 1)) / negatives.sum() if negatives.any() else np.nan
    fpr = metrics.balanced_fpr_per_class(y, pred, n_classes=2)[1]
    np.testing.assert_allclose(fpr, ordinary)


def test_interval_of_max_min_increase_covers_the_truth_about_95_percent() -> None:
    """Simulate two models that differ only by chance around known per-class rates."""
    rng = np.random.default_rng(12345)
    fnr_float = np.array([0.10, 0.20, 0.30])
    break_p = np.array([0.0333, 0.025, 0.1143])  # a correct float answer goes wrong in int8
    fix_p = 0.10  # a wrong float answer becomes right in int8
    fnr_int8 = fnr_float + (1 - fnr_float) * break_p - fnr_float * fix_p
    truth = np.ptp(fnr_int8) - np.ptp(fnr_float)
    n, repeats, covered = 1500, 150, 0
    for _ in range(repeats):
        y = rng.integers(0, 3, n)
        wrong_f = rng.random(n) < fnr_float[y]
        wrong_q = np.where(wrong_f, rng.random(n) >= fix_p, rng.random(n) < break_p[y])
        other = (y + rng.integers(1, 3, n)) % 3
        ref = np.where(wrong_f, other, y)
        q = np.where(wrong_q, other, y)
        c = compare(
            y, ref, q, classes=["a", "b", "c"], bootstrap=300, seed=int(rng.integers(1 << 30))
        )
        low, high = c.interval("fnr_max_min_increase")
        covered += low <= truth <= high
    # A binomial(150, 0.95) lies in [0.89, 0.99] with probability > 0.99; an unpaired or
    # unstratified bootstrap gives far wider intervals (coverage ~1.0), a broken one far less.
    assert 0.89 <= covered / repeats <= 0.99
