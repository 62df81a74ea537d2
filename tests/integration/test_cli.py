"""The qbias-check command on a real model repo (conftest.model_repo)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qbias_check.cli import main

pytestmark = pytest.mark.slow


def report(model_repo: Path, *extra: str) -> int:
    return main(
        [
            "report",
            f"--reference={model_repo / 'float.keras'}",
            f"--quantized={model_repo / 'int8.tflite'}",
            f"--data={model_repo / 'eval.npz'}",
            f"--cache-dir={model_repo / 'cache'}",
            "--bootstrap=100",
            *extra,
        ]
    )


def test_report_prints_tables_and_writes_files(
    model_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = report(model_repo, f"--json={tmp_path / 'r.json'}", f"--markdown={tmp_path / 'r.md'}")
    out = capsys.readouterr().out
    assert "FNR Max-Min" in out and "class[bald]::fnr_increase" in out
    data = json.loads((tmp_path / "r.json").read_text())
    outcomes = {c["outcome"] for c in data["checks"]}
    assert status == (1 if "failed" in outcomes else 0)
    assert (tmp_path / "r.md").read_text().startswith("## qbias-check: int8")


def test_report_exits_1_when_a_limit_fails(model_repo: Path, tmp_path: Path) -> None:
    config = tmp_path / "thresholds.toml"
    config.write_text("[limits]\ncie_fraction = 0.0\n")
    assert report(model_repo, f"--config={config}") == 1
    config.write_text("[limits]\ncie_fraction = 1.0\n")
    assert report(model_repo, f"--config={config}") == 0


def test_bad_input_exits_2_with_the_reason(
    model_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--reference=nope.keras", f"--data={model_repo / 'eval.npz'}"]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_data_synthetic_writes_an_eval_set(tmp_path: Path) -> None:
    from qbias_check.datasets import load_eval_set

    assert main(["data", "synthetic", "--n=50", "--size=16", f"--out={tmp_path / 'e.npz'}"]) == 0
    evalset = load_eval_set(tmp_path / "e.npz")
    assert len(evalset) == 50 and evalset.classes[0] == "bald"
