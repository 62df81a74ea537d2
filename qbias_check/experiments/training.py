"""Networks and the thesis's training recipe (3.4.3), in tf_keras.

Every network takes images in [0, 255] (float32) and ends in a softmax, so the same arrays feed
the float model, PTQ calibration and the int8 runner. Training: SGD from learning rate 0.01 on an
exponential schedule (x0.9 per epoch; the thesis names no rate), the best epoch on validation
accuracy kept, and BatchNorm momentum 0.9 instead of Keras's 0.999 (that value suits ImageNet-
length runs; after a few hundred steps its moving statistics are still the initial ones and the
model predicts one class in inference mode).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from qbias_check._optional import require

LEARNING_RATE = 0.01
LR_DECAY_PER_EPOCH = 0.9
# The thesis does not state a momentum; from random weights (no ImageNet here) plain SGD at 0.01
# barely moves within the smaller budgets, so the classic 0.9 is used.
SGD_MOMENTUM = 0.9
BN_MOMENTUM = 0.9
PREDICT_BATCH = 256

ARCHITECTURES = ("ResNet-18", "MobileNetV2", "MobileNetV3Small", "MobileNetV3Small-minimalistic")
UNKNOWN_ARCHITECTURE = "unknown architecture {name!r}; known: {known}"


@dataclass(frozen=True)
class Recipe:
    """One float-model setting of the thesis (table 3.1): network plus regularization."""

    name: str
    architecture: str
    l1: float | None = None
    class_weighting: bool = False
    augment: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "l1_last_layer": self.l1,
            "class_weighting": self.class_weighting,
            "horizontal_flip": self.augment,
        }


def describe_network(architecture: str, *, alpha_v2: float, alpha_v3: float, width: int) -> str:
    """How results name the network actually trained (widths differ from the thesis's)."""
    if architecture == "ResNet-18":
        return (
            "ResNet-18-style stand-in built here (Keras has no ResNet-18): 7x7 stem, 4 stages of "
            f"2 basic blocks, widths {width}/{2 * width}/{4 * width}/{8 * width} "
            "(ResNet-18 is 64/128/256/512), random init"
        )
    alpha = alpha_v2 if architecture == "MobileNetV2" else alpha_v3
    return f"tf_keras {architecture} alpha={alpha}, weights=None (random init; thesis: ImageNet)"


def build_model(
    architecture: str,
    *,
    size: int,
    n_classes: int,
    alpha_v2: float,
    alpha_v3: float,
    width: int,
    seed: int,
) -> Any:
    """A fresh float tf_keras model for [0, 255] inputs, BatchNorm momentum set for short runs."""
    keras = require("tf_keras")
    if architecture not in ARCHITECTURES:
        raise ValueError(UNKNOWN_ARCHITECTURE.format(name=architecture, known=ARCHITECTURES))
    keras.utils.set_random_seed(seed)
    shape = (size, size, 3)
    apps = keras.applications
    if architecture == "ResNet-18":
        model = resnet18(shape, n_classes, width=width)
    elif architecture == "MobileNetV2":
        # MobileNetV2 has no preprocessing inside and expects [-1, 1]; a Rescaling layer in the
        # same flat graph keeps one input domain for every network.
        inputs = keras.Input(shape)
        scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
        model = apps.MobileNetV2(
            input_tensor=scaled, alpha=alpha_v2, weights=None, classes=n_classes
        )
    else:
        model = apps.MobileNetV3Small(
            shape,
            alpha=alpha_v3,
            minimalistic=architecture.endswith("minimalistic"),
            weights=None,
            classes=n_classes,
        )
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = BN_MOMENTUM
    return model


def resnet18(shape: tuple[int, int, int], n_classes: int, *, width: int = 64) -> Any:
    """ResNet-18 (He et al. 2016, basic blocks [2, 2, 2, 2]) at ``width`` stem filters."""
    keras = require("tf_keras")
    layers = keras.layers

    def conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
        x = layers.Conv2D(
            filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv"
        )(x)
        return layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)

    def block(x: Any, filters: int, stride: int, name: str) -> Any:
        shortcut = x
        y = layers.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, 3, stride, f"{name}_a"))
        y = conv_bn(y, filters, 3, 1, f"{name}_b")
        if stride != 1 or int(x.shape[-1]) != filters:
            shortcut = conv_bn(x, filters, 1, stride, f"{name}_down")
        return layers.ReLU(name=f"{name}_out")(layers.Add(name=f"{name}_add")([y, shortcut]))

    inputs = keras.Input(shape)
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    x = layers.ReLU(name="stem_relu")(conv_bn(x, width, 7, 2, "stem"))
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    for stage, mult in enumerate((1, 2, 4, 8)):
        for i in range(2):
            stride = 2 if stage > 0 and i == 0 else 1
            x = block(x, width * mult, stride, f"stage{stage + 1}_block{i + 1}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"resnet18_w{width}")


def train(
    model: Any,
    train_xy: tuple[np.ndarray, np.ndarray],
    val_xy: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    class_weight: Mapping[int, float] | None = None,
    augment: bool = False,
) -> dict[str, Any]:
    """Fit with the thesis's recipe in place; keep the best epoch on validation accuracy.

    Returns the history (per-epoch loss and accuracies), the best epoch and its accuracy.
    """
    keras = require("tf_keras")
    tf = require("tensorflow")
    x, y = train_xy
    steps = max(1, math.ceil(len(y) / batch_size))
    schedule = keras.optimizers.schedules.ExponentialDecay(
        LEARNING_RATE, decay_steps=steps, decay_rate=LR_DECAY_PER_EPOCH
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=schedule, momentum=SGD_MOMENTUM),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=seed)
    data = data.batch(batch_size).map(lambda a, b: (tf.cast(a, tf.float32), b))
    if augment:
        # Horizontal flip only (thesis 3.4.3, MobileNetV3Small minimalistic).
        data = data.map(lambda a, b: (tf.image.random_flip_left_right(a, seed=seed), b))
    val = (val_xy[0].astype(np.float32), val_xy[1])
    best = _best_weights_callback(keras)
    history = model.fit(
        data.prefetch(2),
        validation_data=val,
        epochs=epochs,
        class_weight=dict(class_weight) if class_weight else None,
        callbacks=[best],
        verbose=0,
    )
    best.restore()
    return {
        "epochs": epochs,
        "best_epoch": best.best_epoch + 1,
        "best_val_accuracy": best.best,
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }


