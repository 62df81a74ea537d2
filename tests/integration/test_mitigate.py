"""qbias-check build and mitigate on a small trained tf_keras CNN: real tfmot, XGBoost, LiteRT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from qbias_check._optional import require
from qbias_check.cli import main
from qbias_check.datasets import EvalSet, save_npz
from qbias_check.mitigation.candidates import TABLE_ROWS
from qbias_check.runners import load_runner

from .conftest import CLASSES, SIZE, make_images, tfkeras_cnn

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tf_keras CNN trained on colour classes (.h5) and a labelled set with one attribute."""
    tf_keras = require("tf_keras")
    model = tfkeras_cnn()
    model.compile(optimizer=tf_keras.optimizers.Adam(0.02), loss="sparse_categorical_crossentropy")
    train = make_images(256, seed=0)
    model.fit(train.x, train.y, epochs=6, batch_size=32, verbose=0)
    root = tmp_path_factory.mktemp("mitigate")
    model.save(root / "float.h5")
    data = make_images(400, seed=3)
    groups = np.where(np.arange(400) % 3 == 0, "a", "b")
    save_npz(
        EvalSet(data.x, data.y, ("red", "green", "blue", "dark"), {"group": groups}),
        root / "data.npz",
    )
    return root / "float.h5", root / "data.npz"


@pytest.mark.parametrize("method", ["ptq", "qat", "selective"])
def test_build_writes_a_runnable_int8_model(
    trained: tuple[Path, Path], tmp_path: Path, method: str
) -> None:
    reference, data = trained
    out = tmp_path / f"{method}.tflite"
    args = [
        "build",
        f"--reference={reference}",
        f"--data={data}",
        f"--out={out}",
        f"--method={method}",
    ]
    assert main([*args, "--epochs=1", "--keep-float=1"]) == 0
    runner = load_runner(out)
    assert runner.kind == "litert" and runner.input_spec.dtype == "int8"
    assert runner.predict(np.zeros((2, SIZE, SIZE, 3), np.float32)).shape == (2, CLASSES)


def test_qat_refuses_a_keras3_model(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [f"--reference={model_repo / 'float.keras'}", f"--data={model_repo / 'eval.npz'}"]
    assert main(["build", *args, f"--out={tmp_path / 'q.tflite'}", "--method=qat"]) == 2
    assert "QAT needs a tf_keras model" in capsys.readouterr().err


def test_mitigate_prints_table_4_4_and_writes_every_candidate(
    trained: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference, data = trained
    status = main(
        [
            "mitigate",
            f"--reference={reference}",
            f"--data={data}",
            f"--out={tmp_path}",
            "--methods=ptq,qat,corrector,selective",
            "--epochs=1",
            "--per-class=40",
            "--bootstrap=50",
            "--keep-float=0,1",
        ]
    )
    assert status == 0
    out = capsys.readouterr().out
    for label, _ in TABLE_ROWS:
        assert label in out
    assert out.count("ptq") >= 2 and "corrector" in out
    results = json.loads((tmp_path / "mitigate.json").read_text())
    assert set(results) == {"ptq", "qat", "corrector", "selective-k0", "selective-k1"}
    # keeping no layer in float is plain PTQ
    assert results["selective-k0"]["summary"] == results["ptq"]["summary"]
    corrector = Path(results["corrector"]["corrector"])
    assert corrector.suffix == ".json" and corrector.exists()
    # every candidate is judged on the same held-out half
    assert len({r["n"] for r in results.values()}) == 1
    assert results["ptq"]["summary"]["accuracy_float"]["estimate"] > 0.5


def test_gate_checks_a_corrector_candidate(
    trained: tuple[Path, Path], tmp_path: Path, pytester: pytest.Pytester
) -> None:
    reference, data = trained
    assert (
        main(
            [
                "mitigate",
                f"--reference={reference}",
                f"--data={data}",
                f"--out={tmp_path}",
                "--methods=corrector",
                "--per-class=40",
                "--bootstrap=20",
            ]
        )
        == 0
    )
    results = json.loads((tmp_path / "mitigate.json").read_text())["corrector"]
    pytester.makefile(
        ".toml",
        thresholds=f"""
[dataset]
path = "{data}"
[[model]]
name = "ptq"
reference = "{reference}"
quantized = "{results["model"]}"
[[model]]
name = "ptq-corrector"
reference = "{reference}"
quantized = "{results["model"]}"
corrector = "{results["corrector"]}"
[statistics]
bootstrap = 20
[limits]
cie_fraction = 1.0
""",
    )
    reports = tmp_path / "reports"
    result = pytester.runpytest(
        "thresholds.toml", f"--qbias-cache-dir={tmp_path / 'cache'}", f"--qbias-report={reports}"
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["ptq: accuracy*", "ptq-corrector: accuracy*"])
    record = json.loads((reports / "ptq-corrector.json").read_text())["corrector"]
    # mitigate trained it on one half of data.npz; the gate reads all of it, so this overlaps
    assert record["trained_on"].startswith(str(data)) or "data.npz" in record["trained_on"]
    assert "trained on" in (reports / "ptq-corrector.md").read_text()
