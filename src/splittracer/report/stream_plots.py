"""Charts of stream runs: latency CDF per stream, achieved throughput against offered load,
throughput and latency over time, and the latency-throughput trade-off with its Pareto front.

Built as ``matplotlib.figure.Figure`` objects and saved as PNG and SVG, as
:mod:`splittracer.report.plots` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figures import save_figure
from .stream_series import windowed
from .streams import TRADEOFF_QUANTILE, StreamRow, pareto_keys, tradeoff_rows


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


def plot_over_time(rows: Sequence[StreamRow], stem: str | Path, *, title: str) -> list[Path]:
    """Two panels over the stream's time: completed frames/s per window (a step per stream), and
    every frame's latency at its completion (a dot per frame)."""
    fig = Figure(figsize=(8, 6), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    for row in rows:
        windows = windowed(row.completions)
        label = stream_label(row)
        if windows.window_s > 0:
            starts = [end - windows.window_s for end in windows.end_s]
            line = top.stairs(
                windows.fps, [*starts, windows.end_s[-1]], label=label, linewidth=1.5, baseline=None
            )
            color = line.get_edgecolor()
        else:
            color = None
        times = [t for t, _ in row.completions]
        bottom.plot(times, [ms for _, ms in row.completions], ".", markersize=4, color=color, label=label)
    top.set_ylabel("completed frames/s")
    top.set_title(title)
    top.grid(alpha=0.3)
    top.legend(fontsize="small")
    bottom.set_xlabel("seconds since the stream's first frame began")
    bottom.set_ylabel("frame latency (ms)")
    bottom.grid(alpha=0.3)
    return list(save_figure(fig, stem).paths)


def plot_tradeoff(rows: Sequence[StreamRow], stem: str | Path, *, title: str) -> list[Path]:
    """Each stream one point, achieved frames/s (x) against p95 latency (y); the Pareto front
    (more frames/s, less latency) drawn as a line through its points, each point labelled."""
    points = tradeoff_rows(rows)
    front = pareto_keys(points)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    q = TRADEOFF_QUANTILE
    on = sorted((r for r in points if (r.client, r.stream) in front), key=lambda r: r.achieved_fps)
    off = [r for r in points if (r.client, r.stream) not in front]
    ax.plot(
        [r.achieved_fps for r in on],
        [r.latency_ms[q] for r in on],
        "o-",
        color="#d62728",
        label="Pareto front",
    )
    ax.plot(
        [r.achieved_fps for r in off], [r.latency_ms[q] for r in off], "o", color="#999999", label="dominated"
    )
    splits = [r.split for r in points]
    for r in points:
        load = f", {r.offered_fps:g}/s" if r.offered_fps else f", {r.inflight} in flight"
        text = f"split {r.split}" + (load if splits.count(r.split) > 1 else "")
        ax.annotate(
            text, (r.achieved_fps, r.latency_ms[q]), textcoords="offset points", xytext=(5, 5), fontsize=8
        )
    ax.margins(0.15)  # room for the labels
    ax.set_xlabel("achieved (frames/s)")
    ax.set_ylabel(f"{q} latency (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return list(save_figure(fig, stem).paths)
