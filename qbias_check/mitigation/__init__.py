"""Mitigations of quantization bias (thesis 3.3): each produces a model the gate can check.

- ``class_weights``: weights N_max / N_c per class (eq. 2.1) or per class x group cell.
- ``l1``: L1 regularization on the last layer (table 3.1).
- ``qat``: quantization-aware training and full-integer conversion, MobileNetV3Small included.

Light on purpose: the submodules import TensorFlow and friends only inside their functions.
"""

from __future__ import annotations
