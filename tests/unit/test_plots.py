"""plots: every figure is a valid, non-blank PNG drawn from a real compare() report dict."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from qbias_check import compare, plots

pytest.importorskip("matplotlib")
Image = pytest.importorskip("PIL.Image")

CLASSES = ["black", "blond", "brown", "gray", "bald"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def report_data(*, empty_class: bool = False, model: str | None = "hair-v3small") -> dict[str, Any]:
    """A report dict from compare() on synthetic labels: int8 hurts 'bald', two attributes."""
    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, len(CLASSES) - (1 if empty_class else 0), n)
    ref = np.where(rng.random(n) < 0.85, y, rng.integers(0, len(CLASSES), n))
    quant = np.where(rng.random(n) < 0.9, ref, rng.integers(0, len(CLASSES), n))
    quant[(y == 4) & (rng.random(n) < 0.3)] = 0
    attributes = {
        "male": np.where(rng.random(n) < 0.5, "male", "female"),
        "age": rng.choice(["young", "middle", "old"], n),
    }
    comparison = compare(y, ref, quant, classes=CLASSES, attributes=attributes, bootstrap=100)
    data = comparison.to_dict()
    if model is not None:
        data["model"] = model
    return data


def assert_png(png: bytes, *, min_side: int = 200) -> None:
    """A decodable PNG of a real size whose pixels are not all the same."""
    assert png[:8] == PNG_SIGNATURE
    image = Image.open(io.BytesIO(png))
    image.load()
    assert min(image.size) >= min_side
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.var() > 0


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return report_data()


@pytest.mark.parametrize("rate", ["fnr", "fpr"])
def test_per_class_rates_is_a_png(data: dict[str, Any], rate: str) -> None:
    assert_png(plots.per_class_rates(data, rate))  # type: ignore[arg-type]


def test_per_class_rates_draws_optional_intervals(data: dict[str, Any]) -> None:
    with_intervals = {
        **data,
        "per_class": [
            {
                **r,
                "fnr_float_low": 0.0,
                "fnr_float_high": 0.3,
                "fnr_int8_low": 0.0,
                "fnr_int8_high": 0.5,
            }
            for r in data["per_class"]
        ],
    }
    assert plots.per_class_rates(with_intervals) != plots.per_class_rates(data)


def test_per_class_rates_rejects_unknown_rate(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="rate must be 'fnr' or 'fpr'; got 'tpr'"):
        plots.per_class_rates(data, "tpr")  # type: ignore[arg-type]


def test_per_class_changes_is_a_png(data: dict[str, Any]) -> None:
    assert_png(plots.per_class_changes(data))


@pytest.mark.parametrize("attribute", ["male", "age"])
def test_attribute_gaps_two_and_three_groups(data: dict[str, Any], attribute: str) -> None:
    assert_png(plots.attribute_gaps(data, attribute))


def test_attribute_gaps_unknown_attribute(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"no attribute 'young' in the report; known: \['age'"):
        plots.attribute_gaps(data, "young")


def test_standard_figures_names_and_same_bytes_twice(data: dict[str, Any]) -> None:
    first = plots.standard_figures(data)
    assert list(first) == [
        "fnr_per_class",
        "fpr_per_class",
        "changes_per_class",
        "gaps_male",
        "gaps_age",
    ]
    for png in first.values():
        assert_png(png)
    assert plots.standard_figures(data) == first


def test_class_without_examples_and_no_model_name_still_draw() -> None:
    data = report_data(empty_class=True, model=None)
    assert data["per_class"][-1]["fnr_float"] is None
    for png in plots.standard_figures(data).values():
        assert_png(png)


def _features(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = rng.normal(0, 4, size=(3, 12))
    f_float = centres[y] + rng.normal(0, 1, size=(n, 12))
    f_int8 = f_float + rng.normal(0, 0.8, size=(n, 12))
    flipped = rng.random(n) < 0.1
    return f_float, f_int8, y, flipped


def test_tsne_is_a_png_on_a_subsample() -> None:
    # One embedding run per model is the cost here, so a single small case covers drawing,
    # the flip rings and the subsample.
    f_float, f_int8, y, flipped = _features(50, seed=1)
    png = plots.tsne(f_float, f_int8, y, flipped, ["a", "b", "c"], max_points=40, title="tiny")
    assert_png(png)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features_int8": np.zeros((59, 12))}, "must be 2-D arrays with the same number of rows"),
        ({"y": np.zeros(10, int)}, "y has 10 entries; the features have 60 rows"),
        ({"flipped": np.zeros(3, bool)}, "flipped has 3 entries; the features have 60 rows"),
    ],
)
def test_tsne_rejects_mismatched_inputs(change: dict[str, Any], message: str) -> None:
    f_float, f_int8, y, flipped = _features(60, seed=1)
    args: dict[str, Any] = {
        "features_float": f_float,
        "features_int8": f_int8,
        "y": y,
        "flipped": flipped,
        "classes": ["a", "b", "c"],
        **change,
    }
    with pytest.raises(ValueError, match=message):
        plots.tsne(**args)


def test_penultimate_features_rejects_unknown_file_kind(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r"penultimate features need a \.tflite"):
        plots.penultimate_features(tmp_path / "model.onnx", np.zeros((1, 4)))
