"""Synthetic hair set: determinism, CelebA's proportions, learnable but not trivially."""

from __future__ import annotations

import re

import numpy as np
import pytest

from qbias_check.datasets import EvalSet
from qbias_check.datasets import synthetic as sy


@pytest.fixture(scope="module")
def hair() -> EvalSet:
    return sy.make_hair(2400, seed=5, size=32)


def test_shape_classes_and_groups(hair: EvalSet) -> None:
    assert hair.inputs().shape == (2400, 32, 32, 3)
    assert hair.inputs().dtype == np.uint8
    assert hair.classes == ("bald", "black", "blond", "brown", "gray")
    assert set(hair.attributes["male"].tolist()) == {"female", "male"}
    assert set(hair.attributes["young"].tolist()) == {"old", "young"}
    assert hair.source == "synthetic:hair?n=2400&seed=5&size=32"
    assert sy.make_hair(40).inputs().shape == (40, 64, 64, 3)  # default size


def test_same_seed_same_bytes_whatever_the_threads() -> None:
    a = sy.make_hair(300, seed=1, size=16)
    assert a.content_hash == sy.make_hair(300, seed=1, size=16).content_hash
    assert a.content_hash != sy.make_hair(300, seed=2, size=16).content_hash
    h, m, y = np.arange(300) % 5, np.arange(300) % 2 == 0, np.arange(300) % 3 > 0
    one = sy.render(h, m, y, seed=4, size=16, workers=1)
    assert np.array_equal(one, sy.render(h, m, y, seed=4, size=16, workers=3))


def test_class_shares_follow_the_celeba_table(hair: EvalSet) -> None:
    total = sum(row[0] for row in sy.HAIR_TABLE.values())
    shares = np.bincount(hair.y, minlength=5) / len(hair)
    expected = [row[0] / total for row in sy.HAIR_TABLE.values()]
    assert np.abs(shares - expected).max() < 0.001
    # Spelled out, so an edited table fails here: bald and gray rare, black the largest.
    assert shares.round(3).tolist() == [0.027, 0.378, 0.226, 0.314, 0.055]


def test_male_and_young_shares_per_class(hair: EvalSet) -> None:
    male = hair.attributes["male"] == "male"
    young = hair.attributes["young"] == "young"
    for k, (count, p_male, p_young) in enumerate(sy.HAIR_TABLE.values()):
        in_class = hair.y == k
        assert count > 0
        assert abs(male[in_class].mean() - p_male) <= 1 / in_class.sum()
        assert abs(young[in_class].mean() - p_young) <= 1 / in_class.sum()
    assert abs(male.mean() - 0.380) < 0.01
    assert abs(young.mean() - 0.795) < 0.01
    bald, blond, gray = hair.y == 0, hair.y == 2, hair.y == 4
    assert male[bald].mean() > 0.95 and male[blond].mean() < 0.1
    assert young[gray].mean() < 0.1 and young[bald].mean() < 0.4


def test_blond_task_follows_the_binary_table() -> None:
    es = sy.make_blond(3000, seed=2, size=16)
    assert es.classes == ("not_blond", "blond")
    total = sum(sy.BLOND_TABLE.values())
    male = es.attributes["male"] == "male"
    young = es.attributes["young"] == "young"
    for (blond, is_male, is_young), count in sy.BLOND_TABLE.items():
        cell = (es.y == blond) & (male == is_male) & (young == is_young)
        assert abs(cell.mean() - count / total) <= 1 / len(es)
    assert abs(es.y.mean() - 0.148) < 0.002
    assert male[es.y == 1].mean() < 0.07  # blond people are mostly women


def test_label_noise_is_small_and_shows_a_neighbour() -> None:
    y = np.repeat(np.arange(5), 4000)
    shown = sy._label_noise(y, sy.HAIR_CLASSES, np.random.default_rng(0))
    flipped = shown != y
    assert 0.02 < flipped.mean() < 0.03
    for true, seen in zip(y[flipped], shown[flipped], strict=True):
        assert sy.HAIR_CLASSES[seen] in sy.NEIGHBOURS[sy.HAIR_CLASSES[true]]


def _features(x: np.ndarray) -> np.ndarray:
    """8x8 pooled pixels plus a coarse colour histogram of the upper image (where hair is)."""
    n, h, w, _ = x.shape
    f = x.astype(np.float32) / 255
    pooled = f.reshape(n, 8, h // 8, 8, w // 8, 3).mean((2, 4)).reshape(n, -1)
    q = np.clip((f[:, : int(h * 0.6)] * 6).astype(np.int64), 0, 5)
    code = (q[..., 0] * 36 + q[..., 1] * 6 + q[..., 2]).reshape(n, -1)
    hist = np.stack([np.bincount(c, minlength=216) for c in code]) / code.shape[1]
    return np.hstack([pooled, np.sqrt(hist)])


def _ridge_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    mu, sd = train.mean(0), train.std(0) + 1e-6
    a, b = (train - mu) / sd, (test - mu) / sd
    a, b = np.hstack([a, np.ones((len(a), 1))]), np.hstack([b, np.ones((len(b), 1))])
    weights = np.linalg.solve(a.T @ a + 0.01 * len(a) * np.eye(a.shape[1]), a.T @ np.eye(5)[y])
    return np.asarray((b @ weights).argmax(1))


def test_classes_are_learnable_but_not_trivially_separable(hair: EvalSet) -> None:
    # Measured (32 px, 1600 train / 800 test, seeds 5/6/7): ridge 0.78/0.78/0.79, nearest
    # centroid 0.46/0.46/0.49, majority 0.41/0.36/0.39, uniform chance 0.2.
    f = _features(hair.inputs())
    y = hair.y
    pred = _ridge_predict(f[:1600], y[:1600], f[1600:])
    truth = y[1600:]
    accuracy = (pred == truth).mean()
    majority = (truth == np.bincount(y[:1600]).argmax()).mean()
    assert majority + 0.25 < accuracy < 0.92
    centroids = np.stack([f[:1600][y[:1600] == k].mean(0) for k in range(5)])
    nearest = ((f[1600:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert 0.3 < (nearest == truth).mean() < 0.75
    # Neighbouring classes are confused with each other both ways.
    black, brown, blond, gray = 1, 3, 2, 4
    assert ((truth == black) & (pred == brown)).any() and ((truth == brown) & (pred == black)).any()
    assert ((truth == gray) & (pred == blond)).any() or ((truth == blond) & (pred == gray)).any()


def test_address_and_bad_arguments() -> None:
    es = sy.from_address("synthetic:blond?n=30&size=16", seed=3)
    assert es.source == "synthetic:blond?n=30&seed=3&size=16"
    with pytest.raises(ValueError, match=re.escape("(got task 'faces')")):
        sy.from_address("synthetic:faces")
    with pytest.raises(ValueError, match=re.escape("(got colour=['red'])")):
        sy.from_address("synthetic:hair?colour=red")
    with pytest.raises(ValueError, match=re.escape(sy.BAD_COUNT.format(n=0))):
        sy.make_hair(0)
    with pytest.raises(ValueError, match=re.escape(sy.BAD_SIZE.format(size=8))):
        sy.make_blond(10, size=8)
