"""Test setup shared by the whole repo: quiet TensorFlow logs and deterministic ops."""

from __future__ import annotations

import os

# Set before TensorFlow is first imported by any test (it reads them at import time).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
