"""Int8 PTQ builds with real TensorFlow: io types, per-tensor weights, calibration, MobileNets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qbias_check import artifacts
from qbias_check._optional import require
from qbias_check.artifacts import build_int8, build_int8_cached, calibration_sample
from qbias_check.cache import Cache
from qbias_check.runners import InputMismatchError, ModelLoadError, load_runner
from tests.integration.conftest import CLASSES, ImageData, SavedKeras, make_images


def interpreter(data: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    # Not allocated: tensor details then describe the file as written, before any delegate.
    return Interpreter(model_content=data)


def weight_scale_counts(data: bytes) -> list[int]:
    """Number of quantization scales of each int8 tensor of rank 2 or more (the weights)."""
    counts = []
    for t in interpreter(data).get_tensor_details():
        q = t["quantization_parameters"]
        if t["dtype"] == np.int8 and len(t["shape"]) >= 2 and len(q["scales"]) > 0:
            counts.append(len(q["scales"]))
    return counts


def float_scores(model: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=32, verbose=0))


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return make_images(128, seed=2).x


def write(tmp_path: Path, data: bytes, name: str = "model.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_int8_io_makes_input_and_output_int8(cnn_int8_path: Path) -> None:
    interp = interpreter(cnn_int8_path.read_bytes())
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8


def test_float_io_keeps_float_edges_and_int8_inside(
    tmp_path: Path, keras3_cnn: SavedKeras, calibration: np.ndarray, images: ImageData
) -> None:
    data = build_int8(keras3_cnn.model, calibration, io="float")
    interp = interpreter(data)
    assert interp.get_input_details()[0]["dtype"] == np.float32
    assert interp.get_output_details()[0]["dtype"] == np.float32
    assert any(t["dtype"] == np.int8 for t in interp.get_tensor_details())
    scores = load_runner(write(tmp_path, data)).predict(images.x)
    assert agreement(scores, float_scores(keras3_cnn.model, images.x)) >= 0.9


def test_per_tensor_weights_have_one_scale_each(
    keras3_cnn: SavedKeras, calibration: np.ndarray, cnn_int8_path: Path
) -> None:
    per_channel = weight_scale_counts(cnn_int8_path.read_bytes())
    per_tensor = weight_scale_counts(build_int8(keras3_cnn.model, calibration, per_channel=False))
    assert max(per_channel) > 1  # conv kernels get one scale per output channel by default
    assert per_tensor and set(per_tensor) == {1}


def test_build_from_keras_file_matches_build_from_model(
    tmp_path: Path,
    keras3_cnn: SavedKeras,
    calibration: np.ndarray,
    cnn_int8_path: Path,
    images: ImageData,
) -> None:
    # Same weights, same calibration draw: the same integer model, though not the same bytes
    # (tensor names differ between the in-memory and the reloaded model).
    from_file = load_runner(write(tmp_path, build_int8(keras3_cnn.path, calibration)))
    from_model = load_runner(cnn_int8_path)
    assert from_file.input_spec.scale == from_model.input_spec.scale
    np.testing.assert_array_equal(from_file.predict(images.x), from_model.predict(images.x))


def test_calibration_data_is_what_sets_the_input_scale(
    keras3_cnn: SavedKeras, calibration: np.ndarray
) -> None:
    def input_scale(x: np.ndarray) -> float:
        data = build_int8(keras3_cnn.model, x, samples=20)
        return float(interpreter(data).get_input_details()[0]["quantization"][0])

    full, half = input_scale(calibration), input_scale(calibration / 2)
    assert full == pytest.approx(255 / 255, rel=0.05)  # [0, 255] over 256 int8 steps
    assert half == pytest.approx(full / 2, rel=0.05)


def test_calibration_sample_is_seeded_and_without_replacement() -> None:
    x = np.arange(50)
    a = calibration_sample(x, samples=10, seed=0)
    np.testing.assert_array_equal(a, calibration_sample(x, samples=10, seed=0))
    assert len(set(a.tolist())) == 10
    assert not np.array_equal(a, calibration_sample(x, samples=10, seed=1))
    np.testing.assert_array_equal(calibration_sample(x, samples=500, seed=3), x)


def test_tf_keras_model_and_h5_file_build(
    tmp_path: Path, tfkeras_h5: SavedKeras, calibration: np.ndarray, images: ImageData
) -> None:
    from_model = build_int8(tfkeras_h5.model, calibration, samples=50)
    from_file = build_int8(tfkeras_h5.path, calibration, samples=50)
    scores = load_runner(write(tmp_path, from_file)).predict(images.x)
    assert scores.shape == (len(images.x), CLASSES)
    assert interpreter(from_model).get_input_details()[0]["dtype"] == np.int8


def test_saved_model_dir_builds(
    tmp_path: Path, cnn_saved_model: Path, keras3_cnn: SavedKeras, calibration: np.ndarray
) -> None:
    data = build_int8(cnn_saved_model, calibration, samples=50)
    scores = load_runner(write(tmp_path, data)).predict(calibration)
    assert agreement(scores, float_scores(keras3_cnn.model, calibration)) >= 0.9


def test_cached_build_is_built_once(
    tmp_path: Path,
    keras3_cnn: SavedKeras,
    calibration: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []
    real: Callable[..., bytes] = artifacts.build_int8

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(artifacts, "build_int8", counting)
    cache = Cache(tmp_path / "cache")
    first = build_int8_cached(keras3_cnn.path, calibration, cache, samples=30)
    second = build_int8_cached(keras3_cnn.path, calibration, cache, samples=30)
    other = build_int8_cached(keras3_cnn.path, calibration, cache, samples=30, seed=1)
    assert first == second != other
    assert len(calls) == 2
    assert load_runner(first).input_spec.dtype == "int8"


# --- bad input ---------------------------------------------------------------------------------


def test_bad_options_are_refused(keras3_cnn: SavedKeras, calibration: np.ndarray) -> None:
    with pytest.raises(ValueError, match="io must be one of"):
        build_int8(keras3_cnn.model, calibration, io="uint8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        build_int8(keras3_cnn.model, calibration, samples=0)
    with pytest.raises(ValueError, match="calibration data is empty"):
        build_int8(keras3_cnn.model, calibration[:0])


def test_calibration_shape_mismatch_names_both_shapes(
    keras3_cnn: SavedKeras, calibration: np.ndarray
) -> None:
    with pytest.raises(InputMismatchError, match=r"\(3, 8, 8, 3\).*\(N, 16, 16, 3\)"):
        build_int8(keras3_cnn.model, np.zeros((3, 8, 8, 3), dtype=np.float32))


def test_tflite_and_foreign_objects_cannot_be_quantized(
    cnn_int8_path: Path, calibration: np.ndarray
) -> None:
    with pytest.raises(ModelLoadError, match=r"tiny_cnn_int8\.tflite cannot be quantized"):
        build_int8(cnn_int8_path, calibration)
    with pytest.raises(TypeError, match="cannot quantize an object of type dict"):
        build_int8({"not": "a model"}, calibration)


# --- MobileNets at small sizes (slow: each conversion takes several seconds) -------------------


def mobilenet(name: str, size: int) -> Any:
    keras = require("keras")
    keras.utils.set_random_seed(0)
    common: dict[str, Any] = {"input_shape": (size, size, 3), "weights": None, "classes": CLASSES}
    if name == "v2":
        return keras.applications.MobileNetV2(**common)
    return keras.applications.MobileNetV3Small(
        **common, minimalistic=name == "v3small-minimalistic", dropout_rate=0.0
    )


def calibrate_batch_norm(model: Any, x: np.ndarray) -> None:
    """Set every BatchNorm's moving statistics to the batch statistics of ``x``.

    Untrained MobileNets with default statistics give every class the same score; with statistics
    from real inputs their outputs differ per example, so top-1 agreement means something.
    """
    keras = require("keras")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(x, training=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["v2", "v3small", "v3small-minimalistic"])
def test_mobilenets_build_and_agree(tmp_path: Path, name: str) -> None:
    size = 32
    rng = np.random.default_rng(0)
    # Per-image colour shifts make examples differ beyond pixel noise.
    x = np.clip(rng.random((160, size, size, 3)) * 128 + rng.random((160, 1, 1, 3)) * 128, 0, 255)
    x = x.astype(np.float32)
    if name == "v2":
        x = x / 127.5 - 1  # MobileNetV2 has no built-in rescaling: inputs in [-1, 1]
    model = mobilenet(name, size)
    calibrate_batch_norm(model, x[:128])
    expected = float_scores(model, x)
    assert len(set(expected.argmax(axis=1).tolist())) > 1  # else agreement would be trivial
    runner = load_runner(write(tmp_path, build_int8(model, x, samples=100, per_channel=False)))
    scores = runner.predict(x, batch_size=32)
    assert scores.shape == (len(x), CLASSES)
    # Measured about 0.87 for v3small; a broken input quantization gives about chance (0.25).
    assert agreement(scores, expected) >= 0.6
