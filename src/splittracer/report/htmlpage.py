"""The HTML report's building blocks: a section, an inlined chart, a note, a table, the page."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..metrics.store import RunInfo
from .runs import format_duration, format_timestamp, run_duration_s


@dataclass(frozen=True)
class Section:
    """One section of the page: its anchor, its heading and its HTML."""

    id: str
    title: str
    body: str


def figure(saved_paths: Sequence[Path], svg: str, name: str, caption: str, figures: list[Path]) -> str:
    """A chart inlined as SVG, its caption linking the saved files (added to ``figures``)."""
    figures.extend(saved_paths)
    links = " · ".join(f'<a href="{html.escape(p.name)}">{p.suffix[1:].upper()}</a>' for p in saved_paths)
    return (
        f'<figure class="chart" data-figure="{name}">{inline_svg(svg, caption)}'
        f"<figcaption>{html.escape(caption)} ({links})</figcaption></figure>"
    )


def inline_svg(svg: str, label: str) -> str:
    """An SVG file's markup as HTML holds it inline, labelled for screen readers."""
    # The XML prolog, doctype, RDF metadata and namespace declarations mean
    # nothing inside HTML, whose parser puts <svg> and xlink:href in their
    # namespaces itself; without them the page holds no URL at all.
    svg = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>", "", svg)
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    svg = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", svg, count=2)
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1).strip()


def note(text: str) -> str:
    """A highlighted paragraph."""
    return f'<p class="note">{html.escape(text)}</p>'


def table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """An HTML table of ``rows`` under ``columns``."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cell(value: Any) -> str:
    """One value as a table cell: numbers grouped, missing ones as a dash."""
    if isinstance(value, float):
        return "—" if value != value else f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "—" if value is None else html.escape(str(value))


# -- page ----------------------------------------------------------------------------

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; }
body { color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
nav a { margin-right: 1em; } .status-failed { color: #b00; } .status-succeeded { color: #080; }
.note { background: #f6f6f6; border-left: 4px solid #bbb; padding: 0.4em 0.8em; }
figure.chart { margin: 1em 0; } figure.chart svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th { background: #f0f0f0; } td:first-child, th:first-child { text-align: left; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
"""


def page(info: RunInfo, sections: Sequence[Section]) -> str:
    """The whole self-contained page of one run."""
    title = f"{info.experiment} — {info.id}"
    nav = "".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{s.id}"><h2>{html.escape(s.title)}</h2>{s.body}</section>' for s in sections
    )
    status = f'<span class="status-{info.status}">{html.escape(info.status)}</span>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>SplitTracer report: {html.escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>{html.escape(title)}</h1><p>Run {status}, started "
        f"{html.escape(format_timestamp(info.started_at))} UTC, ran "
        f"{html.escape(format_duration(run_duration_s(info)))}.</p></header>"
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )
