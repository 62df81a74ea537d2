"""Selective quantization on the tiny trained CNN: ranking, deny list, k = 0 equals plain PTQ."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qbias_check._optional import require
from qbias_check.mitigation.selective import (
    LayerError,
    build_selective,
    rank_layers,
    selective_tradeoff,
    worst_hit,
)
from qbias_check.runners import LiteRTRunner
from tests.integration.conftest import ImageData, SavedKeras, make_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    """The same calibration images as the ``cnn_int8_path`` fixture uses."""
    return make_images(128, seed=2).x


@pytest.fixture(scope="module")
def ranking(keras3_cnn: SavedKeras, calibration: np.ndarray) -> list[LayerError]:
    """The CNN's layers ranked on the calibration sample."""
    return rank_layers(keras3_cnn.model, calibration, samples=100, seed=0)


def _ops(model: bytes) -> list[tuple[str, str, Any]]:
    """(op, output tensor name, output dtype) of each op in a .tflite model."""
    interp = require("ai_edge_litert.interpreter").Interpreter(model_content=model)
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    return [
        (op["op_name"], tensors[op["outputs"][0]]["name"], tensors[op["outputs"][0]]["dtype"])
        for op in interp._get_ops_details()
    ]


def test_ranking_has_every_quantizable_layer_with_finite_errors(
    ranking: list[LayerError], cnn_int8_path: Path
) -> None:
    plain = [(op, name) for op, name, _ in _ops(cnn_int8_path.read_bytes())]
    layers = {name for op, name in plain if op not in ("QUANTIZE", "DEQUANTIZE")}
    assert {e.name for e in ranking} == layers
    assert sorted(e.op for e in ranking) == [
        "CONV_2D",
        "CONV_2D",
        "FULLY_CONNECTED",
        "MEAN",
        "SOFTMAX",
    ]
    for e in ranking:
        assert np.isfinite([e.mean_squared_error, e.max_abs_error, e.rmse_over_scale]).all()
        assert e.scale > 0 and e.num_elements > 0
    errors = [e.rmse_over_scale for e in ranking]
    assert errors == sorted(errors, reverse=True)


def test_k0_predicts_exactly_as_plain_ptq(
    keras3_cnn: SavedKeras, calibration: np.ndarray, cnn_int8_path: Path, images: ImageData
) -> None:
    k0 = build_selective(keras3_cnn.model, calibration, keep_float=0, samples=100, seed=0)
    plain = LiteRTRunner(cnn_int8_path, num_threads=1).predict(images.x)
    selective = LiteRTRunner("k0.tflite", content=k0, num_threads=1).predict(images.x)
    np.testing.assert_array_equal(selective, plain)


def test_denied_layer_stays_float_and_leaves_the_ranking(
    keras3_cnn: SavedKeras, calibration: np.ndarray, ranking: list[LayerError]
) -> None:
    conv = next(e for e in ranking if e.op == "CONV_2D")
    model = build_selective(keras3_cnn.model, calibration, keep_float=[conv.name])
    dtypes = {name: np.dtype(dtype) for _, name, dtype in _ops(model)}
    assert dtypes[conv.name] == np.float32
    others = [e.name for e in ranking if e.name != conv.name]
    assert all(dtypes[name] == np.int8 for name in others)
    # The debugger no longer measures the float layer; the other layers are still ranked.
    after = rank_layers(keras3_cnn.model, calibration, keep_float=[conv.name])
    assert {e.name for e in after} == set(others)


def test_unknown_layer_is_an_error_naming_the_known_layers(
    keras3_cnn: SavedKeras, calibration: np.ndarray, ranking: list[LayerError]
) -> None:
    with pytest.raises(ValueError, match="no layer named 'conv_typo'") as info:
        build_selective(keras3_cnn.model, calibration, keep_float=["conv_typo"])
    assert all(e.name in str(info.value) for e in ranking)
    with pytest.raises(ValueError, match="more layers than the 5"):
        build_selective(keras3_cnn.model, calibration, keep_float=6)


def test_tradeoff_float_layers_cut_the_output_error(
    keras3_cnn: SavedKeras, calibration: np.ndarray, images: ImageData
) -> None:
    reference = np.asarray(keras3_cnn.model.predict(images.x, verbose=0))
    quant = LiteRTRunner(
        "k0", content=build_selective(keras3_cnn.model, calibration, keep_float=0)
    ).predict(images.x)
    scope, idx = worst_hit(images.y, reference, quant, classes=["r", "g", "b", "dark"])
    assert scope.startswith("class[") and len(idx) > 0
    # Float input and output: with every layer float the model is the float model again.
    table, models = selective_tradeoff(
        keras3_cnn.model,
        calibration,
        images.x,
        images.y,
        pred_reference=reference,
        classes=["r", "g", "b", "dark"],
        ks=(0, 1, 5),
        focus_x=images.x[idx],
        io="float",
    )
    assert list(table["k"]) == [0, 1, 5] and sorted(models) == [0, 1, 5]
    assert [len(kept) for kept in table["kept_float"]] == [0, 1, 5]
    mse = list(table["output_mse"])
    assert mse[2] < 1e-10 < mse[0]
    assert mse[1] <= mse[0]
    assert table["size_bytes"].iloc[2] > table["size_bytes"].iloc[0]
