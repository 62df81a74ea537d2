"""Tiny real models, built once per session: a trained Keras 3 CNN, its int8 and float .tflite,
its SavedModel export, and a tf_keras CNN saved as .h5."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qbias_check._optional import require

SIZE = 16
CLASSES = 4


@dataclass(frozen=True)
class ImageData:
    """Synthetic images in [0, 255] whose class is the dominant colour (or a dark image)."""

    x: np.ndarray
    y: np.ndarray


@dataclass(frozen=True)
class SavedKeras:
    """An in-memory model and the file it was saved to."""

    model: Any
    path: Path


def make_images(n: int, seed: int) -> ImageData:
    """Class k < 3 brightens channel k; class 3 is a dark image. Learnable by a tiny CNN."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, CLASSES, size=n)
    base = np.full((n, 1, 1, 3), 70.0)
    for k in range(3):
        base[y == k, 0, 0, k] = 190.0
    base[y == 3] = 25.0
    x = np.clip(base + rng.normal(0.0, 35.0, size=(n, SIZE, SIZE, 3)), 0, 255)
    return ImageData(x=x.astype(np.float32), y=y)


@pytest.fixture(scope="session")
def images() -> ImageData:
    """Evaluation images (float32 in [0, 255]) and their labels."""
    return make_images(200, seed=1)


@pytest.fixture(scope="session")
def keras3_cnn(tmp_path_factory: pytest.TempPathFactory) -> SavedKeras:
    """A Keras 3 CNN trained for a few epochs, saved as .keras."""
    require("tensorflow")
    keras = require("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(CLASSES, activation="softmax"),
        ],
        name="tiny_cnn",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    train = make_images(256, seed=0)
    model.fit(train.x, train.y, epochs=6, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("keras3") / "tiny_cnn.keras"
    model.save(path)
    return SavedKeras(model=model, path=path)


@pytest.fixture(scope="session")
def cnn_int8_path(keras3_cnn: SavedKeras, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN quantized to full int8 (int8 input and output) by ``build_int8``."""
    from qbias_check.artifacts import build_int8

    calibration = make_images(128, seed=2).x
    path = tmp_path_factory.mktemp("int8") / "tiny_cnn_int8.tflite"
    path.write_bytes(build_int8(keras3_cnn.model, calibration, samples=100, seed=0))
    return path


@pytest.fixture(scope="session")
def cnn_saved_model(keras3_cnn: SavedKeras, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN exported as a SavedModel directory."""
    path = tmp_path_factory.mktemp("savedmodel") / "tiny_cnn"
    keras3_cnn.model.export(str(path), format="tf_saved_model", verbose=False)
    return path


@pytest.fixture(scope="session")
def cnn_float_tflite_path(cnn_saved_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CNN converted to a float .tflite, without any quantization."""
    tf = require("tensorflow")
    path = tmp_path_factory.mktemp("float") / "tiny_cnn_float.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(cnn_saved_model)).convert())
    return path


def tfkeras_cnn() -> Any:
    """A small seeded tf_keras CNN for SIZE x SIZE images in [0, 255] and CLASSES classes."""
    require("tensorflow")
    tf_keras = require("tf_keras")
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    return tf_keras.Sequential(
        [
            layers.Input((SIZE, SIZE, 3)),
            layers.Rescaling(1 / 255),
            layers.Conv2D(8, 3, activation="relu"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(CLASSES, activation="softmax"),
        ]
    )


@pytest.fixture(scope="session")
def tfkeras_h5(tmp_path_factory: pytest.TempPathFactory) -> SavedKeras:
    """An (untrained, seeded) tf_keras CNN saved as a legacy .h5 file."""
    model = tfkeras_cnn()
    path = tmp_path_factory.mktemp("tfkeras") / "tiny_cnn.h5"
    with pytest.warns(UserWarning, match="legacy"):
        model.save(path)
    return SavedKeras(model=model, path=path)


HAIR_SIZE = 24


@pytest.fixture(scope="session")
def model_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repo: float.keras (a small CNN trained on synthetic hair images), its int8 PTQ
    build int8.tflite, eval.npz (400 synthetic images, another seed), and a cache folder."""
    require("tensorflow")
    keras = require("keras")
    from qbias_check.artifacts import build_int8
    from qbias_check.datasets import save_npz
    from qbias_check.datasets.synthetic import make_hair

    root = tmp_path_factory.mktemp("model_repo")
    keras.utils.set_random_seed(0)
    train = make_hair(600, seed=0, size=HAIR_SIZE)
    model = keras.Sequential(
        [
            keras.Input((HAIR_SIZE, HAIR_SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(5, activation="softmax"),
        ]
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    x = np.asarray(train.x, dtype=np.float32)
    model.fit(x, train.y, epochs=3, batch_size=64, verbose=0)
    model.save(root / "float.keras")
    (root / "int8.tflite").write_bytes(build_int8(model, x, samples=50))
    save_npz(make_hair(400, seed=1, size=HAIR_SIZE), root / "eval.npz")
    return root
