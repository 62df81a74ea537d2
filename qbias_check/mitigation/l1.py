"""L1 regularization on the last layer only (thesis 3.4.3, table 3.1: alpha = 0.01)."""

from __future__ import annotations

from typing import Any

from qbias_check._optional import require

NO_KERNEL_LAYER = (
    "found no layer with a kernel regularizer (Dense or Conv) in model {!r} to put L1 on"
)
NOT_REBUILDABLE = (
    "cannot add L1 to model {!r}: it must be a Sequential or functional tf_keras model "
    "(a subclassed model has no config to rebuild from); add kernel_regularizer yourself"
)
UNKNOWN_LAYER = "model {!r} has no layer {!r} with a kernel regularizer; candidates: {}"
BAD_L1 = "l1 must be a positive number, got {!r}"


def with_l1_last_layer(model: Any, l1: float = 0.01, *, layer: str | None = None) -> Any:
    """Return a copy of a tf_keras model with ``L1(l1)`` on its last kernel layer, same weights.

    The last layer with a kernel is the classifier: a Dense layer, or the 1x1 ``Conv2D`` named
    ``Logits`` that tf_keras MobileNetV3 uses instead. ``layer`` names another one. The copy is
    uncompiled; the penalty ``l1 * sum(|kernel|)`` shows in ``model.losses`` and so in training.
    """
    keras = require("tf_keras")
    if isinstance(l1, bool) or not isinstance(l1, int | float) or not l1 > 0:
        raise ValueError(BAD_L1.format(l1))
    try:
        config = model.get_config()
    except NotImplementedError as exc:
        raise ValueError(NOT_REBUILDABLE.format(model.name)) from exc
    if not isinstance(config, dict) or "layers" not in config:
        raise ValueError(NOT_REBUILDABLE.format(model.name))
    candidates = [
        entry["config"]["name"]
        for entry in config["layers"]
        if "kernel_regularizer" in entry.get("config", {})
    ]
    if not candidates:
        raise ValueError(NO_KERNEL_LAYER.format(model.name))
    target = candidates[-1] if layer is None else layer
    if target not in candidates:
        raise ValueError(UNKNOWN_LAYER.format(model.name, target, ", ".join(candidates)))
    for entry in config["layers"]:
        if entry["config"]["name"] == target:
            # Rebuilding from the config (rather than setting the attribute on the live layer)
            # is what makes Keras register the penalty in model.losses.
            entry["config"]["kernel_regularizer"] = keras.regularizers.serialize(
                keras.regularizers.L1(l1)
            )
    rebuilt = type(model).from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt
