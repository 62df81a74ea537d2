"""Imports point one way: the core, the gate and the command line load no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "keras", "tf_keras", "ai_edge_litert", "xgboost", "matplotlib")


@pytest.mark.parametrize(
    ("statement", "forbidden"),
    [
        (
            "import qbias_check.metrics, qbias_check.stats, qbias_check.comparison",
            (*HEAVY, "pytest"),
        ),
        ("import qbias_check.plugin", (*HEAVY, "numpy", "pandas")),
        ("import qbias_check.gate, qbias_check.datasets, qbias_check.mitigation", HEAVY),
        ("import qbias_check.cli; qbias_check.cli.build_parser()", HEAVY),
    ],
)
def test_no_heavy_library_is_imported(statement: str, forbidden: tuple[str, ...]) -> None:
    code = f"import sys; {statement}; print(sorted(m for m in {forbidden!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
