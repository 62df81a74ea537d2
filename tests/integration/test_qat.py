"""Quantization-aware training of the three thesis MobileNets, end to end in LiteRT.

Each MobileNet (32 x 32 input, 4 colour classes, weights=None) is trained briefly in float, made
quantization-aware, fine-tuned one epoch and converted without a calibration set. The int8 model
must be full integer, run in LiteRT and agree with the QAT float model it came from.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from qbias_check._optional import require
from qbias_check.mitigation.qat import (
    NO_CONFIG_ERROR,
    convert_qat,
    fine_tune,
    float_tensors,
    quantize_aware,
    replace_op_lambdas,
)

SIZE = 32
CLASSES = 4
# A sound conversion keeps (nearly) every top-1 decision of the QAT float model; a wrong input or
# output scale, or a layer left unquantized in training, falls to about chance (0.25).
MIN_AGREEMENT = 0.9
# The float model must have learned the colours: an untrained one has near-tied scores that any
# rounding flips, and a constant one would agree trivially.
MIN_QAT_FLOAT_ACCURACY = 0.8

ARCHITECTURES = ("MobileNetV2", "MobileNetV3Small-minimalistic", "MobileNetV3Small")


def colour_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images in [0, 255]: class k < 3 brightens channel k, class 3 is dark; plus noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    rng.shuffle(y)
    base = np.full((n, 1, 1, 3), 70.0)
    for k in range(3):
        base[y == k, 0, 0, k] = 200.0
    base[y == 3] = 20.0
    x = np.clip(base + rng.normal(0.0, 30.0, size=(n, SIZE, SIZE, 3)), 0, 255)
    return x.astype(np.float32), y


def build(architecture: str) -> tuple[Any, float, float]:
    """A small untrained tf_keras MobileNet, and the scale and offset from [0, 255] to its input."""
    keras = require("tf_keras")
    keras.utils.set_random_seed(0)
    apps = keras.applications
    shape = (SIZE, SIZE, 3)
    if architecture == "MobileNetV2":
        # No Rescaling inside: it expects [-1, 1].
        return apps.MobileNetV2(shape, alpha=0.35, weights=None, classes=CLASSES), 1 / 127.5, -1.0
    minimalistic = architecture.endswith("minimalistic")
    model = apps.MobileNetV3Small(
        shape, alpha=0.75, minimalistic=minimalistic, weights=None, classes=CLASSES
    )
    return model, 1.0, 0.0


def run_litert(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    """Float scores from an int8-input, int8-output model, quantizing with its own parameters."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(inp["index"], list(x.shape))
    interpreter.allocate_tensors()
    scale, zero = inp["quantization"]
    interpreter.set_tensor(
        inp["index"], np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    )
    interpreter.invoke()
    raw = interpreter.get_tensor(out["index"])
    out_scale, out_zero = out["quantization"]
    return (raw.astype(np.float32) - out_zero) * out_scale


@dataclass(frozen=True)
class QatResult:
    """What one MobileNet's QAT run produced."""

    architecture: str
    qat_model: Any
    flatbuffer: bytes
    x_test: np.ndarray
    qat_scores: np.ndarray
    int8_scores: np.ndarray
    y: np.ndarray
    seconds: float


@pytest.fixture(scope="module", params=ARCHITECTURES)
def qat_result(request: pytest.FixtureRequest) -> QatResult:
    """Train float briefly, QAT one epoch, convert to int8, score a held-out set both ways."""
    keras = require("tf_keras")
    start = time.perf_counter()
    model, scale, offset = build(request.param)
    # The MobileNets' batch-norm momentum (0.999) would keep the moving statistics near their
    # initial values over a few dozen steps, and inference would not match training.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.8
    x, y = colour_images(128, seed=0)
    x = x * scale + offset
    # Many small steps: each epoch costs little once the step is traced.
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=12, batch_size=16, verbose=0)
    qat_model = quantize_aware(model)
    fine_tune(qat_model, x, y, epochs=1, batch_size=16, optimizer=keras.optimizers.Adam(1e-3))
    flatbuffer = convert_qat(qat_model)
    x_test, y_test = colour_images(96, seed=1)
    x_test = x_test * scale + offset
    return QatResult(
        architecture=request.param,
        qat_model=qat_model,
        flatbuffer=flatbuffer,
        x_test=x_test,
        # A direct call, not predict(): tracing a predict function costs seconds.
        qat_scores=qat_model(x_test, training=False).numpy(),
        int8_scores=run_litert(flatbuffer, x_test),
        y=y_test,
        seconds=time.perf_counter() - start,
    )


