"""Mitigations of quantization bias (thesis 3.3): class weights, L1, QAT, and more.

Light on purpose: the submodules import TensorFlow and friends only inside their functions.
"""

from __future__ import annotations
