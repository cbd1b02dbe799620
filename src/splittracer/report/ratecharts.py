"""Rate-accuracy and latency-accuracy charts: what each codec's bytes buy, split by split.

One line per codec, one point per split point. Quality is top-1 accuracy
when the inputs had labels, else top-1 agreement with the uncompressed model
(the chart says which). The latency chart marks the Pareto front: the
(split, codec) pairs no other pair beats on both latency and quality.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from ..errors import SplitTracerError
from .accuracy import AccuracyRow, quality
from .figures import RUN_COLORS, SavedFigure, save_figure

__all__ = ["pareto_front", "plot_latency_accuracy", "plot_rate_accuracy", "quality"]


def _value(row: AccuracyRow) -> float:
    return quality(row)[0] or 0.0


def pareto_front(rows: Sequence[AccuracyRow]) -> list[AccuracyRow]:
    """The rows no other row beats on latency and quality at once, fastest first."""
    scored = [(r.total_ms, -(quality(r)[0] or 0.0), r) for r in rows if quality(r)[0] is not None]
    front, best = [], float("inf")
    for _, loss, row in sorted(scored, key=lambda item: (item[0], item[1])):
        if loss < best:
            front.append(row)
            best = loss
    return front


def plot_rate_accuracy(rows: Sequence[AccuracyRow], path_stem: str | Path, title: str) -> SavedFigure:
    """Bytes per inference on the wire (log scale) against quality, one line per codec."""
    return _plot(rows, path_stem, title, x=lambda r: r.bytes_wire, xlabel="bytes on the wire per inference")


def plot_latency_accuracy(rows: Sequence[AccuracyRow], path_stem: str | Path, title: str) -> SavedFigure:
    """Median latency against quality, one line per codec, the Pareto front marked."""
    fig = _figure(rows, title, x=lambda r: r.total_ms, xlabel="median latency (ms)", log=False)
    ax = fig.axes[0]
    front = pareto_front(rows)
    ax.plot(
        [r.total_ms for r in front],
        [_value(r) for r in front],
        color="black",
        lw=1,
        ls="--",
        marker="o",
        mfc="none",
        ms=10,
        label="Pareto front",
    )
    ax.legend(fontsize=8)
    return save_figure(fig, Path(path_stem))


def _plot(
    rows: Sequence[AccuracyRow],
    path_stem: str | Path,
    title: str,
    *,
    x: Callable[[AccuracyRow], float],
    xlabel: str,
) -> SavedFigure:
    return save_figure(_figure(rows, title, x=x, xlabel=xlabel, log=True), Path(path_stem))


def _figure(
    rows: Sequence[AccuracyRow], title: str, *, x: Callable[[AccuracyRow], float], xlabel: str, log: bool
) -> Figure:
    measured = [r for r in rows if quality(r)[0] is not None]
    if not measured:
        raise SplitTracerError(
            "this run recorded no classification predictions: there is no accuracy to chart"
        )
    lines: defaultdict[str, list[AccuracyRow]] = defaultdict(list)
    for row in measured:
        lines[row.codec].append(row)
    fig = Figure(figsize=(7.0, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, (codec, points) in enumerate(lines.items()):
        points.sort(key=x)  # the rate curve runs along the bytes; latency points stand alone
        style = "-" if log else "none"
        ax.plot([x(r) for r in points], [_value(r) for r in points], marker="o", ms=4, ls=style,
                color=RUN_COLORS[i % len(RUN_COLORS)], label=codec)  # fmt: skip
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(quality(measured[0])[1])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="codec (one point per split)", title_fontsize=8)
    return fig
