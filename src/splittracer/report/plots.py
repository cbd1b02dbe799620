"""Figures for papers: per-split latency stacks and bytes per split.

Figures are built as ``matplotlib.figure.Figure`` objects, never through
pyplot, so nothing leaks into global state and no display is needed; each
is saved as PNG and SVG, atomically (temp file + rename).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..errors import SplitTracerError
from .export import atomic_path
from .summary import SplitRow

FORMATS = ("png", "svg")
HEAD_COLOR, TRANSFER_COLOR, TAIL_COLOR, OTHER_COLOR = "#4c72b0", "#dd8452", "#55a868", "#c7c7c7"


def split_labels(splits: Sequence[int], labels: Sequence[str] | None) -> list[str]:
    """Tick labels: split 0 is 'input', split k is the name of layer k when known.

    ``labels`` are layer names in order (``labels[k - 1]`` names layer k), as
    ``LayerGraph.names`` gives them.
    """
    names = list(labels or ())
    return ["input" if k == 0 else names[k - 1] if k <= len(names) else str(k) for k in splits]


def _row_ticks(rows: Sequence[SplitRow], labels: Sequence[str] | None) -> list[str]:
    """One tick per row: its split's label, every cut's along a chain ('conv1 → fc'), or a
    placement's layers on the first device ('1-3 (stem.0..block1.b1), 7-9 (...)')."""
    return [
        r.placement_layers or r.placement
        if r.placement
        else " → ".join(split_labels(r.cuts or (r.split,), labels))
        for r in rows
    ]


def plot_stacked_splits(
    rows: Sequence[SplitRow],
    path_stem: str | Path,
    title: str = "Latency per split point",
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Stacked median head / transfer / tail per split, total IQR as error bars.

    Like Neurosurgeon's figure: one bar per split point, phone compute at the
    bottom, then transfer, then cloud compute. Unaccounted overhead is stacked
    on top in grey when there is any, so a bar's top is the median total.
    """
    _require(rows)
    fig = Figure(figsize=(max(6.0, 0.5 * len(rows) + 2.0), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(rows))
    bottom = _stack(ax, x, rows)
    totals = np.array([r.total.median for r in rows])
    below = [r.total.median - r.total.p25 for r in rows]
    above = [r.total.p75 - r.total.median for r in rows]
    # Error bars sit on the median total, not on the stack top, which differs
    # only when medians of the parts overshoot the median of the whole.
    ax.errorbar(x, totals, yerr=[below, above], fmt="none", ecolor="black", capsize=3, lw=1)
    _mark_best(ax, x, np.maximum(bottom, totals), rows)
    _finish(ax, x, _row_ticks(rows, labels), title, "latency (ms)")
    return _save(fig, Path(path_stem))


def plot_stacked_by_uplink(
    sweeps: Sequence[tuple[str, Sequence[SplitRow]]],
    path_stem: str | Path,
    title: str = "Latency per split point, per uplink",
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """One :func:`plot_stacked_splits` panel per ``(name, rows)``, side by side, best split marked on each.

    Each panel keeps its own latency axis: a 3G sweep's input transfer is
    seconds, a Wi-Fi sweep's whole range a few hundred milliseconds.
    """
    for _, rows in sweeps:
        _require(rows)
    width = max(6.0, 0.3 * max(len(rows) for _, rows in sweeps) + 2.0)
    fig = Figure(figsize=(width * len(sweeps), 4.8), layout="constrained")
    axes = fig.subplots(1, len(sweeps), squeeze=False)[0]
    for i, (ax, (name, rows)) in enumerate(zip(axes, sweeps)):
        x = np.arange(len(rows))
        bottom = _stack(ax, x, rows)
        _mark_best(ax, x, np.maximum(bottom, [r.total.median for r in rows]), rows)
        _finish(ax, x, _row_ticks(rows, labels), name, "latency (ms)")
        if i < len(sweeps) - 1 and ax.get_legend() is not None:
            ax.get_legend().remove()  # one legend, beside the last panel
    fig.suptitle(title)
    return _save(fig, Path(path_stem))


def _stack(ax: Axes, x: np.ndarray, rows: Sequence[SplitRow]) -> np.ndarray:
    parts = [
        ("head (first device compute)", [r.head.median for r in rows], HEAD_COLOR),
        ("transfer", [r.transfer.median for r in rows], TRANSFER_COLOR),
        ("tail (remaining compute)", [r.tail.median for r in rows], TAIL_COLOR),
    ]
    other = [max(r.other_ms, 0.0) for r in rows]
    if any(other):
        parts.append(("other (overhead)", other, OTHER_COLOR))
    bottom = np.zeros(len(rows))
    for label, heights, color in parts:
        ax.bar(x, heights, bottom=bottom, label=label, color=color, width=0.7)
        bottom = bottom + np.asarray(heights)
    return bottom


def _mark_best(ax: Axes, x: np.ndarray, tops: np.ndarray, rows: Sequence[SplitRow]) -> None:
    best = int(np.argmin([r.total.median for r in rows]))
    ax.annotate(
        "best",
        (x[best], tops[best]),
        xytext=(0, 4),
        textcoords="offset points",
        ha="center",
        va="bottom",
        fontsize=8,
        fontweight="bold",
    )


def plot_bytes_per_split(
    data: Sequence[SplitRow] | tuple[Sequence[str], Sequence[int]],
    path_stem: str | Path,
    *,
    title: str = "Bytes crossing each split point",
    labels: Sequence[str] | None = None,
    log_scale: bool = False,
) -> list[Path]:
    """Bar chart of the bytes sent across each split.

    ``data`` is summary rows (raw bytes of their transfers; ``labels`` are
    layer names as in :func:`plot_stacked_splits`) or a ``(tick labels,
    bytes)`` pair, e.g. sizes computed from a model without running it.
    """
    ticks, sizes = _bytes_series(data, labels)
    if not sizes:
        raise SplitTracerError("nothing to plot: no split points given")
    fig = Figure(figsize=(max(6.0, 0.5 * len(sizes) + 2.0), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(sizes))
    ax.bar(x, sizes, color=TRANSFER_COLOR, width=0.7)
    if log_scale:
        ax.set_yscale("log")
    _finish(ax, x, ticks, title, "bytes")
    return _save(fig, Path(path_stem))


def _bytes_series(
    data: Sequence[SplitRow] | tuple[Sequence[str], Sequence[int]],
    labels: Sequence[str] | None,
) -> tuple[list[str], list[int]]:
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[0], SplitRow):
        ticks, sizes = list(data[0]), [int(b) for b in data[1]]
        if len(ticks) != len(sizes):
            raise SplitTracerError(f"{len(ticks)} labels for {len(sizes)} byte counts")
        return ticks, sizes
    rows = [r for r in data if isinstance(r, SplitRow)]
    return _row_ticks(rows, labels), [r.bytes_raw for r in rows]


def _finish(ax: Axes, x: np.ndarray, ticks: list[str], title: str, ylabel: str) -> None:
    ax.set_xticks(x, ticks, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("split point (last layer on the first device)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if ax.get_legend_handles_labels()[0]:
        # Outside the axes: inside, it would hide the bars it explains.
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def _require(rows: Sequence[SplitRow]) -> None:
    if not rows:
        raise SplitTracerError(
            "nothing to plot: the run has no completed, non-warm-up inferences",
            hint="Check that the run succeeded and recorded 'inference' spans.",
        )


def _save(fig: Figure, stem: Path) -> list[Path]:
    written = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as temp:
            # The format is given: the temp name's suffix would not tell it.
            fig.savefig(temp, format=fmt, dpi=150)
        written.append(path)
    return written
