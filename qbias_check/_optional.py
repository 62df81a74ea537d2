"""Import heavy optional dependencies with a one-line hint that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {
    "tensorflow": "tf",
    "tf_keras": "tf",
    "keras": "tf",
    "tensorflow_model_optimization": "tf",
    "xgboost": "xgboost",
    "sklearn": "xgboost",
    "matplotlib": "plots",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra brings it."""


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the qbias-check extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module.split(".")[0], "all")
        raise MissingExtraError(
            f"{module} is needed here but is not installed: pip install 'qbias-check[{extra}]'"
        ) from exc
