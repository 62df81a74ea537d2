"""Build int8 candidates of one float model and compare them side by side (thesis table 4.4).

``build`` makes one artifact (PTQ, QAT or selective quantization); ``mitigate`` splits a
labelled set in two, builds every asked-for candidate on the first half (calibration, QAT
fine-tuning, corrector training) and compares each with the float model on the second half,
so no candidate is judged on data it was built from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qbias_check.atomic import write_bytes
from qbias_check.comparison import Comparison, compare
from qbias_check.datasets import EvalSet
from qbias_check.datasets.evalset import split

METHODS = ("ptq", "qat", "corrector", "selective")
BUILD_METHODS = ("ptq", "qat", "selective")
NOT_TF_KERAS = (
    "{path}: QAT needs a tf_keras model (.h5 or a tf_keras .keras file), because "
    "tensorflow-model-optimization works on tf_keras only; this is a {kind} model"
)
UNKNOWN_METHOD = "unknown method {method!r}; expected some of {known}"

# Table 4.4's rows, in its order: (label, key in Comparison.summary).
TABLE_ROWS = (
    ("Accuracy float", "accuracy_float"),
    ("Accuracy int8", "accuracy_int8"),
    ("CIE fraction", "cie_fraction"),
    ("FPR variance increase", "fpr_variance_increase"),
    ("FNR variance increase", "fnr_variance_increase"),
    ("FPR Max-Min increase", "fpr_max_min_increase"),
    ("FNR Max-Min increase", "fnr_max_min_increase"),
    ("CEV", "cev"),
)


@dataclass(frozen=True)
class Candidate:
    """One mitigation's int8 model (and corrector), and how it compares with the float model."""

    method: str
    model: Path
    corrector: Path | None
    size_bytes: int
    comparison: Comparison


def build(
    reference: str | Path,
    data: EvalSet,
    method: str,
    *,
    samples: int = 100,
    seed: int = 0,
    epochs: int = 15,
    keep_float: int | Sequence[str] = 2,
) -> bytes:
    """One int8 ``.tflite`` of ``reference``: PTQ, QAT (fine-tuned on ``data``) or selective."""
    x = np.asarray(data.inputs(), dtype=np.float32)
    if method == "ptq":
        from qbias_check.artifacts import build_int8

        return build_int8(str(reference), x, samples=samples, seed=seed)
    if method == "qat":
        from qbias_check.mitigation.qat import build_qat
        from qbias_check.runners import load_keras_model, load_runner

        kind = load_runner(reference).kind
        if kind != "tf_keras":
            raise ValueError(NOT_TF_KERAS.format(path=reference, kind=kind))
        _, flatbuffer = build_qat(load_keras_model(reference), x, data.y, epochs=epochs)
        return flatbuffer
    if method == "selective":
        from qbias_check.mitigation.selective import build_selective

        return build_selective(str(reference), x, keep_float=keep_float, samples=samples, seed=seed)
    raise ValueError(UNKNOWN_METHOD.format(method=method, known=list(BUILD_METHODS)))


def mitigate(
    reference: str | Path,
    data: EvalSet,
    methods: Sequence[str],
    out: Path,
    *,
    seed: int = 0,
    epochs: int = 15,
    keep_float: Sequence[int] = (2,),
    per_class: int = 1000,
    bootstrap: int = 1000,
) -> list[Candidate]:
    """Build each method's candidate on half of ``data``; compare each on the other half.

    ``selective`` gives one candidate per ``keep_float`` value (``selective-k0``, ...), so the
    size / accuracy / bias trade-off of keeping more layers in float reads across one table.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(UNKNOWN_METHOD.format(method=unknown[0], known=list(METHODS)))
    from qbias_check.runners import LiteRTRunner, load_runner

    build_half, test_half = split(data, (0.5, 0.5), seed=seed)
    reference_runner = load_runner(reference)
    float_test = reference_runner.predict(test_half.batches(64))
    out.mkdir(parents=True, exist_ok=True)
    built: dict[str, Path] = {}

    def artifact(method: str, k: int = 0) -> Path:
        name = f"{method}-k{k}" if method == "selective" else method
        if name not in built:
            path = out / f"{Path(reference).stem}_{name}.tflite"
            options = {"seed": seed, "epochs": epochs, "keep_float": k}
            write_bytes(path, build(reference, build_half, method, **options))
            built[name] = path
        return built[name]

    expanded = [
        (f"selective-k{k}", k) if m == "selective" else (m, 0)
        for m in methods
        for k in (keep_float if m == "selective" else [0])
    ]
    candidates = []
    for name, k in expanded:
        corrector_path: Path | None = None
        runner: Any
        if name == "corrector":
            model = artifact("ptq")
            runner, corrector_path = _corrected(
                LiteRTRunner(model), reference_runner, build_half, out, per_class, seed
            )
        else:
            model = artifact(name.partition("-")[0], k)
            runner = LiteRTRunner(model)
        comparison = compare(
            test_half.y,
            float_test,
            runner.predict(test_half.batches(64)),
            classes=data.classes,
            attributes=test_half.attributes,
            bootstrap=bootstrap,
            seed=seed,
        )
        size = model.stat().st_size + (corrector_path.stat().st_size if corrector_path else 0)
        candidates.append(Candidate(name, model, corrector_path, size, comparison))
    return candidates


def _corrected(
    int8_runner: Any, reference_runner: Any, train: EvalSet, out: Path, per_class: int, seed: int
) -> tuple[Any, Path]:
    """The int8 model wrapped in a class-balanced corrector trained on ``train`` (thesis 3.4.7),
    and the corrector's file."""
    from qbias_check.mitigation.corrector import CorrectedRunner, train_corrector_on

    corrector = train_corrector_on(
        int8_runner, reference_runner, train, per_class=per_class, seed=seed
    )
    path = corrector.save(out / f"{int8_runner.path.stem}_corrector.json")
    return CorrectedRunner(int8_runner, corrector), path


def table(candidates: Sequence[Candidate]) -> list[list[str]]:
    """Rows in the layout of thesis table 4.4: one per metric, one column per candidate,
    ``estimate [low, high]``; the last row gives each candidate's size."""
    rows = []
    for label, key in TABLE_ROWS:
        row = [label]
        for c in candidates:
            low, high = c.comparison.interval(key)
            row.append(f"{c.comparison.summary[key]:.4f} [{low:.4f}, {high:.4f}]")
        rows.append(row)
    rows.append(["Size (bytes)", *[str(c.size_bytes) for c in candidates]])
    return rows
