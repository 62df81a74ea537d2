"""Selective quantization (beyond the thesis): the layers quantization hurts most stay float.

TFLite's quantization debugger runs each quantized op next to its float twin on the same input
and measures the difference (per-layer error). :func:`rank_layers` orders the layers by that error,
measured on the calibration sample or on the examples of the worst-hit class or group
(:func:`worst_hit`); :func:`build_selective` keeps the top-k (or named) layers in float through the
quantizer's deny list; :func:`selective_tradeoff` reports size, accuracy and bias for k = 0, 1, 2...

Every build calibrates exactly as :func:`qbias_check.artifacts.build_int8` does (same converter,
same sample) and then quantizes the calibrated model with the deny list, which is what the
converter itself does after calibration, so k = 0 gives the same predictions as plain PTQ.
"""

from __future__ import annotations

import csv
import io
import math
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from qbias_check._optional import require
from qbias_check.artifacts import calibration_sample
from qbias_check.comparison import compare
from qbias_check.runners import LiteRTRunner
from qbias_check.thresholds import MODEL_LIMITS

METRICS = ("rmse_over_scale", "mean_squared_error", "max_abs_error", "stddev")
# Ops that only move data between int8 and float; they are not layers one can keep in float.
_CONVERSION_OPS = ("QUANTIZE", "DEQUANTIZE")

UNKNOWN_LAYERS = "no layer named {names} in the model; the layers that can stay float are:\n{known}"
BAD_METRIC = "by must be one of {choices}, got {by!r}"
BAD_K = "keep_float must be a list of layer names or an integer k >= 0, got {value!r}"
K_TOO_LARGE = "keep_float={k} asks for more layers than the {n} the debugger ranked"
EMPTY_FOCUS = "focus_x is empty; pass the examples of the class or group to rank layers on"


@dataclass(frozen=True)
class LayerError:
    """One layer's quantization error, as the quantization debugger measured it.

    ``name`` is the layer's output tensor in the converted model: the name ``keep_float`` takes.
    ``rmse_over_scale`` is the root mean squared error in units of the output's quantization step;
    pure rounding noise gives about 0.289 (1 / sqrt(12)), larger values mean a layer that int8
    serves badly.
    """

    name: str
    op: str
    tensor_index: int
    num_elements: float
    stddev: float
    mean_error: float
    max_abs_error: float
    mean_squared_error: float
    scale: float
    rmse_over_scale: float

    @property
    def short_name(self) -> str:
        """The first of the fused op names (TFLite joins the names of fused ops with ';')."""
        return self.name.split(";")[0]


@dataclass(frozen=True)
class _Calibrated:
    """A calibrated float model (min/max recorded per tensor) and the settings to quantize it."""

    model: bytes
    io: str
    per_channel: bool
    layers: tuple[str, ...]


def rank_layers(
    reference: str | os.PathLike[str] | Any,
    calibration_x: np.ndarray,
    *,
    focus_x: np.ndarray | None = None,
    samples: int = 100,
    seed: int = 0,
    keep_float: Sequence[str] = (),
    by: str = "rmse_over_scale",
    io: Literal["int8", "float"] = "int8",
    per_channel: bool = True,
) -> list[LayerError]:
    """Per-layer quantization error of ``reference``, worst layer first.

    Calibrates on ``samples`` examples of ``calibration_x`` (as PTQ does) and measures the error
    on ``focus_x`` when given (e.g. the worst-hit class's examples), else on the calibration
    sample. Layers in ``keep_float`` stay float and so drop out of the ranking.
    """
    if by not in METRICS:
        raise ValueError(BAD_METRIC.format(choices=METRICS, by=by))
    calibrated = _calibrate(reference, calibration_x, samples, seed, io, per_channel)
    return _rank(calibrated, _measure_on(calibration_x, focus_x, samples, seed), keep_float, by)


def build_selective(
    reference: str | os.PathLike[str] | Any,
    calibration_x: np.ndarray,
    *,
    keep_float: Sequence[str] | int,
    samples: int = 100,
    seed: int = 0,
    focus_x: np.ndarray | None = None,
    by: str = "rmse_over_scale",
    io: Literal["int8", "float"] = "int8",
    per_channel: bool = True,
) -> bytes:
    """Int8 .tflite bytes of ``reference`` with some layers kept in float.

    ``keep_float`` names the layers (:attr:`LayerError.name`), or is k: the k worst layers by
    :func:`rank_layers` (on ``focus_x`` when given). k = 0 is plain PTQ. The other options mean
    what they mean for :func:`qbias_check.artifacts.build_int8`.
    """
    if by not in METRICS:
        raise ValueError(BAD_METRIC.format(choices=METRICS, by=by))
    calibrated = _calibrate(reference, calibration_x, samples, seed, io, per_channel)
    if isinstance(keep_float, bool) or not isinstance(keep_float, int | list | tuple):
        raise TypeError(BAD_K.format(value=keep_float))
    if isinstance(keep_float, int):
        if keep_float < 0:
            raise ValueError(BAD_K.format(value=keep_float))
        names: list[str] = []
        if keep_float > 0:
            focus = _measure_on(calibration_x, focus_x, samples, seed)
            ranking = _rank(calibrated, focus, (), by)
            if keep_float > len(ranking):
                raise ValueError(K_TOO_LARGE.format(k=keep_float, n=len(ranking)))
            names = [layer.name for layer in ranking[:keep_float]]
    else:
        names = [str(n) for n in keep_float]
    return _quantize(calibrated, names, debug=False)


