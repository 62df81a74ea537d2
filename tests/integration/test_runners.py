"""Runners against real TensorFlow and LiteRT: exact float results, int8 agreement, bad input."""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from qbias_check._optional import require
from qbias_check.runners import (
    InputDtypeError,
    InputMismatchError,
    ModelLoadError,
    Runner,
    load_runner,
)
from tests.integration.conftest import CLASSES, SIZE, ImageData, SavedKeras

# A correct int8 build of the trained CNN agrees on (nearly) every example; a wrong input zero
# point drops agreement to about chance, so 0.9 separates the two cleanly.
MIN_INT8_AGREEMENT = 0.9


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1)))


def plain_interpreter_loop(path: Path, x: np.ndarray) -> np.ndarray:
    """Raw int8 outputs of a batch-1 LiteRT loop, written as the LiteRT docs show it."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    raws = []
    for example in x:
        q = np.clip(np.round(example / scale + zero_point), -128, 127).astype(np.int8)
        interp.set_tensor(inp["index"], q[None])
        interp.invoke()
        raws.append(interp.get_tensor(out["index"])[0])
    return np.stack(raws)


def test_import_does_not_pull_in_tensorflow() -> None:
    heavy = "{'tensorflow', 'keras', 'tf_keras', 'ai_edge_litert'}"
    code = f"import sys, qbias_check.runners; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_keras3_runner_equals_keras_predict_exactly(
    keras3_cnn: SavedKeras, images: ImageData
) -> None:
    runner = load_runner(keras3_cnn.path)
    assert isinstance(runner, Runner)
    assert runner.kind == "keras"
    scores = runner.predict(images.x, batch_size=32)
    expected = keras3_cnn.model.predict(images.x, batch_size=32, verbose=0)
    assert scores.dtype == np.float32
    assert scores.shape == (len(images.x), CLASSES)
    np.testing.assert_array_equal(scores, expected)


def test_iterable_of_batches_gives_the_same_scores(
    keras3_cnn: SavedKeras, images: ImageData
) -> None:
    runner = load_runner(keras3_cnn.path)
    batches = (images.x[i : i + 32] for i in range(0, len(images.x), 32))
    np.testing.assert_array_equal(
        runner.predict(batches, batch_size=32), runner.predict(images.x, batch_size=32)
    )


def test_tf_keras_h5_runner_equals_tf_keras_predict_exactly(
    tfkeras_h5: SavedKeras, images: ImageData
) -> None:
    runner = load_runner(tfkeras_h5.path)
    assert runner.kind == "tf_keras"
    expected = tfkeras_h5.model.predict(images.x, batch_size=50, verbose=0)
    np.testing.assert_array_equal(runner.predict(images.x, batch_size=50), expected)


def test_saved_model_runner_matches_keras(
    cnn_saved_model: Path, keras3_cnn: SavedKeras, images: ImageData
) -> None:
    runner = load_runner(cnn_saved_model)
    assert runner.kind == "saved_model"
    assert runner.input_spec.shape == (None, SIZE, SIZE, 3)
    expected = keras3_cnn.model.predict(images.x, batch_size=32, verbose=0)
    np.testing.assert_allclose(runner.predict(images.x, batch_size=32), expected, atol=1e-6)


def test_float_tflite_runner_matches_keras(
    cnn_float_tflite_path: Path, keras3_cnn: SavedKeras, images: ImageData
) -> None:
    runner = load_runner(cnn_float_tflite_path)
    assert runner.input_spec.dtype == "float32"
    assert runner.input_spec.scale is None
    expected = keras3_cnn.model.predict(images.x, verbose=0)
    np.testing.assert_allclose(runner.predict(images.x, batch_size=64), expected, atol=1e-5)


def test_int8_runner_agrees_with_float_model(
    cnn_int8_path: Path, keras3_cnn: SavedKeras, images: ImageData
) -> None:
    runner = load_runner(cnn_int8_path)
    assert runner.kind == "litert"
    assert runner.input_spec.dtype == "int8"
    assert runner.input_spec.scale is not None and runner.input_spec.scale > 0
    scores = runner.predict(images.x, batch_size=32)
    expected = keras3_cnn.model.predict(images.x, verbose=0)
    assert scores.dtype == np.float32
    assert agreement(scores, expected) >= MIN_INT8_AGREEMENT
    # Dequantized softmax scores stay near the float ones: one output step is 1/256.
    assert np.abs(scores - expected).max() < 0.1


def test_wrong_input_zero_point_breaks_the_agreement_bound(
    cnn_int8_path: Path, keras3_cnn: SavedKeras, images: ImageData
) -> None:
    runner = load_runner(cnn_int8_path)
    # Simulates a quantization bug: the bound above must catch it.
    runner.input_spec = dataclasses.replace(runner.input_spec, zero_point=0)
    expected = keras3_cnn.model.predict(images.x, verbose=0)
    assert agreement(runner.predict(images.x), expected) < MIN_INT8_AGREEMENT


@pytest.mark.parametrize("batch_size", [1, 32, 64, 1000])
def test_litert_runner_matches_plain_interpreter_loop_bit_for_bit(
    cnn_int8_path: Path, images: ImageData, batch_size: int
) -> None:
    x = images.x[:70]  # 70 leaves a partial last batch for 32 and 64
    runner = load_runner(cnn_int8_path, num_threads=2)
    scores = runner.predict(x, batch_size=batch_size)
    raw = plain_interpreter_loop(cnn_int8_path, x)
    out = runner._out  # type: ignore[attr-defined]
    scale, zero_point = out["quantization"]
    requantized = np.round(scores / scale + zero_point).astype(np.int32)
    np.testing.assert_array_equal(requantized, raw.astype(np.int32))
    np.testing.assert_allclose(scores, (raw.astype(np.float64) - zero_point) * scale, rtol=1e-6)


def test_uint8_images_equal_their_float_values(cnn_int8_path: Path, images: ImageData) -> None:
    runner = load_runner(cnn_int8_path)
    x8 = images.x.astype(np.uint8)
    np.testing.assert_array_equal(runner.predict(x8), runner.predict(x8.astype(np.float32)))


def test_fixed_batch_model_gets_padded_batches(
    tmp_path: Path, keras3_cnn: SavedKeras, images: ImageData
) -> None:
    keras = require("keras")
    tf = require("tensorflow")
    fixed = keras.Sequential([keras.Input((SIZE, SIZE, 3), batch_size=4), *keras3_cnn.model.layers])
    export = tmp_path / "fixed"
    fixed.export(str(export), format="tf_saved_model", verbose=False)
    path = tmp_path / "fixed.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(export)).convert())
    runner = load_runner(path)
    x = images.x[:10]  # 4 + 4 + a padded 2
    expected = keras3_cnn.model.predict(x, verbose=0)
    np.testing.assert_allclose(runner.predict(x, batch_size=3), expected, atol=1e-5)


def test_identity_is_the_content_hash(tmp_path: Path, cnn_int8_path: Path) -> None:
    runner = load_runner(cnn_int8_path)
    assert runner.identity == hashlib.sha256(cnn_int8_path.read_bytes()).hexdigest()
    copy = tmp_path / "renamed.bin"  # content decides the kind, not the suffix
    shutil.copy(cnn_int8_path, copy)
    assert load_runner(copy).identity == runner.identity
    assert str(runner.input_spec).endswith(f"zero_point={runner.input_spec.zero_point}")


def test_saved_model_identity_is_stable(cnn_saved_model: Path) -> None:
    assert load_runner(cnn_saved_model).identity == load_runner(cnn_saved_model).identity


# --- bad input ---------------------------------------------------------------------------------


def test_text_file_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "model.tflite"
    path.write_text("this is not a model at all")
    with pytest.raises(
        ModelLoadError, match=r"model\.tflite is not a model file: expected a \.tflite"
    ):
        load_runner(path)


def test_missing_file_and_plain_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_runner(tmp_path / "nope.tflite")
    with pytest.raises(ModelLoadError, match="SavedModel directory"):
        load_runner(tmp_path)


def test_truncated_tflite_is_refused(tmp_path: Path, cnn_int8_path: Path) -> None:
    data = cnn_int8_path.read_bytes()
    path = tmp_path / "truncated.tflite"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"truncated\.tflite is not a valid TFLite flatbuffer"):
        load_runner(path)


def test_truncated_keras_zip_is_refused(tmp_path: Path, keras3_cnn: SavedKeras) -> None:
    data = keras3_cnn.path.read_bytes()
    path = tmp_path / "cut.keras"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.keras is not a valid \.keras file"):
        load_runner(path)


def test_wrong_input_shape_names_both_shapes(cnn_int8_path: Path, keras3_cnn: SavedKeras) -> None:
    x = np.zeros((5, 8, 8, 3), dtype=np.float32)
    for path in (cnn_int8_path, keras3_cnn.path):
        with pytest.raises(InputMismatchError) as info:
            load_runner(path).predict(x)
        message = str(info.value)
        assert "(5, 8, 8, 3)" in message and "(N, 16, 16, 3)" in message and path.name in message


def test_non_numeric_data_is_a_type_error(cnn_int8_path: Path) -> None:
    x = np.full((2, SIZE, SIZE, 3), "a")
    with pytest.raises(InputDtypeError, match="dtype <U1"):
        load_runner(cnn_int8_path).predict(x)


def test_bad_batch_size(cnn_int8_path: Path, images: ImageData) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        load_runner(cnn_int8_path).predict(images.x, batch_size=0)


def test_several_outputs_need_a_choice(tmp_path: Path, images: ImageData) -> None:
    keras = require("keras")
    tf = require("tensorflow")
    inp = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inp)
    model = keras.Model(
        inp, [keras.layers.Dense(2, name="a")(pooled), keras.layers.Dense(3, name="b")(pooled)]
    )
    keras_path = tmp_path / "two.keras"
    model.save(keras_path)
    model.export(str(tmp_path / "two"), format="tf_saved_model", verbose=False)
    tflite_path = tmp_path / "two.tflite"
    tflite_path.write_bytes(
        tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "two")).convert()
    )
    for path in (keras_path, tflite_path):
        with pytest.raises(ModelLoadError, match=r"has 2 outputs .*pass output="):
            load_runner(path)
        with pytest.raises(ModelLoadError, match="has no output 5"):
            load_runner(path, output=5)
    expected = model.predict(images.x[:8], verbose=0)
    np.testing.assert_array_equal(
        load_runner(keras_path, output="b").predict(images.x[:8]), expected[1]
    )
    picked = load_runner(tflite_path, output=1).predict(images.x[:8])
    assert picked.shape[1] in (2, 3)
    np.testing.assert_allclose(picked, expected[picked.shape[1] - 2], atol=1e-5)


def test_several_inputs_are_refused(tmp_path: Path) -> None:
    keras = require("keras")
    a, b = keras.Input((4,)), keras.Input((4,))
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    path = tmp_path / "two_inputs.keras"
    model.save(path)
    with pytest.raises(InputMismatchError, match=r"two_inputs\.keras has 2 inputs"):
        load_runner(path)


def test_keras3_lambda_layer_is_refused_in_safe_mode(tmp_path: Path) -> None:
    keras = require("keras")
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(lambda t: t * 2)(inp)))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match=r"lambda\.keras needs Python code .*safe mode.*Hint"):
        load_runner(path)


def test_tf_keras_h5_lambda_layer_is_refused(tmp_path: Path) -> None:
    tf_keras = require("tf_keras")
    inp = tf_keras.Input((4,))
    lam = tf_keras.layers.Lambda(lambda t: t * 2)(inp)
    model = tf_keras.Model(inp, tf_keras.layers.Dense(2)(lam))
    path = tmp_path / "lambda.h5"
    with pytest.warns(UserWarning, match="legacy"):
        model.save(path)
    # tf_keras would unmarshal the lambda's bytecode from an .h5 file; the config screen stops it.
    with pytest.raises(ModelLoadError, match=r"lambda\.h5 needs Python code .*Lambda layer.*Hint"):
        load_runner(path)
