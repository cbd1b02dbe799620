"""The report's other figures: per-layer profile, span timeline, system metrics, power, comparisons.

Like :mod:`.plots`, figures are ``matplotlib.figure.Figure`` objects (no
pyplot, no display) saved as PNG and SVG atomically; :func:`save_figure` also
returns the SVG text, which the HTML report inlines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..metrics.spans import Span
from .export import atomic_path
from .plots import FORMATS, HEAD_COLOR, TRANSFER_COLOR

__all__ = [
    "KIND_COLORS",
    "ComparedRun",
    "SavedFigure",
    "plot_comparison",
    "plot_layer_profile",
    "plot_series_panels",
    "plot_timeline",
    "save_figure",
]

KIND_COLORS = {
    "compute": HEAD_COLOR,
    "serialize": "#8172b3",
    "compress": "#937860",
    "send": "#ff9f9b",
    "transfer": TRANSFER_COLOR,
    "receive": "#da8bc3",
    "decompress": "#8c8c8c",
    "deserialize": "#ccb974",
    "queue": "#c44e52",
    "handle": "#bfbfbf",
    "inference": "#64b5cd",
}
RUN_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


@dataclass(frozen=True)
class SavedFigure:
    """A figure written as PNG and SVG; ``svg`` is the SVG text."""

    paths: tuple[Path, ...]
    svg: str


def save_figure(fig: Figure, stem: str | Path) -> SavedFigure:
    """Write ``fig`` as ``<stem>.png`` and ``<stem>.svg``; return both paths and the SVG text."""
    stem = Path(stem)
    written = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as temp:
            # No date in the metadata: the same run gives the same file.
            metadata = {"Date": None} if fmt == "svg" else {}
            fig.savefig(temp, format=fmt, dpi=150, metadata=metadata)
        written.append(path)
    svg = stem.with_name(f"{stem.name}.svg").read_text(encoding="utf-8")
    return SavedFigure(tuple(written), svg)


def _new(width: float, height: float, rows: int = 1) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)
    return fig, [ax for (ax,) in axes]


def _legend_outside(ax: Axes) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


# -- per-layer profile -----------------------------------------------------------


def plot_layer_profile(
    names: Sequence[str],
    times_ms: Mapping[str, Sequence[float | None]],
    output_bytes: Sequence[int | None] | None,
    stem: str | Path,
    title: str,
    *,
    spread: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
) -> SavedFigure:
    """Neurosurgeon's figure: compute time per layer (per participant) over output size per layer.

    ``spread`` gives each bar's (low, high), drawn as an error bar (the IQR).
    """
    panels = int(bool(times_ms)) + int(output_bytes is not None)
    fig, axes = _new(max(6.0, 0.4 * len(names) + 2.5), 2.8 * panels + 1.0, rows=panels)
    x = np.arange(len(names))
    if times_ms:
        ax = axes[0]
        width = 0.8 / len(times_ms)
        for i, (who, values) in enumerate(times_ms.items()):
            heights = [np.nan if v is None else v for v in values]
            color = RUN_COLORS[i % len(RUN_COLORS)]
            ax.bar(x - 0.4 + width * (i + 0.5), heights, width=width, label=who, color=color)
            bounds = (spread or {}).get(who)
            if bounds:
                low = [np.nan if b is None or h != h else h - b[0] for b, h in zip(bounds, heights)]
                high = [np.nan if b is None or h != h else b[1] - h for b, h in zip(bounds, heights)]
                ax.errorbar(
                    x - 0.4 + width * (i + 0.5), heights, yerr=[low, high], fmt="none", ecolor="black", lw=0.6
                )
        ax.set_ylabel("compute (ms, median)")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        _legend_outside(ax)
    if output_bytes is not None:
        ax = axes[-1]
        ax.bar(x, [np.nan if b is None else b / 1024 for b in output_bytes], color=TRANSFER_COLOR, width=0.7)
        ax.set_ylabel("output size (KiB)")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    axes[0].set_title(title)
    axes[-1].set_xticks(x, list(names), rotation=60, ha="right", fontsize=8)
    axes[-1].set_xlabel("layer")
    return save_figure(fig, stem)


def _error_bars(
    ax: Axes, x: np.ndarray, heights: Sequence[float], bounds: Sequence[tuple[float, float] | None] | None
) -> None:
    if not bounds:
        return
    low = [np.nan if b is None or h != h else h - b[0] for b, h in zip(bounds, heights)]
    high = [np.nan if b is None or h != h else b[1] - h for b, h in zip(bounds, heights)]
    ax.errorbar(x, heights, yerr=[low, high], fmt="none", ecolor="black", lw=0.6)


# -- timeline --------------------------------------------------------------------

_WORK = ("compute", "serialize", "compress", "decompress", "deserialize", "receive", "queue")


def _lanes(spans: Sequence[Span]) -> list[tuple[str, list[Span]]]:
    """Gantt rows: per participant its work, its sends and its envelopes; transfers per link."""
    order = sorted(
        {s.participant for s in spans}, key=lambda p: (min(s.stage for s in spans if s.participant == p), p)
    )
    lanes: list[tuple[str, list[Span]]] = []
    for who in order:
        mine = [s for s in spans if s.participant == who]
        groups = [
            (who, [s for s in mine if s.kind in _WORK]),
            (f"{who} · send", [s for s in mine if s.kind == "send"]),
            (f"{who} · handle/inference", [s for s in mine if s.kind in ("handle", "inference")]),
        ]
        lanes.extend((name, group) for name, group in groups if group)
    links: dict[str, list[Span]] = {}
    for s in spans:
        if s.kind == "transfer":
            links.setdefault(
                f"transfer {s.attrs.get('from', '?')}→{s.attrs.get('to', s.participant)}", []
            ).append(s)
    lanes.extend(sorted(links.items()))
    return lanes


def plot_timeline(spans: Sequence[Span], stem: str | Path, title: str) -> SavedFigure:
    """Gantt chart of one inference's spans across participants, in ms from its first span."""
    lanes = _lanes(spans)
    t0 = min(s.start_ns for s in spans)
    fig, (ax,) = _new(10.0, 1.2 + 0.45 * len(lanes))
    kinds_seen: dict[str, None] = {}
    for row, (_, group) in enumerate(lanes):
        for s in group:
            start, width = (s.start_ns - t0) / 1e6, (s.end_ns - s.start_ns) / 1e6
            color = KIND_COLORS.get(s.kind, "#7f7f7f")
            ax.broken_barh(
                [(start, width)], (row - 0.35, 0.7), facecolors=color, edgecolors="black", linewidth=0.3
            )
            kinds_seen[s.kind] = None
    ax.set_yticks(range(len(lanes)), [name for name, _ in lanes], fontsize=8)
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_xlabel("time since the inference's first span (ms)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    handles = [Patch(facecolor=KIND_COLORS.get(k, "#7f7f7f"), edgecolor="black", label=k) for k in kinds_seen]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return save_figure(fig, stem)


# -- metrics over time -------------------------------------------------------------

Series = Mapping[str, tuple[Sequence[float], Sequence[float]]]


def plot_series_panels(
    panels: Mapping[str, Series], stem: str | Path, title: str, xlabel: str
) -> SavedFigure:
    """One panel per quantity (its y label is the key), one line per series in it."""
    fig, axes = _new(10.0, 1.0 + 2.0 * len(panels), rows=len(panels))
    for ax, (ylabel, series) in zip(axes, panels.items()):
        for i, (name, (xs, ys)) in enumerate(series.items()):
            marker = "." if len(xs) <= 200 else None  # thousands of markers would bloat the SVG
            ax.plot(xs, ys, label=name, color=RUN_COLORS[i % len(RUN_COLORS)], lw=1.2, marker=marker, ms=2)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        _legend_outside(ax)
    axes[0].set_title(title)
    axes[-1].set_xlabel(xlabel)
    return save_figure(fig, stem)


# -- comparison --------------------------------------------------------------------


@dataclass(frozen=True)
class ComparedRun:
    """One run's median total (with IQR) per split, for the overlaid chart."""

    label: str
    median: Sequence[float | None]
    p25: Sequence[float | None]
    p75: Sequence[float | None]


def plot_comparison(
    ticks: Sequence[str], runs: Sequence[ComparedRun], stem: str | Path, title: str
) -> SavedFigure:
    """Every run's median total per split overlaid (IQR error bars), and its difference to the first run."""
    fig, (top, bottom) = _new(max(7.0, 0.45 * len(ticks) + 3.0), 7.0, rows=2)
    x = np.arange(len(ticks))
    first = np.array([np.nan if v is None else v for v in runs[0].median], dtype=float)
    for i, run in enumerate(runs):
        color = RUN_COLORS[i % len(RUN_COLORS)]
        med = np.array([np.nan if v is None else v for v in run.median], dtype=float)
        low = np.array([np.nan if v is None else v for v in run.p25], dtype=float)
        high = np.array([np.nan if v is None else v for v in run.p75], dtype=float)
        top.errorbar(
            x, med, yerr=[med - low, high - med], label=run.label, color=color, marker="o", ms=3, capsize=2
        )
        if i:
            with np.errstate(invalid="ignore", divide="ignore"):
                bottom.plot(x, 100 * (med - first) / first, label=run.label, color=color, marker="o", ms=3)
    bottom.axhline(0, color="black", lw=0.8)
    top.set_ylabel("total latency (ms, median)")
    bottom.set_ylabel(f"difference to {runs[0].label} (%)", fontsize=8)
    top.set_title(title)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        _legend_outside(ax)
    bottom.set_xticks(x, list(ticks), rotation=60, ha="right", fontsize=8)
    bottom.set_xlabel("split point (last layer on the first device)")
    return save_figure(fig, stem)
