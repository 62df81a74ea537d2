"""html_report: a self-contained page that names the model, every class and every check."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from qbias_check import html_report, plots
from qbias_check._optional import MissingExtraError
from tests.unit.test_plots import CLASSES, assert_png, report_data

pytest.importorskip("matplotlib")

MODEL = "hair-v3small"
CHECKS = [
    {
        "id": f"thresholds.toml::{MODEL}::accuracy_drop",
        "metric": "accuracy_drop",
        "scope": "model",
        "estimate": 0.01,
        "interval": [0.0, 0.02],
        "limit": 0.02,
        "outcome": "passed",
        "reason": "",
    },
    {
        "id": f"thresholds.toml::{MODEL}::class[bald]::fnr_increase",
        "metric": "fnr_increase",
        "scope": "class[bald]",
        "estimate": 0.26,
        "interval": [0.2, 0.31],
        "limit": 0.1,
        "outcome": "failed",
        "reason": "",
    },
    {
        "id": f"thresholds.toml::{MODEL}::male[gray]::fnr_gap_increase",
        "metric": "fnr_gap_increase",
        "scope": "male[gray]",
        "estimate": None,
        "interval": [None, None],
        "limit": 0.05,
        "outcome": "skipped",
        "reason": "support 12 < min_support 30",
    },
]


class _Collector(HTMLParser):
    """Every tag and attribute of a page, for checks on what it would load."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action"):
                self.links.append((tag, name, value or ""))


def _data() -> dict[str, Any]:
    data = report_data(model=None)
    data.update(
        model=MODEL,
        dataset="fixtures/hair/eval.npz",
        reference="v3small_float.keras",
        quantized="v3small_int8.tflite",
        gate="estimate",
        checks=CHECKS,
    )
    return data


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return html_report.write_html(tmp_path_factory.mktemp("report"), MODEL, _data())


@pytest.fixture(scope="module")
def page(written: Path) -> str:
    return written.read_text(encoding="utf-8")


def _parse(text: str) -> _Collector:
    parser = _Collector()
    parser.feed(text)
    parser.close()
    return parser


def test_write_html_names_the_file_after_the_model(written: Path) -> None:
    assert written.name == f"{MODEL}.html"
    assert [p.name for p in written.parent.iterdir()] == [written.name]  # no temp file left


def test_page_loads_nothing_from_outside(page: str) -> None:
    parsed = _parse(page)
    assert not {"script", "link", "iframe", "object", "embed"} & set(parsed.tags)
    assert parsed.links
    for tag, name, value in parsed.links:
        assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:40])
    assert "http://" not in page
    assert "https://" not in page
    assert "@import" not in page
    assert "url(" not in page


def test_page_embeds_every_standard_figure_as_a_valid_png(page: str) -> None:
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 5  # FNR, FPR, changes, and gaps of the two attributes
    for uri in uris:
        assert_png(base64.b64decode(uri))


def test_page_names_model_classes_and_checks(page: str) -> None:
    assert f"<title>qbias-check: {MODEL}</title>" in page
    for name in CLASSES:
        assert f'<td class="text">{name}</td>' in page
    for check in CHECKS:
        assert check["id"] in page
    assert "1 failed, 1 skipped, 1 passed" in page


def test_checks_failed_then_skipped_then_passed(page: str) -> None:
    order = [page.index(f'<tr class="{o}">') for o in ("failed", "skipped", "passed")]
    assert order == sorted(order)


def test_text_is_escaped() -> None:
    data = {**_data(), "dataset": "<script>alert(1)</script>"}
    text = html_report.html("<b>m</b>", data, figures={})
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert "&lt;b&gt;m&lt;/b&gt;" in text


def test_without_figures_or_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _data()
    assert 'id="figures"' not in html_report.html(MODEL, data)
    assert html_report.NO_FIGURES.split(":")[0] in html_report.html(MODEL, data, figures={})

    def missing(_: Any) -> dict[str, bytes]:
        raise MissingExtraError("matplotlib is needed here")

    monkeypatch.setattr(plots, "standard_figures", missing)
    text = html_report.write_html(tmp_path, MODEL, data).read_text(encoding="utf-8")
    assert "data:image/png" not in text
    assert "pip install &#x27;qbias-check[plots]&#x27;" in text