def worst_hit(
    y: np.ndarray,
    pred_reference: np.ndarray,
    pred_quantized: np.ndarray,
    *,
    classes: Sequence[str],
    attributes: Mapping[str, np.ndarray] | None = None,
) -> tuple[str, np.ndarray]:
    """The scope that quantization hurt most, and the indices of its examples.

    Candidates are each class (by its FNR increase: the share of its examples the int8 model
    misses beyond the float model) and each group of each attribute (by its accuracy drop);
    returns e.g. ``("class[bald]", idx)`` or ``("male[female]", idx)``.
    """
    labels = np.asarray(y)
    ref = _labels_of(pred_reference)
    quant = _labels_of(pred_quantized)
    best_name, best_idx, best_value = "", np.arange(0), -math.inf
    for c, name in enumerate(classes):
        idx = np.flatnonzero(labels == c)
        if idx.size:
            # FNR increase of class c = the fall of its recall, int8 against float.
            value = float(np.mean(ref[idx] == c) - np.mean(quant[idx] == c))
            if value > best_value:
                best_name, best_idx, best_value = f"class[{name}]", idx, value
    for attribute, groups in (attributes or {}).items():
        values = np.asarray(groups)
        for group in sorted(set(values.tolist())):
            idx = np.flatnonzero(values == group)
            value = float(np.mean(ref[idx] == labels[idx]) - np.mean(quant[idx] == labels[idx]))
            if value > best_value:
                best_name, best_idx, best_value = f"{attribute}[{group}]", idx, value
    return best_name, best_idx


def selective_tradeoff(
    reference: str | os.PathLike[str] | Any,
    calibration_x: np.ndarray,
    eval_x: np.ndarray,
    y: np.ndarray,
    *,
    pred_reference: np.ndarray,
    classes: Sequence[str],
    ks: Sequence[int] = (0, 1, 2, 3),
    attributes: Mapping[str, np.ndarray] | None = None,
    focus_x: np.ndarray | None = None,
    samples: int = 100,
    seed: int = 0,
    by: str = "rmse_over_scale",
    bootstrap: int = 0,
    io: Literal["int8", "float"] = "int8",
    per_channel: bool = True,
) -> tuple[pd.DataFrame, dict[int, bytes]]:
    """Size / accuracy / bias of the model with its k worst layers in float, for each k in ``ks``.

    ``pred_reference`` are the float model's scores on ``eval_x``. Returns a DataFrame (one row
    per k: the layers kept float, size, accuracy, CIE fraction, bias increases, output error
    against the float scores) and the model bytes per k. Calibrates and ranks once.
    """
    if by not in METRICS:
        raise ValueError(BAD_METRIC.format(choices=METRICS, by=by))
    calibrated = _calibrate(reference, calibration_x, samples, seed, io, per_channel)
    ranking = _rank(calibrated, _measure_on(calibration_x, focus_x, samples, seed), (), by)
    reference_scores = np.asarray(pred_reference, dtype=np.float32)
    rows: list[dict[str, Any]] = []
    models: dict[int, bytes] = {}
    for k in ks:
        if k > len(ranking):
            raise ValueError(K_TOO_LARGE.format(k=k, n=len(ranking)))
        kept = ranking[:k]
        model = _quantize(calibrated, [layer.name for layer in kept], debug=False)
        scores = LiteRTRunner(f"<selective k={k}>", content=model).predict(eval_x)
        c = compare(
            y,
            reference_scores,
            scores,
            classes=classes,
            attributes=attributes,
            bootstrap=bootstrap,
            seed=seed,
        )
        models[k] = model
        rows.append(
            {
                "k": k,
                "kept_float": [layer.short_name for layer in kept],
                "size_bytes": len(model),
                "output_mse": float(np.mean((scores - reference_scores) ** 2)),
                # the numbers a gate can limit, plus the int8 accuracy itself
                **{key: c.summary[key] for key in ("accuracy_int8", *MODEL_LIMITS)},
            }
        )
    return pd.DataFrame(rows), models


def _calibrate(
    reference: Any,
    calibration_x: np.ndarray,
    samples: int,
    seed: int,
    io: str,
    per_channel: bool,
) -> _Calibrated:
    """Calibrate as ``build_int8`` does, stopping before quantization."""
    from qbias_check.artifacts import ptq_converter

    with ptq_converter(
        reference, calibration_x, samples=samples, seed=seed, io=io, per_channel=per_channel
    ) as converter:
        # The converter's own switch to stop after calibration (the quantization debugger uses
        # it too); the model it returns is float with the recorded ranges.
        converter._experimental_calibrate_only = True
        model = bytes(converter.convert())
    return _Calibrated(model=model, io=io, per_channel=per_channel, layers=_op_outputs(model))


