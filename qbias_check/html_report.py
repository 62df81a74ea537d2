"""A self-contained HTML report per model: summary, checks, per-class and gap tables, figures.

The page loads nothing: CSS is inline and figures are PNGs embedded as ``data:`` URIs, so it
opens from a CI artifact or an air-gapped machine exactly as it was written. Outcomes are
written out in words as well as coloured, so the page reads in black and white too.
"""

from __future__ import annotations

import base64
import html as _html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from qbias_check._optional import MissingExtraError
from qbias_check.atomic import write_text
from qbias_check.report import fmt_interval, fmt_number

OUTCOME_ORDER = {"failed": 0, "skipped": 1, "passed": 2}
FIGURE_CAPTIONS = {
    "fnr_per_class": "FNR per class of the float and the int8 model (thesis figures 4.2, 4.4).",
    "fpr_per_class": "Balanced FPR per class of the float and the int8 model (figures 4.1, 4.3).",
    "changes_per_class": (
        "Change of FNR and balanced FPR per class after int8, with paired-bootstrap intervals; "
        "* marks an interval that excludes 0 (figures 4.3-4.4, 4.10-4.11)."
    ),
}
GAP_CAPTION = (
    "Protected attribute {attribute}: group difference (two groups) or gap (max - min) per class "
    "before and after int8, and the gap increase with its interval (figures 4.12-4.17)."
)
SUMMARY_ROWS = (
    ("accuracy", "accuracy_float", "accuracy_int8", "accuracy_drop", "drop"),
    ("FNR Max-Min", "fnr_max_min_float", "fnr_max_min_int8", "fnr_max_min_increase", "increase"),
    ("FPR Max-Min", "fpr_max_min_float", "fpr_max_min_int8", "fpr_max_min_increase", "increase"),
    ("CIE fraction", None, None, "cie_fraction", "fraction"),
    ("FNR variance increase", None, None, "fnr_variance_increase", "increase"),
    ("FPR variance increase", None, None, "fpr_variance_increase", "increase"),
    ("CEV", None, None, "cev", "value"),
    ("SDE", None, None, "sde", "value"),
)
NO_FIGURES = (
    "Figures need matplotlib, which is not installed: pip install 'qbias-check[plots]'. "
    "The tables below hold every number."
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto;
       max-width: 72rem; padding: 0 1rem; color: #111; line-height: 1.4; }
h1 { font-size: 1.5rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem;
     border-bottom: 1px solid #999; }
nav a { margin-right: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #bbb; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #eee; } td.text, th.text { text-align: left; }
tr.failed td.outcome { background: #f6d5c3; font-weight: bold; }
tr.skipped td.outcome { background: #fbefc4; font-style: italic; }
tr.passed td.outcome { background: #cde8f6; }
.meta { color: #333; } .counts { font-size: 1.05rem; }
figure { margin: 1rem 0 2rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-size: 0.9rem; color: #333; }
"""


def _esc(value: Any) -> str:
    return _html.escape(str(value), quote=True)


def _p_value(value: Any) -> str:
    # Four decimals would print a strong result as a bare 0.0000.
    if value is not None and 0 <= value < 1e-4:
        return "&lt; 0.0001"
    return fmt_number(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, text_cols: int = 1) -> str:
    """An HTML table of already escaped cells; the first ``text_cols`` columns align left."""

    def cell(tag: str, i: int, content: str) -> str:
        cls = ' class="text"' if i < text_cols else ""
        return f"<{tag}{cls}>{content}</{tag}>"

    head = "".join(cell("th", i, _esc(h)) for i, h in enumerate(headers))
    body = "\n".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _summary(data: Mapping[str, Any]) -> str:
    s = data["summary"]
    pct = round(float(data["confidence"]) * 100)
    rows = []
    for label, before, after, change, kind in SUMMARY_ROWS:
        if change not in s:
            continue
        rows.append(
            [
                _esc(label),
                fmt_number(s[before]["estimate"]) if before else "",
                fmt_number(s[after]["estimate"]) if after else "",
                f"{fmt_number(s[change]['estimate'])} ({kind})",
                fmt_interval(*s[change]["interval"]),
            ]
        )
    return _table(["metric", "float", "int8", "change", f"{pct} % interval"], rows)


def _checks(checks: Sequence[Mapping[str, Any]]) -> str:
    if not checks:
        return "<p>No checks were run for this model.</p>"
    ordered = sorted(checks, key=lambda c: (OUTCOME_ORDER.get(c["outcome"], 3), c["id"]))
    lines = []
    for c in ordered:
        low, high = (c.get("interval") or [None, None])[:2]
        cells = [
            f'<td class="text">{_esc(c["id"])}</td>',
            f'<td class="text outcome">{_esc(c["outcome"])}</td>',
            f"<td>{fmt_number(c.get('estimate'))}</td>",
            f"<td>{fmt_number(c.get('limit'))}</td>",
            f"<td>{fmt_interval(low, high)}</td>",
            f'<td class="text">{_esc(c.get("reason") or "")}</td>',
        ]
        lines.append(f'<tr class="{_esc(c["outcome"])}">' + "".join(cells) + "</tr>")
    head = "".join(
        f'<th class="text">{h}</th>' if h in ("check", "outcome", "reason") else f"<th>{h}</th>"
        for h in ("check", "outcome", "estimate", "limit", "interval", "reason")
    )
    body = "\n".join(lines)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _per_class(records: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        [
            _esc(r["class"]),
            fmt_number(r.get("support")),
            fmt_number(r.get("fnr_float")),
            fmt_number(r.get("fnr_int8")),
            fmt_number(r.get("fnr_increase")),
            fmt_interval(r.get("fnr_increase_low"), r.get("fnr_increase_high")),
            fmt_number(r.get("fpr_float")),
            fmt_number(r.get("fpr_int8")),
            fmt_number(r.get("fpr_increase")),
            fmt_interval(r.get("fpr_increase_low"), r.get("fpr_increase_high")),
            fmt_number(r.get("flips")),
            fmt_number(r.get("broken")),
            fmt_number(r.get("fixed")),
            _p_value(r.get("mcnemar_p")),
        ]
        for r in records
    ]
    headers = [
        "class",
        "n",
        "FNR float",
        "FNR int8",
        "FNR increase",
        "interval",
        "FPR float",
        "FPR int8",
        "FPR increase",
        "interval",
        "flips",
        "broken",
        "fixed",
        "McNemar p",
    ]
    return _table(headers, rows)


def _gaps(records: Sequence[Mapping[str, Any]]) -> str:
    if not records:
        return "<p>No protected attributes were given.</p>"
    rows = [
        [
            _esc(g["attribute"]),
            _esc("all classes" if g["class"] == "*" else g["class"]),
            _esc(g["metric"]),
            fmt_number(g.get("gap_float")),
            fmt_number(g.get("gap_int8")),
            fmt_number(g.get("gap_increase")),
            fmt_interval(g.get("low"), g.get("high")),
            fmt_number(g.get("difference_float")),
            fmt_number(g.get("difference_int8")),
            fmt_number(g.get("difference_change")),
        ]
        for g in records
    ]
    headers = [
        "attribute",
        "class",
        "metric",
        "gap float",
        "gap int8",
        "gap increase",
        "interval",
        "difference float",
        "difference int8",
        "difference change",
    ]
    return _table(headers, rows, text_cols=3)


def _figures(figures: Mapping[str, bytes]) -> str:
    parts = []
    for name, png in figures.items():
        if name.startswith("gaps_"):
            caption = GAP_CAPTION.format(attribute=name.removeprefix("gaps_"))
        else:
            caption = FIGURE_CAPTIONS.get(name, name)
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="figure-{_esc(name)}"><img src="{uri}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def html(model: str, data: Mapping[str, Any], *, figures: Mapping[str, bytes] | None = None) -> str:
    """The HTML report of one model from its report dict; ``figures`` maps a name to PNG bytes.

    ``figures=None`` writes the page without a figures section (see :func:`write_html`, which
    renders the standard figures).
    """
    checks = list(data.get("checks", []))
    counts = {o: sum(c["outcome"] == o for c in checks) for o in ("failed", "skipped", "passed")}
    pct = round(float(data["confidence"]) * 100)
    meta = [
        ("dataset", data.get("dataset")),
        ("reference", data.get("reference")),
        ("int8", data.get("quantized")),
        ("gate", data.get("gate")),
    ]
    meta_html = "".join(
        f"<li>{_esc(k)}: <code>{_esc(v)}</code></li>" for k, v in meta if v is not None
    )
    meta_html += (
        f"<li>n = {_esc(data['n'])} examples, {_esc(data['bootstrap'])} paired bootstrap "
        f"replicates, {pct} % percentile intervals, seed {_esc(data['seed'])}</li>"
    )
    notes = data.get("notes") or {}
    notes_html = (
        "<ul>"
        + "".join(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in sorted(notes.items()))
        + "</ul>"
        if notes
        else "<p>None.</p>"
    )
    if figures is None:
        figures_html = ""
    elif figures:
        figures_html = '<h2 id="figures">Figures</h2>\n' + _figures(figures)
    else:
        figures_html = f'<h2 id="figures">Figures</h2>\n<p>{_esc(NO_FIGURES)}</p>'
    sections = ["summary", "checks", "per-class", "gaps", "notes"]
    if figures is not None:
        sections.insert(4, "figures")
    nav = "".join(f'<a href="#{s}">{s}</a>' for s in sections)
    title = f"qbias-check: {model}"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_esc(title)}</title>
<style>{CSS}</style>
</head>
<body>
<h1>{_esc(title)}</h1>
<p class="counts">{counts["failed"]} failed, {counts["skipped"]} skipped, \
{counts["passed"]} passed</p>
<ul class="meta">{meta_html}</ul>
<nav>{nav}</nav>
<h2 id="summary">Summary</h2>
{_summary(data)}
<h2 id="checks">Checks (failed and skipped first)</h2>
{_checks(checks)}
<h2 id="per-class">Per class</h2>
{_per_class(data["per_class"])}
<h2 id="gaps">Gaps by protected attribute</h2>
{_gaps(data.get("gaps", []))}
{figures_html}
<h2 id="notes">Notes</h2>
{notes_html}
</body>
</html>
"""


def write_html(directory: Path, model: str, data: Mapping[str, Any]) -> Path:
    """Render the standard figures and write ``<model>.html`` into ``directory`` atomically.

    Without matplotlib the page is still written, with a line that says how to get figures.
    """
    try:
        from qbias_check.plots import standard_figures

        figures: dict[str, bytes] = standard_figures({"model": model, **data})
    except MissingExtraError:
        figures = {}
    path = Path(directory) / f"{model}.html"
    write_text(path, html(model, data, figures=figures))
    return path
