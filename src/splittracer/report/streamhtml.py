"""The HTML report's section on streams: throughput against the bound, tail latency, queue waits,
and the charts: latency CDF, throughput and latency over time, the latency-throughput trade-off
with its Pareto front and, open loop, achieved against offered load."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .htmlpage import Section, figure, note, table
from .streams import TRADEOFF_QUANTILE, StreamRow, pareto_keys, tradeoff_rows

__all__ = ["streams_section"]


def streams_section(streams: Sequence[StreamRow], run_id: str, stem: Path, figures: list[Path]) -> Section:
    """The "Streams" section of a run with ``Stream`` tasks; its figures are ``<stem>-<name>``."""
    from .stream_plots import (
        plot_latency_cdf,
        plot_over_time,
        plot_throughput_vs_offered,
        plot_tradeoff,
        stream_label,
    )

    def chart(paths: list[Path], name: str, caption: str) -> str:
        return figure(paths, paths[-1].read_text(encoding="utf-8"), name, caption, figures)

    q = TRADEOFF_QUANTILE
    charts = chart(
        plot_latency_cdf(streams, f"{stem}-latency-cdf", title=f"Frame latency — {run_id}"),
        "latency-cdf",
        "Latency CDF",
    )
    charts += chart(
        plot_over_time(streams, f"{stem}-over-time", title=f"Throughput and latency over time — {run_id}"),
        "over-time",
        "Completed frames/s per window, and each frame's latency at its completion",
    )
    charts += chart(
        plot_tradeoff(streams, f"{stem}-tradeoff", title=f"Latency-throughput trade-off — {run_id}"),
        "tradeoff",
        f"Each stream one point: achieved frames/s against {q} latency; the Pareto front in red",
    )
    if any(r.offered_fps > 0 for r in streams):
        paths = plot_throughput_vs_offered(streams, f"{stem}-throughput", title="Achieved against offered")
        charts += chart(paths, "throughput", "Achieved against offered frames/s, with the pipeline bound")
    front = pareto_keys(streams)
    points = {(r.client, r.stream) for r in tradeoff_rows(streams)}
    columns = ["stream", "frames", "achieved fps", "bound fps", "of bound", "p50 ms", "p95 ms", "p99 ms"]
    columns += ["max ms", "queue ms per stage", "other ms", "late", "dropped", "Pareto"]
    rows = [
        [stream_label(r), r.frames, r.achieved_fps, r.bound_fps, f"{r.ratio:.0%}"]
        + [r.latency_ms[k] for k in ("p50", "p95", "p99", "max")]
        + ["  ".join(f"{s}: {ms:.2f}" for s, ms in r.queue_ms.items()), r.other_ms]
        + [r.deadline_misses, r.dropped]
        + [_front_cell((r.client, r.stream), points, front)]
        for r in streams
    ]
    text = note("Achieved: completions per second after the first; bound: 1 / the slowest stage's median.")
    text += note(
        "Other: the median of what a frame's queue, compute and transfer spans leave of its latency."
    )
    text += note(
        f"Pareto: on the front of achieved frames/s against {q} latency (no other stream had more "
        "frames/s and less latency); a stream with several clients is one point, its clients together."
    )
    return Section("streams", "Streams", text + charts + table(columns, rows))


def _front_cell(key: tuple[str, int], points: set[tuple[str, int]], front: set[tuple[str, int]]) -> str:
    if key not in points:
        return "—"
    return "front" if key in front else "dominated"
