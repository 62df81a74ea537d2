"""Runners: load a model file by its content and turn inputs into float32 scores (N, C).

Four kinds: a ``.tflite`` flatbuffer (LiteRT), a Keras 3 ``.keras`` file (safe mode), a tf_keras
``.h5`` or ``.keras`` file, and a SavedModel directory. Inputs are always in the float model's input
domain; the LiteRT runner quantizes them with the model's own scale and zero point, so one array
feeds the float and the int8 model alike. TensorFlow, Keras and LiteRT are imported only when a
model of their kind is loaded.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from qbias_check._optional import require
from qbias_check.cache import digest_bytes, digest_path

_TFLITE_ID = b"TFL3"
_ZIP_MAGIC = b"PK\x03\x04"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

NOT_FOUND = "model file {path} does not exist"
NOT_A_MODEL = (
    "{path} is not a model file: expected a .tflite flatbuffer, a Keras .keras zip, "
    "a Keras/tf_keras .h5 file, or a SavedModel directory (with saved_model.pb)"
)
BAD_TFLITE = "{path} is not a valid TFLite flatbuffer (truncated or corrupt?): {detail}"
BAD_KERAS_ZIP = "{path} is not a valid .keras file (a zip with config.json was expected): {detail}"
H5_NO_CONFIG = "{path} holds weights only; expected a whole model saved with model.save()"
SAFE_MODE = (
    "{path} needs Python code from the file to load ({detail}); qbias-check loads Keras files in "
    "safe mode and runs no code from them. Hint: replace Lambda layers and custom objects with "
    "built-in layers, or export the model to .tflite or a SavedModel and check that instead"
)
LOAD_FAILED = "could not load {kind} model {path}: {detail}"
SEVERAL_INPUTS = "{path} has {n} inputs ({names}); qbias-check runs models with exactly one input"
SEVERAL_OUTPUTS = "{path} has {n} outputs ({names}); pass output=<index or name> to pick one"
NO_SUCH_OUTPUT = "{path} has no output {output!r}; its outputs are {names}"
NO_SIGNATURE = "SavedModel {path} has no 'serving_default' signature; its signatures are {names}"
SHAPE_MISMATCH = (
    "data of shape {data_shape} does not fit the input of {path}: the model expects {model_shape} "
    "(N examples first)"
)
DTYPE_MISMATCH = "data of dtype {dtype} cannot feed {path}: expected numbers (float or integer)"
SCORES_SHAPE = "{path} returned scores of shape {shape}; expected (N, C)"
BAD_BATCH_SIZE = "batch_size must be a positive integer, got {batch_size!r}"
EMPTY = "no examples to predict for {path}"


class ModelLoadError(ValueError):
    """A model file is missing, not a model, corrupt, or needs code from the file."""


class InputMismatchError(ValueError):
    """The data does not fit the model's input (shape or number of inputs)."""


class InputDtypeError(TypeError):
    """The data's dtype cannot feed a model."""


@dataclass(frozen=True)
class InputSpec:
    """A model input: batch-first shape (None where free), dtype name, quantization if any."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def __str__(self) -> str:
        dims = ", ".join("N" if d is None else str(d) for d in self.shape)
        quant = (
            "" if self.scale is None else f", scale={self.scale:.6g}, zero_point={self.zero_point}"
        )
        return f"{self.name}: ({dims}) {self.dtype}{quant}"


@runtime_checkable
class Runner(Protocol):
    """What every runner offers: identity, input spec, and batched float32 predictions."""

    path: Path
    kind: str  # "litert" | "keras" | "tf_keras" | "saved_model"
    identity: str  # SHA-256 of the model file, or of the directory's names and contents
    input_spec: InputSpec
    output_name: str

    def predict(
        self, x: np.ndarray | Iterable[np.ndarray], *, batch_size: int = 64
    ) -> np.ndarray: ...


def load_runner(
    path: str | os.PathLike[str], *, num_threads: int | None = None, output: int | str | None = None
) -> Runner:
    """Load the model at ``path`` by its content (not its suffix) and return its runner.

    ``num_threads`` (LiteRT only) defaults to every core this process may use; ``output`` picks
    one output, by index or name, of a model that has several.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "saved_model.pb").is_file() or (p / "saved_model.pbtxt").is_file():
            return _SavedModelRunner(p, output)
        raise ModelLoadError(NOT_A_MODEL.format(path=p))
    if not p.exists():
        raise ModelLoadError(NOT_FOUND.format(path=p))
    head = _head(p)
    if head[4:8] == _TFLITE_ID:
        return LiteRTRunner(p, num_threads=num_threads, output=output)
    if head[:4] == _ZIP_MAGIC:
        kind = "keras" if _keras_zip_version(p).startswith("3") else "tf_keras"
        return _KerasRunner(p, kind, output)
    if head == _HDF5_MAGIC:
        return _KerasRunner(p, _h5_kind(p), output)
    raise ModelLoadError(NOT_A_MODEL.format(path=p))


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    """Load a Keras 3 or tf_keras model file in safe mode (no code from the file runs)."""
    p = Path(path)
    if not p.is_file():
        raise ModelLoadError(NOT_FOUND.format(path=p))
    head = _head(p)
    if head[:4] == _ZIP_MAGIC:
        return _load_keras(p, "keras" if _keras_zip_version(p).startswith("3") else "tf_keras")
    if head == _HDF5_MAGIC:
        return _load_keras(p, _h5_kind(p))
    raise ModelLoadError(NOT_A_MODEL.format(path=p))


def check_fits(
    data_shape: tuple[int, ...], model_shape: tuple[Any, ...], where: str | os.PathLike[str]
) -> None:
    """Raise :class:`InputMismatchError` naming both shapes unless data fits a batch-first input."""
    expected = [None if d is None or int(d) < 0 else int(d) for d in model_shape]
    fits = len(data_shape) == len(expected) and all(
        d is None or d == n for d, n in zip(expected[1:], data_shape[1:], strict=True)
    )
    if not fits:
        shown = "(N" + "".join(", ?" if d is None else f", {d}" for d in expected[1:]) + ")"
        raise InputMismatchError(
            SHAPE_MISMATCH.format(data_shape=tuple(data_shape), path=where, model_shape=shown)
        )


def default_num_threads() -> int:
    """Every core this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _BatchedRunner:
    """Shared input checks and batching; subclasses run one batch of float32 data."""

    path: Path
    kind: str
    identity: str
    input_spec: InputSpec
    output_name: str
    num_classes: int | None

    def predict(self, x: np.ndarray | Iterable[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        """Float32 scores (N, C) for an array of examples or an iterable of batches."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(BAD_BATCH_SIZE.format(batch_size=batch_size))
        if isinstance(x, np.ndarray) or (hasattr(x, "__array__") and hasattr(x, "shape")):
            return self._predict_array(np.asarray(x), batch_size)
        parts = [self._run_checked(np.asarray(b)) for b in _rebatch(x, batch_size)]
        if not parts:
            return self._empty()
        return np.concatenate(parts)

    def _predict_array(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        self._check(x)
        if len(x) == 0:
            return self._empty()
        first = self._run_checked(x[:batch_size])
        # Filled in place so memory holds one batch of inputs and the scores, never a copy of x.
        out = np.empty((len(x), first.shape[1]), dtype=np.float32)
        out[: len(first)] = first
        for start in range(batch_size, len(x), batch_size):
            out[start : start + batch_size] = self._run_checked(x[start : start + batch_size])
        return out

    def _run_checked(self, batch: np.ndarray) -> np.ndarray:
        self._check(batch)
        scores = self._run(batch)
        if scores.ndim != 2 or len(scores) != len(batch):
            raise ModelLoadError(SCORES_SHAPE.format(path=self.path, shape=scores.shape))
        return scores

    def _check(self, x: np.ndarray) -> None:
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise InputDtypeError(DTYPE_MISMATCH.format(dtype=x.dtype, path=self.path))
        check_fits(x.shape, self.input_spec.shape, self.path)

    def _empty(self) -> np.ndarray:
        if self.num_classes is None:
            raise ValueError(EMPTY.format(path=self.path))
        return np.empty((0, self.num_classes), dtype=np.float32)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class LiteRTRunner(_BatchedRunner):
    """A ``.tflite`` model on the LiteRT interpreter (XNNPACK, all cores by default)."""

    kind = "litert"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        num_threads: int | None = None,
        output: int | str | None = None,
        content: bytes | None = None,
    ) -> None:
        self.path = Path(path)
        data = self.path.read_bytes() if content is None else content
        self.identity = digest_bytes(data)
        interpreter_cls = require("ai_edge_litert.interpreter").Interpreter
        self.num_threads = num_threads or default_num_threads()
        try:
            self._interp = interpreter_cls(model_content=data, num_threads=self.num_threads)
        except (ValueError, RuntimeError) as exc:
            raise ModelLoadError(BAD_TFLITE.format(path=self.path, detail=exc)) from exc
        inputs = self._interp.get_input_details()
        if len(inputs) != 1:
            joined = ", ".join(d["name"] for d in inputs)
            raise InputMismatchError(
                SEVERAL_INPUTS.format(path=self.path, n=len(inputs), names=joined)
            )
        outputs = self._interp.get_output_details()
        names = [d["name"] for d in outputs]
        self._out = outputs[_pick_output(self.path, names, output)]
        self.output_name = self._out["name"]
        self._in = inputs[0]
        signature = [int(d) for d in self._in["shape_signature"]]
        # A batch dimension of -1 can be resized freely; a fixed one gets padded batches.
        self._fixed_batch = signature[0] if signature[0] > 0 else None
        scale, zero_point = self._in["quantization"]
        self._in_dtype = np.dtype(self._in["dtype"])
        quantized = np.issubdtype(self._in_dtype, np.integer) and scale != 0
        self.input_spec = InputSpec(
            name=self._in["name"],
            shape=(None, *(None if d < 0 else d for d in signature[1:])),
            dtype=self._in_dtype.name,
            scale=float(scale) if quantized else None,
            zero_point=int(zero_point) if quantized else None,
        )
        last = int(self._out["shape_signature"][-1])
        self.num_classes = last if last > 0 else None
        self._batch = -1

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._fixed_batch is None:
            return self._invoke(batch)
        b = self._fixed_batch
        parts = []
        for start in range(0, len(batch), b):
            chunk = batch[start : start + b]
            n = len(chunk)
            if n < b:
                pad = np.zeros((b - n, *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad])
            parts.append(self._invoke(chunk)[:n])
        return np.concatenate(parts)

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if n != self._batch:
            # Re-allocating costs little next to inference, and only happens on a size change.
            if self._fixed_batch is None:
                self._interp.resize_tensor_input(self._in["index"], [n, *batch.shape[1:]])
            self._interp.allocate_tensors()
            self._batch = n
        self._interp.set_tensor(self._in["index"], self._quantize(batch))
        self._interp.invoke()
        return _dequantize(self._interp.get_tensor(self._out["index"]), self._out)

    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        spec = self.input_spec
        if spec.scale is None or spec.zero_point is None:
            return batch.astype(self._in_dtype, copy=False)
        # In place on one float32 copy: this runs on every batch and must not slow the loop.
        # np.rint rounds ties to even where TFLite rounds them away from zero; an exact tie needs
        # x / scale to land on k + 0.5, which real inputs and calibrated scales do not hit.
        v = batch * np.float32(1.0 / spec.scale)
        v = v.astype(np.float32, copy=False)
        np.rint(v, out=v)
        v += np.float32(spec.zero_point)
        info = np.iinfo(self._in_dtype)
        np.clip(v, info.min, info.max, out=v)
        return v.astype(self._in_dtype)


def _dequantize(raw: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if np.issubdtype(raw.dtype, np.integer) and scale != 0:
        return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return raw.astype(np.float32, copy=False)


class _KerasRunner(_BatchedRunner):
    """A Keras 3 or tf_keras model loaded without running code from the file."""

    def __init__(self, path: Path, kind: str, output: int | str | None) -> None:
        self.path = path
        self.kind = kind
        self.identity = digest_path(path)
        self._model = _load_keras(path, kind)
        inputs = list(self._model.inputs)
        if len(inputs) != 1:
            joined = ", ".join(str(getattr(t, "name", i)) for i, t in enumerate(inputs))
            raise InputMismatchError(SEVERAL_INPUTS.format(path=path, n=len(inputs), names=joined))
        outputs = list(self._model.outputs)
        names = list(getattr(self._model, "output_names", None) or [])
        if len(names) != len(outputs):
            names = [str(i) for i in range(len(outputs))]
        self._out_index = _pick_output(path, names, output)
        self._several = len(outputs) > 1
        self.output_name = names[self._out_index]
        shape = tuple(inputs[0].shape)
        self.input_spec = InputSpec(
            name=str(getattr(inputs[0], "name", "input")),
            shape=(None, *(None if d is None else int(d) for d in shape[1:])),
            dtype=str(np.dtype(_dtype_name(inputs[0].dtype))),
        )
        last = outputs[self._out_index].shape[-1]
        self.num_classes = None if last is None else int(last)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        result = self._model.predict_on_batch(batch.astype(np.float32, copy=False))
        if self._several:
            result = result[self._out_index]
        return np.asarray(result, dtype=np.float32)


class _SavedModelRunner(_BatchedRunner):
    """A SavedModel directory, run through its ``serving_default`` signature."""

    kind = "saved_model"

    def __init__(self, path: Path, output: int | str | None) -> None:
        self.path = path
        self.identity = digest_path(path)
        tf = require("tensorflow")
        try:
            loaded = tf.saved_model.load(str(path))
        except Exception as exc:  # TF raises many unrelated types for a broken directory
            raise ModelLoadError(
                LOAD_FAILED.format(kind="SavedModel", path=path, detail=exc)
            ) from exc
        signatures = dict(loaded.signatures)
        if "serving_default" not in signatures:
            raise ModelLoadError(NO_SIGNATURE.format(path=path, names=sorted(signatures)))
        self._loaded = loaded  # keeps the variables the signature reads alive
        self._fn = signatures["serving_default"]
        specs = self._fn.structured_input_signature[1]
        if len(specs) != 1:
            joined = ", ".join(sorted(specs))
            raise InputMismatchError(SEVERAL_INPUTS.format(path=path, n=len(specs), names=joined))
        ((self._in_name, spec),) = specs.items()
        out_specs = self._fn.structured_outputs
        names = sorted(out_specs)
        self.output_name = names[_pick_output(path, names, output)]
        self._tf = tf
        self.input_spec = InputSpec(
            name=self._in_name,
            shape=(None, *(None if d is None else int(d) for d in spec.shape[1:])),
            dtype=spec.dtype.name,
        )
        self._in_dtype = spec.dtype
        last = out_specs[self.output_name].shape[-1]
        self.num_classes = None if last is None else int(last)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        result = self._fn(**{self._in_name: self._tf.constant(batch, dtype=self._in_dtype)})
        return np.asarray(result[self.output_name].numpy(), dtype=np.float32)


def _rebatch(batches: Iterable[np.ndarray], batch_size: int) -> Iterator[np.ndarray]:
    """Split batches larger than ``batch_size``; smaller ones pass through as they come."""
    for b in batches:
        arr = np.asarray(b)
        for start in range(0, len(arr), batch_size):
            yield arr[start : start + batch_size]


def _pick_output(path: Path, names: list[str], output: int | str | None) -> int:
    if output is None:
        if len(names) != 1:
            raise ModelLoadError(
                SEVERAL_OUTPUTS.format(path=path, n=len(names), names=", ".join(names))
            )
        return 0
    if (
        isinstance(output, int)
        and not isinstance(output, bool)
        and -len(names) <= output < len(names)
    ):
        return output % len(names)
    if isinstance(output, str) and output in names:
        return names.index(output)
    raise ModelLoadError(NO_SUCH_OUTPUT.format(path=path, output=output, names=names))


def _keras_zip_version(path: Path) -> str:
    """The Keras version recorded in a ``.keras`` zip ("" when it records none)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "config.json" not in names:
                raise ModelLoadError(
                    BAD_KERAS_ZIP.format(path=path, detail="it holds no config.json")
                )
            if "metadata.json" not in names:
                return ""
            return str(json.loads(zf.read("metadata.json")).get("keras_version", ""))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        if isinstance(exc, ModelLoadError):
            raise
        raise ModelLoadError(BAD_KERAS_ZIP.format(path=path, detail=exc)) from exc


def _h5_config(path: Path) -> tuple[str, Any]:
    """The Keras version and model config stored in an HDF5 model file."""
    require("tensorflow")
    h5py = require("h5py")
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("keras_version", "")
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise ModelLoadError(LOAD_FAILED.format(kind="HDF5", path=path, detail=exc)) from exc
    if raw is None:
        raise ModelLoadError(H5_NO_CONFIG.format(path=path))
    if isinstance(version, bytes):
        version = version.decode()
    if isinstance(raw, bytes):
        raw = raw.decode()
    return str(version), json.loads(raw)


def _h5_kind(path: Path) -> str:
    version, _ = _h5_config(path)
    return "keras" if version.startswith("3") else "tf_keras"


def _find_code_layers(config: Any) -> list[str]:
    """Class names in a model config whose deserialization would run code from the file."""
    found: list[str] = []
    if isinstance(config, dict):
        if config.get("class_name") == "Lambda":
            found.append("Lambda")
        for value in config.values():
            found.extend(_find_code_layers(value))
    elif isinstance(config, list):
        for value in config:
            found.extend(_find_code_layers(value))
    return found


def _load_keras(path: Path, kind: str) -> Any:
    """Load a Keras model in safe mode; HDF5 configs are screened first (h5 has no safe mode)."""
    head = _head(path)
    if head == _HDF5_MAGIC:
        _, config = _h5_config(path)
        if _find_code_layers(config):
            raise ModelLoadError(SAFE_MODE.format(path=path, detail="it has a Lambda layer"))
    require("tensorflow")
    lib = require("keras" if kind == "keras" else "tf_keras")
    kwargs: dict[str, Any] = {"compile": False}
    if head[:4] == _ZIP_MAGIC:
        kwargs["safe_mode"] = True
    try:
        return lib.models.load_model(str(path), **kwargs)
    except Exception as exc:  # Keras raises ValueError, TypeError, KeyError... for bad files
        text = str(exc)
        if any(s in text for s in ("safe_mode", "Lambda", "Unknown layer", "Could not locate")):
            raise ModelLoadError(SAFE_MODE.format(path=path, detail=text.split(".")[0])) from exc
        raise ModelLoadError(LOAD_FAILED.format(kind=kind, path=path, detail=exc)) from exc


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(8)


def _dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))
