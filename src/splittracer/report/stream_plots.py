"""Charts of stream runs: latency CDF per stream, achieved throughput against offered load.

Built as ``matplotlib.figure.Figure`` objects and saved as PNG and SVG, as
:mod:`splittracer.report.plots` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figures import save_figure
from .streams import StreamRow


def stream_label(row: StreamRow) -> str:
    """A stream in a legend: its client, split and load."""
    load = f"{row.offered_fps:g}/s {row.loop}" if row.offered_fps else f"{row.inflight} in flight"
    who = "all clients" if row.client == "*" else row.client
    return f"{who}, split {row.split}, {load}"


def plot_latency_cdf(rows: Sequence[StreamRow], stem: str | Path, *, title: str) -> list[Path]:
    """The share of frames (y) done within a latency (x), one line per stream."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for row in rows:
        values = np.array(row.samples_ms)
        ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", label=stream_label(row))
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("frames done within it")
    ax.set_ylim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return list(save_figure(fig, stem).paths)


def plot_throughput_vs_offered(rows: Sequence[StreamRow], stem: str | Path, *, title: str) -> list[Path]:
    """Achieved against offered frames/s of the open-loop streams, with y = x and each stream's bound."""
    open_loop = sorted((r for r in rows if r.offered_fps > 0), key=lambda r: r.offered_fps)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    offered = [r.offered_fps for r in open_loop]
    ax.plot(offered, [r.achieved_fps for r in open_loop], "o-", label="achieved")
    ax.plot(offered, [r.bound_fps for r in open_loop], "--", color="#999999", label="pipeline bound")
    top = max([*offered, *(r.achieved_fps for r in open_loop)], default=1.0)
    ax.plot([0, top], [0, top], ":", color="#cccccc", label="achieved = offered")
    ax.set_xlabel("offered (frames/s)")
    ax.set_ylabel("achieved (frames/s)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return list(save_figure(fig, stem).paths)