@pytest.mark.slow
def test_qat_model_converts_to_full_integer(qat_result: QatResult) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=qat_result.flatbuffer)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    assert float_tensors(qat_result.flatbuffer) == []
    # int32 holds only biases and shapes; every activation and weight is int8.
    dtypes = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert dtypes <= {np.int8, np.int32}


@pytest.mark.slow
def test_int8_runs_in_litert_and_agrees_with_qat_float(qat_result: QatResult) -> None:
    assert qat_result.int8_scores.shape == (len(qat_result.y), CLASSES)
    qat_top1 = qat_result.qat_scores.argmax(axis=1)
    int8_top1 = qat_result.int8_scores.argmax(axis=1)
    accuracy = float(np.mean(qat_top1 == qat_result.y))
    agreement = float(np.mean(qat_top1 == int8_top1))
    print(
        f"\n{qat_result.architecture}: QAT float accuracy {accuracy:.3f}, "
        f"int8 agreement {agreement:.3f}, built in {qat_result.seconds:.1f} s"
    )
    assert accuracy >= MIN_QAT_FLOAT_ACCURACY
    assert agreement >= MIN_AGREEMENT


@pytest.mark.slow
def test_float_io_keeps_an_int8_body(qat_result: QatResult) -> None:
    if qat_result.architecture != "MobileNetV3Small":
        pytest.skip("one architecture is enough for the float edges (a conversion costs seconds)")
    from ai_edge_litert.interpreter import Interpreter

    flatbuffer = convert_qat(qat_result.qat_model, io="float")
    assert float_tensors(flatbuffer, io="float") == []
    interpreter = Interpreter(model_content=flatbuffer)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.float32
    assert out["dtype"] == np.float32
    interpreter.resize_tensor_input(inp["index"], list(qat_result.x_test.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(inp["index"], qat_result.x_test)
    interpreter.invoke()
    scores = interpreter.get_tensor(out["index"])
    agreement = np.mean(scores.argmax(axis=1) == qat_result.int8_scores.argmax(axis=1))
    assert agreement >= MIN_AGREEMENT


@pytest.mark.slow
def test_v3_small_op_lambdas_become_rescaling_layers_with_the_same_outputs() -> None:
    keras = require("tf_keras")
    model, _, _ = build("MobileNetV3Small")
    kinds = {type(layer).__name__ for layer in model.layers}
    assert "TFOpLambda" in kinds
    rebuilt = replace_op_lambdas(model)
    rebuilt_kinds = [type(layer).__name__ for layer in rebuilt.layers]
    assert "TFOpLambda" not in rebuilt_kinds
    # 28 hard-sigmoids of two op lambdas each, plus the input rescaling split in two.
    assert rebuilt_kinds.count("Rescaling") == 2 * 28 + 2
    x, _ = colour_images(8, seed=3)
    np.testing.assert_allclose(
        rebuilt(x, training=False).numpy(), model(x, training=False).numpy(), rtol=1e-5, atol=1e-6
    )
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert replace_op_lambdas(plain) is plain


@pytest.mark.slow
def test_layers_without_a_quantize_config_are_named() -> None:
    keras = require("tf_keras")
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(x)
    x = x * x  # an op lambda on two tensors: no affine rewrite applies
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    with pytest.raises(ValueError) as info:
        quantize_aware(model)
    # The op lambda's name carries a session-wide counter.
    message = str(info.value)
    prefix, suffix = NO_CONFIG_ERROR.split("{}")
    assert message.startswith(prefix)
    assert message.endswith(suffix)
    named = message[len(prefix) : -len(suffix)]
    assert re.fullmatch(r"double \(Lambda\), tf\.math\.multiply(_\d+)? \(TFOpLambda\)", named)
