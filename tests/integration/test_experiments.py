"""The smoke budget of every experiment runs end to end and writes the thesis's layouts.

One module-scoped run of all six experiments: trained models are memoized per process, so the
experiments share their float models (V3Small serves four of them) and the whole module
trains seven small networks once.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from qbias_check.experiments import EXPERIMENTS, run

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Experiment -> (table heading, row labels that must appear, columns of its header row).
LAYOUTS: dict[str, tuple[str, list[str], list[str]]] = {
    "binary": (
        "Table 4.1",
        ["Baseline | FPR", "Baseline | FNR", "*Absolute change*", "*Relative increase*"],
        ["Model", "Metric", "Overall", "M", "F", "Y", "O", "MY", "MO", "FY", "FO"],
    ),
    "architectures": (
        "Table 4.2",
        ["Floating-point accuracy | V2", "V3Small", "V3Small Minimalistic", "CEV"],
        ["Metric", "Model", "Value"],
    ),
    "hyperparameters": (
        "Table 4.3",
        ["Floating-point accuracy | Baseline", "| L1 |", "Class weighting", "FNR Max-Min increase"],
        ["Metric", "Model", "Value"],
    ),
    "postprocess": (
        "Table 4.4",
        ["Floating-point accuracy | V2", "V3 baseline", "V3 L1", "V3 class weighting"],
        ["Metric", "Model", "PTQ", "Post-processing", "Balanced post-processing"],
    ),
    "qat": (
        "Table 4.5",
        ["Floating-point accuracy | Baseline", "Quantized accuracy | PTQ", "| QAT |"],
        ["Metric", "Model", "Value"],
    ),
    "attributes": (
        "Figures 4.12-4.17",
        ["Δ accuracy (male - female)", "Δ FNR (young - old)", "V3 minimalistic QAT"],
        ["Attribute", "Difference", "Class", "Model", "Float", "Int8", "Change"],
    ),
}
# Experiment -> the t-SNE figures it draws (thesis 3.4.6, figures 4.5-4.7), first seed only.
TSNE_FIGURES: dict[str, list[str]] = {
    "architectures": ["tsne_v2.png", "tsne_v3small.png", "tsne_v3small_minimalistic.png"],
    "hyperparameters": ["tsne_baseline.png", "tsne_l1.png", "tsne_class_weighting.png"],
}
METRIC_KEYS = ("accuracy_float", "accuracy_int8", "cie_fraction", "fnr_max_min_increase", "cev")


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("experiments")
    return {name: run(name, budget="smoke", out=out) for name in EXPERIMENTS}


def headers(markdown: str) -> list[list[str]]:
    lines = markdown.splitlines()
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line, nxt in itertools.pairwise(lines)
        if nxt.startswith("|---")
    ]


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_tables_have_the_thesis_layout(folders: dict[str, Path], name: str) -> None:
    text = (folders[name] / "tables.md").read_text()
    heading, labels, columns = LAYOUTS[name]
    assert f"## {heading}" in text
    for label in labels:
        assert label in text
    assert columns in headers(text)
    assert "data: **synthetic**" in text
    assert "budget: `smoke`" in text


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_json_holds_numbers_configuration_and_data(folders: dict[str, Path], name: str) -> None:
    record: dict[str, Any] = json.loads((folders[name] / "results.json").read_text())
    assert record["experiment"] == name
    assert record["data"]["spec"] == "synthetic"
    assert record["data"]["test"]["source"].startswith("synthetic:")
    assert record["budget"]["name"] == "smoke" and record["seeds"] == [0]
    assert record["settings"] and all(s["training"] for s in record["settings"].values())
    for numbers in record["results"].values():
        for key in METRIC_KEYS[:3]:
            assert 0.0 <= numbers[key]["mean"] <= 1.0
            assert numbers[key]["per_seed"] == [numbers[key]["mean"]]
        assert {"fnr_max_min_increase", "cev"} <= set(numbers)
    assert list(record["tables"]) and all(record["tables"].values())


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_figures_are_png(folders: dict[str, Path], name: str) -> None:
    pytest.importorskip("matplotlib")
    pngs = sorted((folders[name] / "figures").glob("*.png"))
    assert pngs
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
        assert f"figures/{png.name}" in (folders[name] / "tables.md").read_text()


@pytest.mark.parametrize("name", sorted(TSNE_FIGURES))
def test_tsne_figures_are_drawn_and_listed(folders: dict[str, Path], name: str) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    record = json.loads((folders[name] / "results.json").read_text())
    text = (folders[name] / "tables.md").read_text()
    for figure in TSNE_FIGURES[name]:
        data = (folders[name] / "figures" / figure).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 2000
        assert data.endswith(b"IEND\xaeB`\x82")
        assert figure in record["figures"]
        assert f"figures/{figure}" in text


def test_postprocess_correctors_never_see_the_test_split(folders: dict[str, Path]) -> None:
    record = json.loads((folders["postprocess"] / "results.json").read_text())
    train, test = record["data"]["train"]["source"], record["data"]["test"]["source"]
    assert "part 1/3" in train and "part 3/3" in test
