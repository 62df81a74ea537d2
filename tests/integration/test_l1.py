"""L1 on the last layer (thesis table 3.1): present, on the right layer, and counted in the loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qbias_check._optional import require
from qbias_check.mitigation.l1 import (
    BAD_L1,
    NO_KERNEL_LAYER,
    NOT_REBUILDABLE,
    UNKNOWN_LAYER,
    with_l1_last_layer,
)


@pytest.fixture(scope="module")
def keras() -> Any:
    return require("tf_keras")


@pytest.fixture(scope="module")
def small_model(keras: Any) -> Any:
    """Conv, then two Dense layers: the L1 belongs on the second Dense only."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def l1_penalty(model: Any) -> float:
    return float(sum(float(loss) for loss in model.losses))


def test_l1_goes_on_the_last_dense_layer_and_into_the_loss(keras: Any, small_model: Any) -> None:
    regularized = with_l1_last_layer(small_model, l1=0.01)
    head = regularized.get_layer("head")
    assert isinstance(head.kernel_regularizer, keras.regularizers.L1)
    assert head.kernel_regularizer.get_config()["l1"] == pytest.approx(0.01)
    assert regularized.get_layer("hidden").kernel_regularizer is None
    assert small_model.get_layer("head").kernel_regularizer is None  # the original is untouched
    kernel = head.kernel.numpy()
    assert l1_penalty(regularized) == pytest.approx(0.01 * np.abs(kernel).sum(), rel=1e-5)
    assert small_model.losses == []
    x = np.random.default_rng(0).random((5, 8, 8, 3), dtype=np.float32)
    np.testing.assert_array_equal(regularized(x).numpy(), small_model(x).numpy())


def test_l1_penalty_adds_to_the_training_loss(small_model: Any) -> None:
    regularized = with_l1_last_layer(small_model, l1=1.0)
    x = np.random.default_rng(1).random((16, 8, 8, 3), dtype=np.float32)
    y = np.arange(16) % 3
    losses = []
    for model in (small_model, regularized):
        model.compile(loss="sparse_categorical_crossentropy")
        losses.append(model.evaluate(x, y, verbose=0))
    assert losses[1] - losses[0] == pytest.approx(l1_penalty(regularized), rel=1e-4)


def test_l1_on_a_named_layer_of_a_sequential_model(keras: Any) -> None:
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, name="a"), keras.layers.Dense(2, name="b")]
    )
    regularized = with_l1_last_layer(model, l1=1e-4, layer="a")
    assert isinstance(regularized, keras.Sequential)
    assert regularized.get_layer("a").kernel_regularizer is not None
    assert regularized.get_layer("b").kernel_regularizer is None


@pytest.mark.slow
def test_l1_on_mobilenet_v3_small_goes_on_the_logits_conv(keras: Any) -> None:
    model = keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=3
    )
    regularized = with_l1_last_layer(model)
    logits = regularized.get_layer("Logits")
    assert isinstance(logits.kernel_regularizer, keras.regularizers.L1)
    assert len(regularized.losses) == 1
    assert l1_penalty(regularized) == pytest.approx(0.01 * np.abs(logits.kernel.numpy()).sum())


def test_bad_input_gives_clear_errors(keras: Any, small_model: Any) -> None:
    with pytest.raises(ValueError, match=BAD_L1.format(0)):
        with_l1_last_layer(small_model, l1=0)
    with pytest.raises(ValueError) as info:
        with_l1_last_layer(small_model, layer="nope")
    assert str(info.value) == UNKNOWN_LAYER.format(small_model.name, "nope", "conv, hidden, head")
    no_kernel = keras.Sequential([keras.Input((4,)), keras.layers.ReLU()], name="nk")
    with pytest.raises(ValueError) as info:
        with_l1_last_layer(no_kernel)
    assert str(info.value) == NO_KERNEL_LAYER.format("nk")

    class Subclassed(keras.Model):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__(name="sub")
            self.dense = keras.layers.Dense(2)

        def call(self, x: Any) -> Any:
            return self.dense(x)

    with pytest.raises(ValueError) as info:
        with_l1_last_layer(Subclassed())
    assert str(info.value) == NOT_REBUILDABLE.format("sub")
