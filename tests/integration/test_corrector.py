"""The post-processing corrector with real XGBoost: recovery, sampling, files, the wrapper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qbias_check.datasets.evalset import EvalSet
from qbias_check.mitigation.corrector import (
    CorrectedRunner,
    Corrector,
    CorrectorSampleWarning,
    split_for_corrector,
    train_corrector,
    train_corrector_on,
)
from qbias_check.runners import InputSpec, Runner, load_runner
from tests.integration.conftest import CLASSES, ImageData, make_images

pytest.importorskip("xgboost")

PERMUTATION = np.array([2, 0, 3, 1])  # no class keeps its column


def _permuted_case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float labels, and "int8" scores whose columns are the float's scores permuted."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, size=n)
    logits = rng.normal(0.0, 1.0, size=(n, CLASSES))
    logits[np.arange(n), labels] += 4.0
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    int8_scores = np.empty_like(scores)
    int8_scores[:, PERMUTATION] = scores
    return int8_scores.astype(np.float32), labels


def test_recovers_the_float_label_from_permuted_scores() -> None:
    train_x, train_labels = _permuted_case(2000, seed=0)
    test_x, test_labels = _permuted_case(1000, seed=1)
    corrector = train_corrector(train_x, train_labels, per_class=300, nthread=1)
    assert np.mean(test_x.argmax(axis=1) == test_labels) == 0.0
    assert np.mean(corrector.predict(test_x) == test_labels) > 0.97
    scores = corrector.predict_scores(test_x)
    assert scores.dtype == np.float32 and scores.shape == (1000, CLASSES)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)


def test_balanced_sample_counts_and_short_class_warning() -> None:
    scores, labels = _permuted_case(400, seed=2)
    y_true = np.where(np.arange(400) < 30, 3, np.arange(400) % 3)  # class 3: 30 examples
    with pytest.warns(CorrectorSampleWarning, match=r"class 3 has 30; used all of them"):
        corrector = train_corrector(scores, labels, per_class=50, y_true=y_true, nthread=1)
    assert corrector.info["counts_used"] == [50, 50, 50, 30]
    assert corrector.info["n_train"] == 180
    assert corrector.info["stratified_by"] == "true label"
    natural = train_corrector(scores, labels, balanced=False, samples=100, nthread=1)
    assert natural.info["n_train"] == 100 and natural.info["stratified_by"] is None


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_save_load_round_trip_without_pickle(tmp_path: Path, suffix: str) -> None:
    scores, labels = _permuted_case(600, seed=3)
    corrector = train_corrector(scores, labels, per_class=100, trained_on="split A", nthread=1)
    path = corrector.save(tmp_path / f"corrector{suffix}")
    raw = path.read_bytes()
    assert not raw.startswith(b"\x80")  # a pickle stream starts with the PROTO opcode
    if suffix == ".json":
        assert raw.lstrip().startswith(b"{")
    loaded = Corrector.load(path)
    assert loaded.info == corrector.info and loaded.info["trained_on"] == "split A"
    assert loaded.identity == corrector.identity
    np.testing.assert_array_equal(loaded.predict_scores(scores), corrector.predict_scores(scores))
    assert 0 < loaded.size_bytes < len(raw)  # the metadata is not counted
    with pytest.raises(ValueError, match=r"\.json or \.ubj"):
        corrector.save(tmp_path / "corrector.pkl")


def test_foreign_files_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "model.json"
    garbage.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="is not an XGBoost model"):
        Corrector.load(garbage)
    xgb = pytest.importorskip("xgboost")
    plain = tmp_path / "plain.json"
    booster = xgb.train({"nthread": 1}, xgb.DMatrix(np.eye(4), label=np.arange(4.0)), 2)
    booster.save_model(plain)
    with pytest.raises(ValueError, match="not a qbias-check corrector"):
        Corrector.load(plain)


def test_wrong_class_count_is_an_error() -> None:
    scores, labels = _permuted_case(300, seed=4)
    corrector = train_corrector(scores, labels, per_class=50, nthread=1)
    with pytest.raises(ValueError, match="trained for 4 classes but the int8 scores have 3"):
        corrector.predict_scores(scores[:, :3])
    three = train_corrector(scores[:, :3], labels % 3, per_class=50, nthread=1)
    with pytest.raises(ValueError, match=r"trained for 3 classes but model .* has 4"):
        CorrectedRunner(_FakeRunner(), three)


def test_split_is_disjoint_and_named() -> None:
    data = make_images(100, seed=5)
    evalset = EvalSet(x=data.x, y=data.y, classes=("r", "g", "b", "dark"), source="imgs")
    train, gate = split_for_corrector(evalset, train_fraction=0.3, seed=1)
    assert len(train) == 30 and len(gate) == 70
    train_rows = {row.tobytes() for row in train.x}
    assert not any(row.tobytes() in train_rows for row in gate.x)
    assert "corrector training" in train.source and "gate eval" in gate.source


@pytest.mark.slow
def test_corrected_runner_on_a_real_litert_model(
    cnn_int8_path: Path, cnn_float_tflite_path: Path, images: ImageData
) -> None:
    int8 = load_runner(cnn_int8_path, num_threads=1)
    reference = load_runner(cnn_float_tflite_path, num_threads=1)
    evalset = EvalSet(x=images.x, y=images.y, classes=("r", "g", "b", "dark"), source="imgs")
    train, gate = split_for_corrector(evalset, seed=0)
    with pytest.warns(CorrectorSampleWarning):
        corrector = train_corrector_on(int8, reference, train, per_class=40, nthread=1)
    assert str(train.content_hash) in corrector.info["trained_on"]
    assert corrector.info["int8_model"] == int8.identity
    runner = CorrectedRunner(int8, corrector)
    assert isinstance(runner, Runner)
    assert runner.identity not in (int8.identity, corrector.identity)
    assert runner.input_spec == int8.input_spec
    scores = runner.predict(gate.batches(16), batch_size=16)
    assert scores.dtype == np.float32 and scores.shape == (len(gate), CLASSES)
    np.testing.assert_array_equal(scores, runner.predict(gate.x, batch_size=64))
    float_labels = reference.predict(gate.x).argmax(axis=1)
    assert np.mean(scores.argmax(axis=1) == float_labels) > 0.9


class _FakeRunner:
    """Just enough of a runner for the class-count check at construction."""

    path = Path("four_classes.tflite")
    kind = "litert"
    identity = "0" * 64
    output_name = "out"
    num_classes = CLASSES
    input_spec = InputSpec(name="x", shape=(None, 16, 16, 3), dtype="float32")
