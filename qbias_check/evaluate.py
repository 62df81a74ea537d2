"""Eval set + models + cache -> predictions -> :class:`Comparison` for one model of a gate.

Predictions are cached under a key of the model file's content, the eval set's content hash and
the runner options; the cache's per-key file lock makes concurrent workers compute each once.
A cache hit loads no model at all (no TensorFlow import).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

import numpy as np

from qbias_check.cache import Cache, digest_path
from qbias_check.comparison import Comparison, compare
from qbias_check.datasets import EvalSet, load_eval_set
from qbias_check.thresholds import GateSpec, ModelSpec

BATCH_SIZE = 64


@dataclass(frozen=True)
class Evaluation:
    """One model's comparison and the artifacts behind it."""

    model: str
    reference: str
    quantized: str
    built: bool  # True when the int8 model was built by PTQ from the reference
    comparison: Comparison


def _tool_versions() -> dict[str, str]:
    versions = {}
    for dist in ("tensorflow", "ai-edge-litert", "xgboost"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def predict_cached(
    model_path: str | Path,
    evalset: EvalSet,
    cache: Cache,
    *,
    corrector: str | Path | None = None,
    batch_size: int = BATCH_SIZE,
) -> np.ndarray:
    """Scores (N, C) of the model at ``model_path`` (followed by ``corrector``, if any) on
    ``evalset``, from the cache when possible."""
    key = {
        "what": "predictions",
        "model": digest_path(model_path),
        "corrector": digest_path(corrector) if corrector is not None else None,
        "data": evalset.content_hash,
        "batch_size": batch_size,  # TensorFlow's float results vary with it in the last bits
        "tools": _tool_versions(),
    }

    def compute() -> np.ndarray:
        from qbias_check.runners import load_runner

        runner = load_runner(model_path)
        if corrector is not None:
            # Imported only for a model that names a corrector: the gate needs no XGBoost else.
            from qbias_check.mitigation.corrector import CorrectedRunner, Corrector

            runner = CorrectedRunner(runner, Corrector.load(corrector))
        return runner.predict(evalset.batches(batch_size), batch_size=batch_size)

    return cache.get_or_compute_array(key, compute)


def quantized_path(model: ModelSpec, evalset: EvalSet, cache: Cache) -> tuple[str, bool]:
    """The int8 model of ``model``: its own file, or a PTQ build from the reference (cached).

    A build calibrates on ``calibration.samples`` examples of the eval set drawn with its seed.
    """
    if model.quantized is not None:
        return model.quantized, False
    from qbias_check.artifacts import build_int8_cached, calibration_sample

    pool = calibration_sample_source(evalset, model.calibration.samples, model.calibration.seed)
    calibration = calibration_sample(
        pool, samples=model.calibration.samples, seed=model.calibration.seed
    )
    path = build_int8_cached(
        model.reference,
        calibration,
        cache,
        samples=model.calibration.samples,
        seed=model.calibration.seed,
    )
    return str(path), True


def calibration_sample_source(evalset: EvalSet, samples: int, seed: int) -> np.ndarray:
    """In-memory inputs to draw calibration examples from (a lazy set loads only a subset)."""
    if not evalset.is_lazy:
        return np.asarray(evalset.x)
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(evalset), size=min(samples, len(evalset)), replace=False))
    return evalset.subset(index).inputs()


def evaluate_model(
    spec: GateSpec,
    model: ModelSpec,
    evalset: EvalSet,
    cache: Cache,
) -> Evaluation:
    """Compare ``model``'s int8 and float predictions on ``evalset`` under ``spec``'s statistics."""
    quantized, built = quantized_path(model, evalset, cache)
    stats = spec.statistics
    comparison = compare(
        evalset.y,
        predict_cached(model.reference, evalset, cache),
        predict_cached(quantized, evalset, cache, corrector=model.corrector),
        classes=evalset.classes,
        attributes=evalset.attributes,
        intersections=stats.intersections,
        bootstrap=stats.bootstrap,
        confidence=stats.confidence,
        seed=stats.seed,
    )
    return Evaluation(model.name, model.reference, quantized, built, comparison)


def load_data(spec: GateSpec, cache: Cache) -> EvalSet:
    """The gate's eval set. A synthetic one is generated once and then read from the cache:
    rendering thousands of faces would otherwise dominate a warm gate run."""
    if not spec.dataset.startswith("synthetic:"):
        return load_eval_set(spec.dataset)
    from qbias_check.datasets import read_npz, save_npz, synthetic

    key = {
        "what": "synthetic eval set",
        "address": spec.dataset,
        "generator": digest_path(synthetic.__file__),  # a changed generator draws new images
    }

    def generate(tmp: Path) -> None:
        save_npz(load_eval_set(spec.dataset), tmp, compress=False)

    path = cache.get_or_build(key, generate, suffix=".npz")
    return replace(read_npz(path), source=spec.dataset)
