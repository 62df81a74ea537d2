"""Penultimate-layer features of float and int8 models come from the same layer and agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qbias_check._optional import require
from tests.integration.conftest import ImageData, SavedKeras

pytest.importorskip("ai_edge_litert")

# The tiny CNN's head is Dense(4) on GlobalAveragePooling2D of an 8-filter Conv2D.
TINY_FEATURES = 8
# Float and int8 features may differ by rounding through the network, not by more.
STEPS = 4


def quantization_step(path: Path) -> float:
    """The scale of the tensor that :func:`penultimate_features` reads from an int8 model."""
    from ai_edge_litert.interpreter import Interpreter

    from qbias_check.plots import WEIGHTED_OPS

    interp = Interpreter(model_path=str(path))
    head = [o for o in interp._get_ops_details() if o["op_name"] in WEIGHTED_OPS][-1]
    tensor = int(head["inputs"][0])
    detail = next(d for d in interp.get_tensor_details() if d["index"] == tensor)
    return float(detail["quantization"][0])


def test_float_and_int8_features_of_the_tiny_cnn_agree(
    keras3_cnn: SavedKeras, cnn_int8_path: Path, images: ImageData
) -> None:
    from qbias_check.plots import penultimate_features

    x = images.x[:64]
    from_object = penultimate_features(keras3_cnn.model, x)
    from_file = penultimate_features(keras3_cnn.path, x)
    int8 = penultimate_features(cnn_int8_path, x, batch_size=20)
    assert from_object.shape == from_file.shape == int8.shape == (64, TINY_FEATURES)
    assert int8.dtype == np.float32
    np.testing.assert_allclose(from_file, from_object, rtol=1e-5, atol=1e-6)
    step = quantization_step(cnn_int8_path)
    assert step > 0
    assert np.abs(int8 - from_object).max() <= STEPS * step
    assert np.ptp(from_object) > 10 * step  # the features carry signal, not just rounding


@pytest.mark.slow
def test_mobilenet_v3_int8_features_come_from_its_conv_head(tmp_path: Path) -> None:
    """MobileNetV3's classifier is a 1x1 Conv2D ("Logits"), with no FULLY_CONNECTED op."""
    from qbias_check.artifacts import build_int8
    from qbias_check.experiments.training import build_model
    from qbias_check.plots import penultimate_features

    require("tf_keras")
    model = build_model(
        "MobileNetV3Small", size=32, n_classes=3, alpha_v2=0.35, alpha_v3=0.35, width=8, seed=0
    )
    x = np.random.default_rng(0).uniform(0, 255, size=(24, 32, 32, 3)).astype(np.float32)
    path = tmp_path / "v3small_int8.tflite"
    path.write_bytes(build_int8(model, x, samples=16, seed=0))
    head = model.get_layer("Logits")
    float_features = penultimate_features(model, x)
    int8 = penultimate_features(path, x)
    assert float_features.shape == int8.shape == (24, int(head.input.shape[-1]))
    assert np.isfinite(int8).all() and np.ptp(int8) > 0
    # Rounding compounds over MobileNet's many layers, so agreement is by correlation here; the
    # tiny CNN above checks it in quantization steps.
    assert np.corrcoef(float_features.ravel(), int8.ravel())[0, 1] > 0.9
