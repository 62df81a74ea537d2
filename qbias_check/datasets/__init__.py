"""Eval sets: the in-memory type, the .npz and folder formats, and pluggable loaders.

The synthetic hair-colour generator (:mod:`qbias_check.datasets.synthetic`) and the CelebA
reader (:mod:`qbias_check.datasets.celeba`) build :class:`EvalSet` objects too.
"""

from __future__ import annotations

from qbias_check.datasets.evalset import (
    EmptyEvalSetError,
    EvalSet,
    EvalSetError,
    ImageDecodeError,
    ImageFolderInputs,
    LazyInputs,
    split,
)
from qbias_check.datasets.formats import read_folder, read_npz, save_folder, save_npz
from qbias_check.datasets.registry import load_eval_set, register_loader

__all__ = [
    "EmptyEvalSetError",
    "EvalSet",
    "EvalSetError",
    "ImageDecodeError",
    "ImageFolderInputs",
    "LazyInputs",
    "load_eval_set",
    "read_folder",
    "read_npz",
    "register_loader",
    "save_folder",
    "save_npz",
    "split",
]