def _best_weights_callback(keras: Any) -> Any:
    """A callback that keeps the weights of the epoch with the best validation accuracy."""

    class BestWeights(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.best = -math.inf
            self.best_epoch = -1
            self.weights: list[Any] | None = None

        def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
            accuracy = float((logs or {}).get("val_accuracy", -math.inf))
            if accuracy > self.best:
                self.best, self.best_epoch = accuracy, epoch
                self.weights = self.model.get_weights()

        def restore(self) -> None:
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return BestWeights()


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    """Float scores (N, C) of a Keras model, in batches (a direct call: no predict tracing)."""
    parts = [
        np.asarray(model(x[i : i + PREDICT_BATCH].astype(np.float32), training=False))
        for i in range(0, len(x), PREDICT_BATCH)
    ]
    return np.concatenate(parts).astype(np.float32)


def predict_int8(flatbuffer: bytes, x: np.ndarray, *, name: str = "<int8 model>") -> np.ndarray:
    """Dequantized scores (N, C) of an int8 ``.tflite`` held in memory, on LiteRT."""
    from qbias_check.runners import LiteRTRunner

    runner = LiteRTRunner(name, content=flatbuffer)
    return runner.predict(x.astype(np.float32), batch_size=PREDICT_BATCH)


def copy_model(model: Any) -> Any:
    """An independent copy with the same weights (QAT wraps layers in place otherwise)."""
    keras = require("tf_keras")
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone
