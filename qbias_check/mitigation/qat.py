"""Quantization-aware training (thesis 3.4.5): annotate, fine-tune, convert to full-integer TFLite.

Works on tf_keras models (tensorflow-model-optimization needs Keras 2), MobileNetV3Small included,
which tfmot cannot quantize out of the box: its hard-swish and hard-sigmoid are written as
``relu6(x + 3) * (1 / 6)`` with Python operators, so the model holds ``TFOpLambda`` layers that
tfmot can neither clone nor quantize, and its ``Rescaling`` and ``Multiply`` layers have no
quantize config. :func:`quantize_aware` rebuilds those op lambdas as ``Rescaling`` layers
(``x + c`` is a rescaling with scale 1 and offset c, ``x * c`` one with scale c and offset 0) and
gives ``Rescaling`` and ``Multiply`` a config that quantizes their output (as tfmot does ``Add``).
A ``Rescaling`` that both scales and shifts (the input layer's ``x / 127.5 - 1``) is split in two,
so that no tensor lacks a range and the converter can keep every op in int8.
"""

from __future__ import annotations

import functools
import json
import warnings
from typing import Any, Literal

from qbias_check._optional import require

IO = Literal["int8", "float"]

#: TFOpLambda functions that are an elementwise affine map of one tensor and a number, as
#: ``(scale, offset)`` of the equivalent ``Rescaling`` layer given that number.
_AFFINE_OPS: dict[str, Any] = {
    "__operators__.add": lambda c: (1.0, c),
    "math.add": lambda c: (1.0, c),
    "math.subtract": lambda c: (1.0, -c),
    "math.multiply": lambda c: (c, 0.0),
    "math.truediv": lambda c: (1.0 / c, 0.0),
}

#: Layer classes that tfmot's default registry lacks and that only need their output quantized.
_OUTPUT_ONLY_LAYERS = ("Rescaling", "Multiply")

#: Layers that tfmot handles through its graph transforms rather than its registry.
_TRANSFORMED_LAYERS = ("BatchNormalization",)

NO_CONFIG_ERROR = (
    "quantization-aware training cannot quantize these layers, no quantize config covers them: {}. "
    "Rebuild them from supported Keras layers (Conv2D, DepthwiseConv2D, Dense, ReLU, Add, "
    "Multiply, Rescaling, ...), or give each a tfmot QuantizeConfig yourself "
    "(tfmot.quantization.keras.quantize_annotate_layer, then quantize_apply inside "
    "quantize_scope); convert_qat converts the result either way."
)


@functools.cache
def _output_quantize_config() -> type[Any]:
    """The QuantizeConfig class that fake-quantizes a weightless layer's output (defined lazily)."""
    tfmot = require("tensorflow_model_optimization")
    qk = tfmot.quantization.keras

    class OutputQuantizeConfig(qk.QuantizeConfig):  # type: ignore[misc, name-defined]
        """Quantize only the output, as tfmot's default 8-bit scheme does for ``Add``."""

        def get_weights_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def get_activations_and_quantizers(self, layer: Any) -> list[Any]:
            return []

        def set_quantize_weights(self, layer: Any, quantize_weights: list[Any]) -> None:
            pass

        def set_quantize_activations(self, layer: Any, quantize_activations: list[Any]) -> None:
            pass

        def get_output_quantizers(self, layer: Any) -> list[Any]:
            # Same quantizer as the default scheme's activations: asymmetric, per tensor.
            return [
                qk.quantizers.MovingAverageQuantizer(
                    num_bits=8, per_axis=False, symmetric=False, narrow_range=False
                )
            ]

        def get_config(self) -> dict[str, Any]:
            return {}

    return OutputQuantizeConfig


def replace_op_lambdas(model: Any) -> Any:
    """Rebuild a functional model so that every affine step is one ``Rescaling``, same weights.

    Two rewrites, both needed for a full-integer MobileNetV3:

    - tf_keras records Python arithmetic on tensors (``x + 3``, ``x * (1 / 6)``) as ``TFOpLambda``
      layers; tfmot's cloning breaks on them and its registry has no config for them. A
      ``Rescaling`` computes the same affine map and is an ordinary layer.
    - A ``Rescaling`` with both a scale and an offset runs as two ops (multiply, then add), and the
      tensor between them would get no quantization range, so the converter would leave both ops
      in float. Split into two layers, each gets its own fake-quantized output.

    Models that need neither rewrite come back unchanged.
    """
    keras = require("tf_keras")
    config = model.get_config()
    if "layers" not in config or not any(
        _affine_op(layer) is not None or _is_two_step_rescaling(layer) for layer in config["layers"]
    ):
        return model
    config = json.loads(json.dumps(config))  # a private copy to edit
    rewritten = []
    for layer in config["layers"]:
        scale_offset = _affine_op(layer)
        if scale_offset is not None:
            # A TFOpLambda node lists its tensor argument and the call kwargs (y=c); a plain
            # layer node lists its inputs only.
            source = layer["inbound_nodes"][0][:3]
            layer = _rescaling_config(layer["config"], *scale_offset, [[[*source, {}]]])
        if _is_two_step_rescaling(layer):
            scale = _rescaling_config(
                {**layer["config"], "name": layer["config"]["name"] + "/scale"},
                layer["config"]["scale"],
                0.0,
                layer["inbound_nodes"],
            )
            rewritten.append(scale)
            # The offset step keeps the original name, so the layers after it need no edit.
            layer = _rescaling_config(
                layer["config"],
                1.0,
                layer["config"]["offset"],
                [[[scale["name"], 0, 0, {}]]],
            )
        rewritten.append(layer)
    config["layers"] = rewritten
    rebuilt = keras.Model.from_config(config)
    for layer in model.layers:
        if layer.weights:
            rebuilt.get_layer(layer.name).set_weights(layer.get_weights())
    return rebuilt


def _rescaling_config(
    layer_config: dict[str, Any], scale: Any, offset: Any, inbound_nodes: list[Any]
) -> dict[str, Any]:
    """A serialized ``Rescaling`` layer that keeps the name, dtype and trainability of another."""
    name = layer_config["name"]
    return {
        "class_name": "Rescaling",
        "module": "keras.layers",
        "registered_name": None,
        "name": name,
        "config": {
            "name": name,
            "trainable": layer_config.get("trainable", True),
            "dtype": layer_config.get("dtype", "float32"),
            "scale": scale,
            "offset": offset,
        },
        "inbound_nodes": inbound_nodes,
    }


def _is_two_step_rescaling(layer_config: dict[str, Any]) -> bool:
    """True for a serialized ``Rescaling`` that both scales and shifts."""
    if layer_config.get("class_name") != "Rescaling":
        return False
    return bool(layer_config["config"]["scale"] != 1.0 and layer_config["config"]["offset"] != 0.0)


def _affine_op(layer_config: dict[str, Any]) -> tuple[float, float] | None:
    """(scale, offset) when a serialized layer is an op lambda ``f(tensor, number)``, else None."""
    if layer_config.get("class_name") != "TFOpLambda":
        return None
    to_affine = _AFFINE_OPS.get(layer_config["config"].get("function", ""))
    nodes = layer_config.get("inbound_nodes", [])
    if to_affine is None or len(nodes) != 1 or len(nodes[0]) != 4:
        return None
    source, kwargs = nodes[0], nodes[0][3]
    if not isinstance(source[0], str) or set(kwargs) - {"y", "name"}:
        return None
    constant = kwargs.get("y")
    if isinstance(constant, bool) or not isinstance(constant, int | float):
        return None
    scale, offset = to_affine(float(constant))
    return float(scale), float(offset)


def unsupported_layers(model: Any) -> list[str]:
    """Names (and classes) of the layers that neither tfmot's registry nor these configs cover."""
    tfmot = require("tensorflow_model_optimization")
    keras = require("tf_keras")
    registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
    names = []
    for layer in model.layers:
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.InputLayer) or kind in _TRANSFORMED_LAYERS:
            continue
        if isinstance(layer, keras.Model):
            names.append(f"{layer.name} (a nested {kind}: build the model flat, functionally)")
        elif not (registry.supports(layer) or kind in _OUTPUT_ONLY_LAYERS):
            names.append(f"{layer.name} ({kind})")
    return names


def quantize_aware(model: Any) -> Any:
    """Return a QAT copy of a tf_keras model: fake-quantized like int8, same weights, uncompiled.

    Raises ValueError naming the layers no quantize config covers.
    """
    tfmot = require("tensorflow_model_optimization")
    keras = require("tf_keras")
    qk = tfmot.quantization.keras
    model = replace_op_lambdas(model)
    missing = unsupported_layers(model)
    if missing:
        raise ValueError(NO_CONFIG_ERROR.format(", ".join(missing)))
    config_class = _output_quantize_config()

    def annotate(layer: Any) -> Any:
        if type(layer).__name__ in _OUTPUT_ONLY_LAYERS:
            return qk.quantize_annotate_layer(layer, quantize_config=config_class())
        return qk.quantize_annotate_layer(layer)

    with qk.quantize_scope({config_class.__name__: config_class}):
        # The clone wraps the original layer objects, so the weights carry over.
        annotated = keras.models.clone_model(model, clone_function=annotate)
        return qk.quantize_apply(annotated)


def fine_tune(
    model: Any,
    x: Any,
    y: Any,
    *,
    epochs: int = 15,
    batch_size: int = 256,
    learning_rate: float = 0.01,
    lr_decay: float = 0.9,
    optimizer: Any = None,
    from_logits: bool = False,
    class_weight: dict[int, float] | None = None,
    sample_weight: Any = None,
    validation_data: Any = None,
    verbose: int = 0,
) -> Any:
    """Compile and train a (QAT) model in place with the thesis's recipe; return the History.

    Thesis 3.4.5: another 15 epochs with the hyperparameters of the float training, i.e. SGD from
    learning rate 0.01 on an exponential schedule and batches of 256 (3.4.3). The thesis does not
    give the schedule's rate; ``lr_decay`` is the factor per epoch. Labels may be class indices
    (N,) or one-hot (N, C); ``optimizer`` replaces the SGD recipe when given.
    """
    keras = require("tf_keras")
    np = require("numpy")
    labels = np.asarray(y)
    if optimizer is None:
        steps_per_epoch = max(1, -(-len(labels) // batch_size))
        schedule = keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=steps_per_epoch, decay_rate=lr_decay
        )
        optimizer = keras.optimizers.SGD(learning_rate=schedule)
    loss_class = (
        keras.losses.CategoricalCrossentropy
        if labels.ndim == 2
        else keras.losses.SparseCategoricalCrossentropy
    )
    model.compile(
        optimizer=optimizer, loss=loss_class(from_logits=from_logits), metrics=["accuracy"]
    )
    return model.fit(
        x,
        labels,
        epochs=epochs,
        batch_size=batch_size,
        class_weight=class_weight,
        sample_weight=sample_weight,
        validation_data=validation_data,
        verbose=verbose,
    )


def convert_qat(model: Any, *, io: IO = "int8") -> bytes:
    """Convert a QAT model to a full-integer ``.tflite``; no calibration set needed.

    The fake-quant ranges learned in training give every tensor its scale. ``io="int8"`` makes the
    inputs and outputs int8 too (as a PTQ build); ``io="float"`` keeps float32 at the edges around
    an int8 body. Raises ValueError when some op stayed in float, naming its tensors.
    """
    if io not in ("int8", "float"):
        raise ValueError(f"io must be 'int8' or 'float', got {io!r}")
    tf = require("tensorflow")
    # Converting from the Keras model (or from a function that tracks it) first exports a
    # SavedModel that traces every layer's call again: with tfmot wrappers that takes 5-7 times
    # as long as the conversion itself. A bare module that only holds the variables avoids it.
    module = tf.Module()
    module.model_variables = list(model.variables)
    specs = [tf.TensorSpec(tensor.shape, tensor.dtype) for tensor in model.inputs]
    single = len(specs) == 1
    module.serve = tf.function(
        lambda *xs: model(xs[0] if single else list(xs), training=False), input_signature=specs
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [module.serve.get_concrete_function()], module
    )
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    # No `supported_ops = {TFLITE_BUILTINS_INT8}`: the converter then insists on a representative
    # dataset even for QAT graphs (TF 2.21). Full-integer is checked on the result instead.
    if io == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    with warnings.catch_warnings():
        # The input range comes from tfmot's input QuantizeLayer; the converter warns regardless.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        flatbuffer = bytes(converter.convert())
    floating = float_tensors(flatbuffer, io=io)
    if floating:
        raise ValueError(
            "the QAT model did not convert to full integer; these tensors stayed float32: "
            + ", ".join(floating[:10])
            + (f" and {len(floating) - 10} more" if len(floating) > 10 else "")
            + ". Their layers lack fake-quant ranges: give them a quantize config."
        )
    return flatbuffer


def float_tensors(flatbuffer: bytes, *, io: IO = "int8") -> list[str]:
    """Names of float tensors inside a ``.tflite`` (its inputs and outputs too when io='int8')."""
    litert = require("ai_edge_litert.interpreter")
    np = require("numpy")
    interpreter = litert.Interpreter(model_content=flatbuffer)
    edges = set()
    if io == "float":
        edges = {d["index"] for d in interpreter.get_input_details()}
        edges |= {d["index"] for d in interpreter.get_output_details()}
    return [
        d["name"]
        for d in interpreter.get_tensor_details()
        if d["dtype"] in (np.float32, np.float16) and d["index"] not in edges
    ]


def build_qat(
    model: Any,
    x: Any,
    y: Any,
    *,
    epochs: int = 15,
    io: IO = "int8",
    **fit_options: Any,
) -> tuple[Any, bytes]:
    """QAT in one call: annotate, fine-tune for ``epochs``, convert; return (QAT model, .tflite)."""
    qat_model = quantize_aware(model)
    fine_tune(qat_model, x, y, epochs=epochs, **fit_options)
    return qat_model, convert_qat(qat_model, io=io)
