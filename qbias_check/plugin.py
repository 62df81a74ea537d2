"""pytest plugin entry point (``pytest11``): the qbias gate. Hooks only; logic lives in plain modules."""

from __future__ import annotations
