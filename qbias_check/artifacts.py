"""Int8 builders: full-integer post-training quantization of a float model with TFLiteConverter.

The representative dataset is ``samples`` examples drawn without replacement with ``seed`` from
the calibration data (the thesis used 100 images, section 3.4.4). Keras 3 models go through a
SavedModel export, tf_keras models through ``from_keras_model``; TensorFlow is imported only here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np

from qbias_check._optional import require
from qbias_check.cache import Cache, digest_array, digest_path
from qbias_check.runners import InputMismatchError, ModelLoadError, check_fits, load_keras_model

IO_TYPES = ("int8", "float")

BAD_IO = "io must be one of {choices}, got {io!r}"
BAD_SAMPLES = "samples must be a positive integer, got {samples!r}"
NO_CALIBRATION = "calibration data is empty; PTQ needs at least one example"
NOT_A_FLOAT_MODEL = (
    "{path} cannot be quantized: expected a float Keras model (.keras, .h5) or a SavedModel "
    "directory, not a .tflite file"
)
UNKNOWN_MODEL = "cannot quantize an object of type {type}: expected a Keras 3 or tf_keras model"


def build_int8(
    reference: str | os.PathLike[str] | Any,
    calibration_x: np.ndarray,
    *,
    samples: int = 100,
    seed: int = 0,
    io: Literal["int8", "float"] = "int8",
    per_channel: bool = True,
) -> bytes:
    """Quantize ``reference`` (Keras model, model file, SavedModel dir) to int8 .tflite bytes.

    ``io="int8"`` makes the model's input and output int8 too; ``io="float"`` keeps them float32.
    ``per_channel=False`` quantizes weights per tensor, as the thesis did.
    """
    with ptq_converter(
        reference, calibration_x, samples=samples, seed=seed, io=io, per_channel=per_channel
    ) as converter:
        return bytes(converter.convert())


@contextmanager
def ptq_converter(
    reference: str | os.PathLike[str] | Any,
    calibration_x: np.ndarray,
    *,
    samples: int = 100,
    seed: int = 0,
    io: str = "int8",
    per_channel: bool = True,
) -> Iterator[Any]:
    """A TFLiteConverter set up for full-integer PTQ of ``reference`` (valid inside the block)."""
    if io not in IO_TYPES:
        raise ValueError(BAD_IO.format(choices=IO_TYPES, io=io))
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(BAD_SAMPLES.format(samples=samples))
    x = np.asarray(calibration_x)
    if len(x) == 0:
        raise ValueError(NO_CALIBRATION)
    tf = require("tensorflow")
    with tempfile.TemporaryDirectory(prefix="qbias-ptq-") as tmp:
        converter, input_shape, name = _converter(tf, reference, Path(tmp))
        check_fits(x.shape, input_shape, name)
        chosen = calibration_sample(x, samples=samples, seed=seed)

        def representative() -> Iterator[list[np.ndarray]]:
            for i in range(len(chosen)):
                yield [chosen[i : i + 1].astype(np.float32)]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        # Integer-only kernels: conversion fails rather than silently leaving float ops behind.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io == "int8":
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
        if not per_channel:
            # No public switch exists; these private flags are what the converter reads (TF 2.21):
            # the first covers convolutions, the second fully connected layers.
            converter._experimental_disable_per_channel = True
            converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        yield converter


def calibration_sample(x: np.ndarray, *, samples: int, seed: int) -> np.ndarray:
    """The ``samples`` examples of ``x`` that PTQ calibrates on, drawn without replacement."""
    rng = np.random.default_rng(seed)
    index = rng.choice(len(x), size=min(samples, len(x)), replace=False)
    return np.asarray(x[np.sort(index)])


def int8_key_parts(
    reference: str | os.PathLike[str],
    calibration_x: np.ndarray,
    *,
    samples: int = 100,
    seed: int = 0,
    io: str = "int8",
    per_channel: bool = True,
) -> dict[str, Any]:
    """Cache key parts of an int8 build: model content, calibration data, options, TF version."""
    return {
        "what": "int8-ptq",
        "model": digest_path(reference),
        "calibration": digest_array(np.asarray(calibration_x)),
        "samples": samples,
        "seed": seed,
        "io": io,
        "per_channel": per_channel,
        "tool": f"tensorflow=={metadata.version('tensorflow')}",
    }


def build_int8_cached(
    reference: str | os.PathLike[str],
    calibration_x: np.ndarray,
    cache: Cache,
    *,
    samples: int = 100,
    seed: int = 0,
    io: Literal["int8", "float"] = "int8",
    per_channel: bool = True,
) -> Path:
    """Path of the cached int8 .tflite for the model file ``reference``, built once on a miss."""
    options: dict[str, Any] = {
        "samples": samples,
        "seed": seed,
        "io": io,
        "per_channel": per_channel,
    }
    key = int8_key_parts(reference, calibration_x, **options)

    def build(tmp: Path) -> None:
        tmp.write_bytes(build_int8(reference, calibration_x, **options))

    return cache.get_or_build(key, build, suffix=".tflite")


def _converter(tf: Any, reference: Any, tmp: Path) -> tuple[Any, tuple[Any, ...], str]:
    """A TFLiteConverter for ``reference``, its input shape, and a name for messages."""
    if isinstance(reference, str | os.PathLike):
        path = Path(reference)
        if path.is_dir():
            if not (path / "saved_model.pb").is_file():
                raise ModelLoadError(NOT_A_FLOAT_MODEL.format(path=path))
            converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
            signature = tf.saved_model.load(str(path)).signatures["serving_default"]
            (spec,) = signature.structured_input_signature[1].values()
            return converter, tuple(spec.shape), str(path)
        if path.is_file():
            with open(path, "rb") as f:
                if f.read(8)[4:8] == b"TFL3":
                    raise ModelLoadError(NOT_A_FLOAT_MODEL.format(path=path))
        return (*_model_converter(tf, load_keras_model(path), tmp)[:2], str(path))
    return _model_converter(tf, reference, tmp)


def _model_converter(tf: Any, model: Any, tmp: Path) -> tuple[Any, tuple[Any, ...], str]:
    family = _keras_family(model)
    inputs = list(model.inputs)
    if len(inputs) != 1:
        raise InputMismatchError(f"model {model.name!r} has {len(inputs)} inputs; expected one")
    shape = tuple(inputs[0].shape)
    if family == "tf_keras":
        return tf.lite.TFLiteConverter.from_keras_model(model), shape, f"model {model.name!r}"
    # Keras 3 models convert most reliably through their own SavedModel export.
    export_dir = tmp / "saved_model"
    model.export(str(export_dir), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(export_dir))
    return converter, shape, f"model {model.name!r}"


def _keras_family(model: Any) -> str:
    """'keras' for a Keras 3 model, 'tf_keras' for a tf_keras one, by the classes it inherits."""
    for cls in type(model).__mro__:
        root = cls.__module__.split(".")[0]
        if root in ("keras", "tf_keras") and cls.__name__ in ("Model", "Functional", "Sequential"):
            return root
    raise TypeError(UNKNOWN_MODEL.format(type=type(model).__name__))
