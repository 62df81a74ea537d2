"""qbias-check: keep int8 quantization from quietly making a model more biased.

The public API is imported lazily so that ``import qbias_check`` (and ``pytest --help``) never
pulls in TensorFlow or LiteRT.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "compare": "qbias_check.comparison",
    "Comparison": "qbias_check.comparison",
    "EvalSet": "qbias_check.datasets",
    "load_runner": "qbias_check.runners",
    "build_int8": "qbias_check.artifacts",
}

__all__ = ["Comparison", "EvalSet", "__version__", "build_int8", "compare", "load_runner"]

if TYPE_CHECKING:
    from qbias_check.artifacts import build_int8
    from qbias_check.comparison import Comparison, compare
    from qbias_check.datasets import EvalSet
    from qbias_check.runners import load_runner


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qbias_check' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
