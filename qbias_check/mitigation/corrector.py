"""The post-processing corrector (thesis 3.4.7, table 4.4): int8 scores -> the float model's label.

A small XGBoost classifier reads the int8 model's output scores and predicts what the float model
would have said. The thesis trained it on 1,000 examples per class (balanced), which removed most
of the bias that quantization added, or on 5,000 examples of the natural distribution, which
recovered more accuracy but kept the bias. The corrector must be trained on data disjoint from the
gate's eval set: :func:`split_for_corrector` makes that split, and the saved model records what it
was trained on. Models are saved in XGBoost's own JSON or UBJ format (never pickle), with the
metadata inside the model file as an XGBoost attribute.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from qbias_check._optional import require
from qbias_check.cache import digest_array, digest_bytes
from qbias_check.datasets.evalset import EvalSet, split_indices
from qbias_check.runners import InputSpec, Runner

FORMAT = "qbias-check-corrector/1"
META_KEY = "qbias_check_corrector"
SUFFIXES = {".json": "json", ".ubj": "ubj"}
DEFAULT_PARAMS: dict[str, Any] = {
    "max_depth": 3,
    "eta": 0.3,
    "num_boost_round": 20,
    "tree_method": "hist",
}

BAD_SCORES = "int8 scores must be a 2-D array (N, C) of numbers, got shape {shape}"
LENGTH_MISMATCH = "int8 scores have {n} rows but float_labels has {m} labels"
Y_TRUE_MISMATCH = "y_true has {m} labels but int8 scores have {n} rows"
LABEL_RANGE = "{what} must be integers in [0, {last}] (the score columns); found {value}"
TOO_FEW_CLASSES = "a corrector needs at least two classes; the scores have {n} column(s)"
BAD_PER_CLASS = "per_class must be a positive integer, got {value!r}"
BAD_SAMPLES = "samples must be a positive integer or None, got {value!r}"
SHORT_CLASSES = (
    "balanced sample asked for {per_class} examples per class (by {by}), but {details}; "
    "used all of them ({total} examples in all)"
)
CLASS_COUNT_MISMATCH = (
    "the corrector was trained for {expected} classes but {what} {got}; "
    "a corrector only fits the model (and class list) it was trained for"
)
BAD_SUFFIX = "save the corrector as .json or .ubj (XGBoost's own formats), not {suffix!r}"
NOT_FOUND = "corrector file {path} does not exist"
NOT_XGBOOST = "{path} is not an XGBoost model in JSON or UBJ format: {detail}"
NOT_A_CORRECTOR = "{path} is an XGBoost model but not a qbias-check corrector (no {key} attribute)"
BAD_FRACTION = "train_fraction must lie strictly between 0 and 1, got {value!r}"


class CorrectorSampleWarning(UserWarning):
    """A class had fewer examples than the balanced sample asked for; all of them were used."""


class Corrector:
    """A trained corrector: an XGBoost booster plus what it was trained on (``info``)."""

    def __init__(self, booster: Any, info: Mapping[str, Any]) -> None:
        self.booster = booster
        self.info: dict[str, Any] = dict(info)
        self.n_classes = int(self.info["n_classes"])

    def __repr__(self) -> str:
        return (
            f"Corrector({self.n_classes} classes, {self.info['n_train']} training examples, "
            f"balanced={self.info['balanced']}, trained_on={self.info['trained_on']!r}, "
            f"{self.size_bytes} bytes)"
        )

    @property
    def size_bytes(self) -> int:
        """Bytes of the model alone (no metadata) in the smaller of XGBoost's JSON and UBJ forms.

        The thesis's "10 kB". Neither form always wins: UBJ tags every value with its type.
        """
        bare = self._bare()
        return min(len(bare.save_raw(raw_format=f)) for f in ("json", "ubj"))

    @property
    def identity(self) -> str:
        """SHA-256 of the model (UBJ, without metadata) and of its metadata."""
        model = bytes(self._bare().save_raw(raw_format="ubj"))
        return digest_bytes(model + json.dumps(self.info, sort_keys=True).encode())

    def _bare(self) -> Any:
        """A copy of the booster without the metadata attribute."""
        bare = self.booster.copy()
        bare.set_attr(**{META_KEY: None})
        return bare

    def predict_scores(self, int8_scores: np.ndarray) -> np.ndarray:
        """Corrected class probabilities, float32 (N, C), from the int8 model's scores (N, C)."""
        xgb = require("xgboost")
        scores = _scores(int8_scores)
        if scores.shape[1] != self.n_classes:
            raise ValueError(
                CLASS_COUNT_MISMATCH.format(
                    expected=self.n_classes, what="the int8 scores have", got=scores.shape[1]
                )
            )
        if len(scores) == 0:
            return np.empty((0, self.n_classes), dtype=np.float32)
        out = self.booster.predict(xgb.DMatrix(scores))
        return np.asarray(out, dtype=np.float32).reshape(len(scores), self.n_classes)

    def predict(self, int8_scores: np.ndarray) -> np.ndarray:
        """Corrected labels (N,): the float model's label as the corrector predicts it."""
        return np.asarray(self.predict_scores(int8_scores).argmax(axis=1), dtype=np.int64)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model, metadata included, as XGBoost JSON (``.json``) or UBJ (``.ubj``)."""
        p = Path(path)
        if p.suffix.lower() not in SUFFIXES:
            raise ValueError(BAD_SUFFIX.format(suffix=p.suffix))
        self.booster.set_attr(**{META_KEY: json.dumps(self.info, sort_keys=True)})
        raw = self.booster.save_raw(raw_format=SUFFIXES[p.suffix.lower()])
        # Written whole then renamed, so a reader never sees half a model.
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_bytes(bytes(raw))
        tmp.replace(p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Corrector:
        """Read a corrector saved by :meth:`save` (XGBoost JSON or UBJ; no code is run)."""
        xgb = require("xgboost")
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(NOT_FOUND.format(path=p))
        booster = xgb.Booster()
        try:
            # From bytes, so XGBoost sniffs JSON vs UBJ by content rather than by suffix.
            booster.load_model(bytearray(p.read_bytes()))
        except xgb.core.XGBoostError as exc:
            # XGBoost prefixes a time stamp and its source location; the reason comes after.
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            detail = lines[0].split(": ", 1)[-1]
            raise ValueError(NOT_XGBOOST.format(path=p, detail=detail)) from exc
        raw = booster.attr(META_KEY)
        if raw is None:
            raise ValueError(NOT_A_CORRECTOR.format(path=p, key=META_KEY))
        return cls(booster, json.loads(raw))


def train_corrector(
    int8_scores: np.ndarray,
    float_labels: np.ndarray,
    *,
    balanced: bool = True,
    per_class: int = 1000,
    samples: int | None = None,
    seed: int = 0,
    y_true: np.ndarray | None = None,
    trained_on: str = "<unnamed data>",
    **xgb_params: Any,
) -> Corrector:
    """Train a corrector that maps int8 scores (N, C) to the float model's labels (N,).

    ``balanced=True`` draws up to ``per_class`` examples of each class, stratified by ``y_true``
    when it is given (a data set balanced by its true classes, as the thesis's "1,000 examples
    from each class") and by the float label otherwise; a class with fewer examples gives a
    :class:`CorrectorSampleWarning` that says how many were used. ``balanced=False`` draws
    ``samples`` examples (all when None) of the natural distribution (thesis: 5,000).
    ``trained_on`` names the data for the record (it must be disjoint from the gate's eval set);
    ``xgb_params`` override :data:`DEFAULT_PARAMS` (``num_boost_round`` included).
    """
    xgb = require("xgboost")
    scores = _scores(int8_scores)
    n, n_classes = scores.shape
    if n_classes < 2:
        raise ValueError(TOO_FEW_CLASSES.format(n=n_classes))
    target = _labels(float_labels, n_classes, "float_labels")
    if len(target) != n:
        raise ValueError(LENGTH_MISMATCH.format(n=n, m=len(target)))
    strata = target
    if y_true is not None:
        strata = _labels(y_true, n_classes, "y_true")
        if len(strata) != n:
            raise ValueError(Y_TRUE_MISMATCH.format(n=n, m=len(strata)))
    by = "true label" if y_true is not None else "float label"
    if balanced:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(BAD_PER_CLASS.format(value=per_class))
        index, used = balanced_sample(strata, n_classes, per_class=per_class, seed=seed, by=by)
    else:
        if samples is not None and (
            isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
        ):
            raise ValueError(BAD_SAMPLES.format(value=samples))
        rng = np.random.default_rng(seed)
        take = n if samples is None else min(samples, n)
        index = np.sort(rng.choice(n, size=take, replace=False))
        used = np.bincount(strata[index], minlength=n_classes)
    params = {**DEFAULT_PARAMS, **xgb_params}
    rounds = int(params.pop("num_boost_round"))
    params.update(objective="multi:softprob", num_class=n_classes, seed=seed)
    train = xgb.DMatrix(scores[index], label=target[index])
    booster = xgb.train(params, train, num_boost_round=rounds)
    info = {
        "format": FORMAT,
        "n_classes": n_classes,
        "balanced": balanced,
        "per_class": per_class if balanced else None,
        "samples": None if balanced else len(index),
        "stratified_by": by if balanced else None,
        "seed": seed,
        "n_train": len(index),
        "counts_used": [int(c) for c in used],
        "trained_on": trained_on,
        "scores_digest": digest_array(scores),
        "params": {**params, "num_boost_round": rounds},
        "xgboost": metadata.version("xgboost"),
    }
    return Corrector(booster, info)


def balanced_sample(
    strata: np.ndarray, n_classes: int, *, per_class: int, seed: int = 0, by: str = "label"
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices of up to ``per_class`` examples of each class, and the count per class.

    Warns (:class:`CorrectorSampleWarning`) naming every class that has fewer, and how many of
    its examples were used.
    """
    rng = np.random.default_rng(seed)
    chosen: list[np.ndarray] = []
    used = np.zeros(n_classes, dtype=np.int64)
    short: list[str] = []
    for c in range(n_classes):
        members = np.flatnonzero(strata == c)
        if len(members) < per_class:
            short.append(f"class {c} has {len(members)}")
        take = min(per_class, len(members))
        chosen.append(rng.choice(members, size=take, replace=False))
        used[c] = take
    if short:
        details = ", ".join(short)
        warnings.warn(
            SHORT_CLASSES.format(
                per_class=per_class, by=by, details=details, total=int(used.sum())
            ),
            CorrectorSampleWarning,
            stacklevel=3,
        )
    return np.sort(np.concatenate(chosen)), used


def split_for_corrector(
    evalset: EvalSet, *, train_fraction: float = 0.5, seed: int = 0
) -> tuple[EvalSet, EvalSet]:
    """Split ``evalset`` into (corrector training set, gate eval set), disjoint by construction."""
    if isinstance(train_fraction, bool) or not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(BAD_FRACTION.format(value=train_fraction))
    train_idx, gate_idx = split_indices(
        len(evalset), (float(train_fraction), 1.0 - float(train_fraction)), seed=seed
    )
    return (
        evalset.subset(train_idx, source=f"{evalset.source}[corrector training, seed={seed}]"),
        evalset.subset(gate_idx, source=f"{evalset.source}[gate eval, seed={seed}]"),
    )


def train_corrector_on(
    int8_runner: Runner,
    reference_runner: Runner,
    train_set: EvalSet,
    *,
    batch_size: int = 64,
    **options: Any,
) -> Corrector:
    """Run both models on ``train_set`` and train a corrector on the result.

    The record names ``train_set`` by source and content hash, so a report can show that the
    corrector never saw the gate's eval set. ``options`` go to :func:`train_corrector`.
    """
    int8_scores = int8_runner.predict(train_set.batches(batch_size), batch_size=batch_size)
    float_scores = reference_runner.predict(train_set.batches(batch_size), batch_size=batch_size)
    options.setdefault("y_true", train_set.y)
    options.setdefault("trained_on", f"{train_set.source} (sha256 {train_set.content_hash})")
    corrector = train_corrector(int8_scores, float_scores.argmax(axis=1), **options)
    corrector.info["int8_model"] = int8_runner.identity
    corrector.info["reference_model"] = reference_runner.identity
    return corrector


class CorrectedRunner:
    """ "int8 + corrector" as one candidate model: the Runner protocol over both.

    ``identity`` combines the int8 model's hash with the corrector's, so cached predictions of
    the bare int8 model are never mistaken for corrected ones.
    """

    def __init__(self, int8_runner: Runner, corrector: Corrector) -> None:
        known = getattr(int8_runner, "num_classes", None)
        if known is not None and int(known) != corrector.n_classes:
            raise ValueError(
                CLASS_COUNT_MISMATCH.format(
                    expected=corrector.n_classes,
                    what=f"model {int8_runner.path} has",
                    got=int(known),
                )
            )
        self.int8_runner = int8_runner
        self.corrector = corrector
        self.path: Path = int8_runner.path
        self.kind: str = int8_runner.kind
        self.input_spec: InputSpec = int8_runner.input_spec
        self.output_name: str = f"{int8_runner.output_name}+corrector"
        self.num_classes: int = corrector.n_classes
        self.identity: str = digest_bytes(
            f"{int8_runner.identity}+corrector:{corrector.identity}".encode()
        )

    def predict(self, x: np.ndarray | Iterable[np.ndarray], *, batch_size: int = 64) -> np.ndarray:
        """Corrected float32 scores (N, C) for an array of examples or an iterable of batches."""
        return self.corrector.predict_scores(self.int8_runner.predict(x, batch_size=batch_size))


def _scores(int8_scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(int8_scores)
    if scores.ndim != 2 or not (
        np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)
    ):
        raise ValueError(BAD_SCORES.format(shape=scores.shape))
    return scores.astype(np.float32, copy=False)


def _labels(labels: np.ndarray, n_classes: int, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(LABEL_RANGE.format(what=what, last=n_classes - 1, value=arr.dtype))
    bad = arr[(arr < 0) | (arr >= n_classes)]
    if bad.size:
        raise ValueError(LABEL_RANGE.format(what=what, last=n_classes - 1, value=int(bad[0])))
    return arr.astype(np.int64, copy=False)