def _quantize(calibrated: _Calibrated, keep_float: Sequence[str], *, debug: bool) -> bytes:
    """Quantize a calibrated model with ``keep_float`` denied; ``debug`` adds NumericVerify ops."""
    tf = require("tensorflow")
    convert = require("tensorflow.lite.python.convert")
    unknown = [n for n in keep_float if n not in calibrated.layers]
    if unknown:
        # The quantizer ignores names it does not know; a typo must not pass as plain PTQ.
        known = "\n".join(f"  {n}" for n in calibrated.layers)
        raise ValueError(UNKNOWN_LAYERS.format(names=", ".join(map(repr, unknown)), known=known))
    # Same arguments as TFLiteConverter's own quantization step (TF 2.21, lite.py _quantize);
    # the debug model keeps float input and output so the debugger can feed it float examples.
    io_type = tf.int8 if calibrated.io == "int8" and not debug else tf.float32
    model = convert.mlir_quantize(
        calibrated.model,
        disable_per_channel=not calibrated.per_channel,
        fully_quantize=False,
        input_data_type=io_type,
        output_data_type=io_type,
        enable_numeric_verify=debug,
        denylisted_nodes=list(keep_float) or None,
        disable_per_channel_for_dense_layers=not calibrated.per_channel,
    )
    if debug:
        return bytes(model)
    # The converter's last step: weights shared between ops are stored once (smaller file).
    lite = require("tensorflow.lite.python.lite")
    return bytes(lite._deduplicate_readonly_buffers(model))


def _rank(
    calibrated: _Calibrated, measure_x: np.ndarray, keep_float: Sequence[str], by: str
) -> list[LayerError]:
    """Run the quantization debugger on ``measure_x`` and sort its layers, worst first."""
    tf = require("tensorflow")
    debug_model = _quantize(calibrated, keep_float, debug=True)
    if not any(op == "NumericVerify" for op, _ in _ops(debug_model)):
        return []  # every layer is float: nothing left to measure
    with warnings.catch_warnings():
        # The debugger runs on tf.lite.Interpreter, whose deprecation notice we cannot act on.
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated")
        debugger = tf.lite.experimental.QuantizationDebugger(
            quant_debug_model_content=debug_model,
            debug_dataset=lambda: _one_by_one(measure_x),
        )
        debugger.run()
    table = io.StringIO()
    debugger.layer_statistics_dump(table)
    table.seek(0)
    layers = [_layer_error(row) for row in csv.DictReader(table)]
    # NaN sorts last: a layer without a number is not evidence of a bad layer.
    return sorted(layers, key=lambda e: -v if math.isfinite(v := getattr(e, by)) else math.inf)


def _layer_error(row: dict[str, str]) -> LayerError:
    scale = float(row["scale"])
    mse = float(row["mean_squared_error"])
    return LayerError(
        name=row["tensor_name"],
        op=row["op_name"],
        tensor_index=int(row["tensor_idx"]),
        num_elements=float(row["num_elements"]),
        stddev=float(row["stddev"]),
        mean_error=float(row["mean_error"]),
        max_abs_error=float(row["max_abs_error"]),
        mean_squared_error=mse,
        scale=scale,
        rmse_over_scale=math.sqrt(mse) / scale if scale > 0 else math.nan,
    )


def _measure_on(
    calibration_x: np.ndarray, focus_x: np.ndarray | None, samples: int, seed: int
) -> np.ndarray:
    """The examples the error is measured on: ``focus_x``, or else the calibration sample."""
    if focus_x is None:
        return calibration_sample(np.asarray(calibration_x), samples=samples, seed=seed)
    focus = np.asarray(focus_x)
    if len(focus) == 0:
        raise ValueError(EMPTY_FOCUS)
    return focus


def _one_by_one(x: np.ndarray) -> Iterator[list[np.ndarray]]:
    for i in range(len(x)):
        yield [np.asarray(x[i : i + 1], dtype=np.float32)]


def _ops(model: bytes) -> list[tuple[str, str]]:
    """(op name, first output tensor name) of every op in the first subgraph."""
    interpreter_cls = require("ai_edge_litert.interpreter").Interpreter
    interp = interpreter_cls(model_content=model)
    ops = []
    for op in interp._get_ops_details():
        outputs = list(op["outputs"])
        name = interp._get_tensor_details(outputs[0], 0)["name"] if outputs else ""
        ops.append((str(op["op_name"]), str(name)))
    return ops


def _op_outputs(model: bytes) -> tuple[str, ...]:
    """Names of the layers (op outputs) of a calibrated model that could stay float."""
    return tuple(name for op, name in _ops(model) if op not in _CONVERSION_OPS and name)


def _labels_of(pred: np.ndarray) -> np.ndarray:
    arr = np.asarray(pred)
    return arr.argmax(axis=1) if arr.ndim == 2 else arr
