"""Stream results: throughput, tail latency, queue waits and the pipeline bound of ``Stream`` runs.

A frame of a stream is an inference whose ``inference`` span carries
``attrs['stream']`` (see :class:`splittracer.builtin.Stream`). Warm-up and
failed frames are no samples. Per client and stream:

* achieved throughput: completed frames per second between the first and
  the last completion, ``(n - 1) / (last end - first end)``, so the time to
  fill the pipeline does not count against it;
* offered: the open-loop rate, or 0 for a closed loop (``inflight`` frames);
* latency percentiles of the frames' end-to-end spans, deadline misses
  (frames longer than their ``deadline_ms``), drops (``stream_dropped``);
* queue wait per stage: each frame's ``queue`` spans summed per stage;
* other: what a frame's queue, compute and transfer spans leave of its
  latency (a handler's dispatch, the reply's hand-over to the sender
  thread; a fraction of a millisecond each, more when the CPU is
  contended), the median over frames;
* the pipeline bound ``1 / max(stage)`` over the medians of each stage's
  compute per frame and, for a link with an emulated rate, its transfer
  time ``8 * bytes / rate`` (a link without one is no stage of the bound).
  A participant that computes several frames at once (``workers``, a
  batch) has its median scaled by the share of its compute time that was
  its own (the union of its compute intervals over their sum).

The aggregate row of a stream sums its clients' frames; its bound is the
sum of theirs, capped by each participant every client shares: the
completions after the first over the time it computed between the first
completion and the last (the union of its compute intervals, clipped to
that window), so achieved over the bound is how busy it was in the window
and never exceeds 1 when the shared server limits the aggregate.
That is a mean, not a median: a shared server's compute times spread (a
frame alone, a frame beside another worker's), and a median of them times
the share of overlap overstated its time per frame.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SplitTracerError
from ..metrics.record import RunRecord
from ..metrics.spans import Metric, Span
from ..metrics.store import ResultsStore
from .export import atomic_path
from .stream_series import pareto_front, windowed, windows_to_dict
from .summary import percentile

__all__ = [
    "TRADEOFF_QUANTILE",
    "StreamRow",
    "export_run_stream_windows",
    "export_run_streams",
    "pareto_keys",
    "stream_rows_to_dicts",
    "streams_path",
    "summarize_streams",
    "tradeoff_rows",
    "uplinks_of",
    "windows_path",
]


@dataclass(frozen=True)
class StreamRow:
    """One stream of one client (or, with ``client == '*'``, of all clients together)."""

    client: str
    stream: int
    split: int
    loop: str
    offered_fps: float
    inflight: int
    frames: int
    achieved_fps: float
    bound_fps: float
    latency_ms: dict[str, float]  # p50, p95, p99, max
    queue_ms: dict[int, float]  # stage -> median wait per frame
    stage_ms: dict[str, float]  # each stage of the bound: compute at stage s, or link sender->receiver
    deadline_misses: int = 0
    dropped: int = 0
    utilisation: dict[int, float] = field(default_factory=dict)  # stage -> busy share of the window
    samples_ms: tuple[float, ...] = ()  # every frame's latency, for the CDF
    # Every frame as (completion, latency ms), by completion; seconds since the stream's first frame began.
    completions: tuple[tuple[float, float], ...] = ()
    other_ms: float = 0.0  # median per frame: latency less its queue, compute and transfer spans

    @property
    def ratio(self) -> float:
        """Achieved over bound throughput (0 when there is no bound)."""
        return self.achieved_fps / self.bound_fps if self.bound_fps > 0 else 0.0


@dataclass
class _Frame:
    span: Span
    compute: defaultdict[tuple[int, str], float] = field(default_factory=lambda: defaultdict(float))
    queue: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    links: dict[tuple[str, str], int] = field(default_factory=dict)  # (sender, receiver) -> bytes on the wire
    intervals: list[tuple[str, int, int]] = field(
        default_factory=list
    )  # (participant, start, end) of compute
    parts_ms: float = 0.0  # its queue, compute and transfer spans together


def summarize_streams(
    spans: Iterable[Span], metrics: Iterable[Metric] = (), uplinks_bps: Mapping[str, float] | None = None
) -> list[StreamRow]:
    """Rows per (client, stream), then one aggregate row per stream with several clients.

    ``uplinks_bps`` is each participant's emulated uplink (the run record's
    ``uplink_bps``), to time its links.
    """
    frames = _frames(list(spans))
    by_stream: defaultdict[tuple[str, int], list[_Frame]] = defaultdict(list)
    for frame in frames.values():
        by_stream[frame.span.participant, int(frame.span.attrs["stream"])].append(frame)
    dropped = _dropped(metrics)
    uplinks = dict(uplinks_bps or {})
    rows = [
        _row(client, stream, group, uplinks, dropped.get((client, stream), 0))
        for (client, stream), group in sorted(by_stream.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    ]
    return rows + _aggregates(rows, by_stream, uplinks, dropped)


def _frames(spans: list[Span]) -> dict[int, _Frame]:
    frames = {
        s.inference: _Frame(s)
        for s in spans
        if s.kind == "inference"
        and "stream" in s.attrs
        and not s.attrs.get("warmup")
        and not s.attrs.get("error")
    }
    for s in spans:
        frame = frames.get(s.inference)
        if frame is None:
            continue
        if s.kind in ("queue", "compute", "transfer"):
            frame.parts_ms += s.duration_ms
        if s.kind == "compute":
            frame.compute[s.stage, s.participant] += s.duration_ms
            if not s.attrs.get("batched"):  # a batch is computed once, by the request that led it
                frame.intervals.append((s.participant, s.start_ns, s.end_ns))
        elif s.kind == "queue":
            frame.queue[s.stage] += s.duration_ms
        elif s.kind == "transfer":
            key = (str(s.attrs.get("from", "?")), str(s.attrs.get("to", s.participant)))
            frame.links[key] = frame.links.get(key, 0) + s.bytes_wire
    return frames


def _dropped(metrics: Iterable[Metric]) -> dict[tuple[str, int], int]:
    found: dict[tuple[str, int], int] = {}
    for m in metrics:
        if m.name == "stream_dropped":
            key = (m.participant, int(m.attrs.get("stream", -1)))
            found[key] = found.get(key, 0) + int(m.value)
    return found


def _row(
    client: str, stream: int, frames: list[_Frame], uplinks: dict[str, float], dropped: int
) -> StreamRow:
    stages = _stage_times(frames, uplinks)
    worst = max(stages.values(), default=0.0)
    first = frames[0].span
    return StreamRow(
        client=client,
        stream=stream,
        split=first.split,
        loop=str(first.attrs.get("loop", "closed")),
        offered_fps=float(first.attrs.get("offered_fps", 0.0)),
        inflight=int(first.attrs.get("inflight", 1)),
        frames=len(frames),
        achieved_fps=_achieved(frames),
        bound_fps=1000 / worst if worst > 0 else 0.0,
        latency_ms=_latency([f.span for f in frames]),
        queue_ms=_queue(frames),
        stage_ms=stages,
        deadline_misses=_misses(frames),
        dropped=dropped,
        utilisation=_utilisation(frames),
        samples_ms=tuple(sorted(f.span.duration_ms for f in frames)),
        completions=_completions(frames),
        other_ms=_median([f.span.duration_ms - f.parts_ms for f in frames]),
    )


def _completions(frames: list[_Frame]) -> tuple[tuple[float, float], ...]:
    origin = min(f.span.start_ns for f in frames)
    done = sorted((f.span.end_ns, f.span.duration_ms) for f in frames)
    return tuple(((end - origin) / 1e9, ms) for end, ms in done)


def _stage_times(frames: list[_Frame], uplinks: dict[str, float]) -> dict[str, float]:
    """Median ms per frame of each stage of the pipeline: compute per participant, rated links."""
    stages: dict[str, float] = {}
    for stage, name in sorted({key for f in frames for key in f.compute}):
        median = _median([f.compute.get((stage, name), 0.0) for f in frames])
        stages[f"{stage}:{name}"] = median * _busy_share(frames, name)
    for sender, receiver in sorted({key for f in frames for key in f.links}):
        rate = uplinks.get(sender, math.inf)
        if math.isfinite(rate) and rate > 0:
            wire = _median([f.links.get((sender, receiver), 0) for f in frames])
            stages[f"{sender}->{receiver}"] = 8000 * wire / rate
    return stages


def _busy_share(frames: list[_Frame], name: str) -> float:
    """How much of ``name``'s compute time is its own: the union of its compute intervals over
    their sum. 1 when it computes one frame at a time; less with ``workers`` or a batch,
    whose frames share its time."""
    intervals = _intervals(frames, name)
    total = sum(end - start for start, end in intervals)
    return _union_ns(intervals) / total if total > 0 else 1.0


def _capacity_fps(frames: list[_Frame], name: str) -> float:
    """Frames per second of ``name``'s busy time, over the window achieved throughput is measured
    in (the first completion to the last): the completions after the first over the time ``name``
    computed in that window (the union of its compute intervals, clipped to it). 0: never busy.

    Achieved over this is how busy ``name`` was in the window, so it never exceeds 1. Busy time
    per frame over the whole stream would count the work before the first completion (a
    shared server starts on several frames at once), and a stream could then beat its bound."""
    window = _window(frames)
    if window is None:
        return 0.0
    first, last, completions = window
    clipped = [(max(a, first), min(b, last)) for a, b in _intervals(frames, name) if b > first and a < last]
    busy_ns = _union_ns(clipped)
    return completions / (busy_ns / 1e9) if busy_ns > 0 else 0.0


def _intervals(frames: list[_Frame], name: str) -> list[tuple[int, int]]:
    return sorted((start, end) for f in frames for who, start, end in f.intervals if who == name)


def _union_ns(intervals: list[tuple[int, int]]) -> int:
    """The time covered by sorted ``intervals``, overlaps counted once."""
    union, reach = 0, None
    for start, end in intervals:
        if reach is None or start > reach:
            union += end - start
            reach = end
        elif end > reach:
            union += end - reach
            reach = end
    return union


def _window(frames: list[_Frame]) -> tuple[int, int, int] | None:
    """Where throughput is measured: the first completion, the last, and the completions after the
    first (None for fewer than two frames). Achieved throughput and a shared server's cap both
    use it, so the cap is what the server's busy time allowed in the same window."""
    ends = sorted(f.span.end_ns for f in frames)
    return (ends[0], ends[-1], len(ends) - 1) if len(ends) >= 2 else None


def _achieved(frames: list[_Frame]) -> float:
    window = _window(frames)
    if window is None or window[1] == window[0]:
        return 0.0
    first, last, completions = window
    return completions / ((last - first) / 1e9)


def _latency(spans: Sequence[Span]) -> dict[str, float]:
    values = [s.duration_ms for s in spans]
    p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
    return {"p50": p50, "p95": p95, "p99": p99, "max": max(values)}


def _queue(frames: list[_Frame]) -> dict[int, float]:
    stages = sorted({s for f in frames for s in f.queue})
    return {s: _median([f.queue.get(s, 0.0) for f in frames]) for s in stages}


def _misses(frames: list[_Frame]) -> int:
    late = 0
    for f in frames:
        deadline = f.span.attrs.get("deadline_ms")
        if isinstance(deadline, int | float) and f.span.duration_ms > deadline:
            late += 1
    return late


def _utilisation(frames: list[_Frame]) -> dict[int, float]:
    """Each stage's compute over the stream's window (first start to last end), summed over participants."""
    start = min(f.span.start_ns for f in frames)
    window_ms = (max(f.span.end_ns for f in frames) - start) / 1e6
    busy: defaultdict[int, float] = defaultdict(float)
    for f in frames:
        for (stage, _), ms in f.compute.items():
            busy[stage] += ms
    return {s: ms / window_ms for s, ms in sorted(busy.items())} if window_ms > 0 else {}


def _aggregates(
    rows: list[StreamRow],
    by_stream: Mapping[tuple[str, int], list[_Frame]],
    uplinks: dict[str, float],
    dropped: dict[tuple[str, int], int],
) -> list[StreamRow]:
    out = []
    for stream in sorted({r.stream for r in rows}):
        members = [r for r in rows if r.stream == stream]
        if len(members) < 2:
            continue
        frames = [f for r in members for f in by_stream[r.client, stream]]
        row = _row("*", stream, frames, uplinks, sum(dropped.get((r.client, stream), 0) for r in members))
        out.append(_with_bound(row, members, frames))
    return out


def _with_bound(row: StreamRow, members: list[StreamRow], frames: list[_Frame]) -> StreamRow:
    """The aggregate bound: the clients' bounds summed, capped by what they all share."""
    # A shared participant's cap is what its busy time allows (a mean, not a median): with several
    # clients its compute times spread (frames alone, frames sharing the CPU with another
    # worker), and only the time it was really busy bounds what it can serve.
    clients = {m.client for m in members}
    shared = {name for f in frames for (_, name) in f.compute if name not in clients}
    caps = [fps for fps in (_capacity_fps(frames, name) for name in sorted(shared)) if fps > 0]
    bound = min([sum(m.bound_fps for m in members), *caps])
    return StreamRow(**{**row.__dict__, "bound_fps": bound})


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if len(values) else 0.0


TRADEOFF_QUANTILE = "p95"  # the latency of the latency-throughput trade-off


def tradeoff_rows(rows: Iterable[StreamRow]) -> list[StreamRow]:
    """The points of the latency-throughput trade-off, one per stream: its clients together
    (``'*'``) when it has several, else its one client."""
    rows = list(rows)
    together = {r.stream for r in rows if r.client == "*"}
    return [r for r in rows if r.client == "*" or r.stream not in together]


def pareto_keys(rows: Iterable[StreamRow]) -> set[tuple[str, int]]:
    """``(client, stream)`` of the trade-off points on the Pareto front: no other stream achieved
    more frames/s at a lower p95 latency (:data:`TRADEOFF_QUANTILE`)."""
    points = tradeoff_rows(rows)
    flags = pareto_front([(r.achieved_fps, r.latency_ms[TRADEOFF_QUANTILE]) for r in points])
    return {(r.client, r.stream) for r, on in zip(points, flags) if on}


def stream_rows_to_dicts(rows: Iterable[StreamRow], *, over_time: bool = True) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts. ``pareto_p95``: on the latency-throughput front (None for a client
    of a stream whose clients together are the point); ``over_time``: throughput and latency per
    window (see :func:`~splittracer.report.stream_series.windowed`), left out with ``over_time=False``."""
    rows = list(rows)
    points = {(r.client, r.stream) for r in tradeoff_rows(rows)}
    front = pareto_keys(rows)
    return [
        {
            **_row_dict(r),
            "pareto_p95": ((r.client, r.stream) in front) if (r.client, r.stream) in points else None,
            **({"over_time": windows_to_dict(windowed(r.completions))} if over_time else {}),
        }
        for r in rows
    ]


def _row_dict(r: StreamRow) -> dict[str, Any]:
    return {
        "client": r.client,
        "stream": r.stream,
        "split": r.split,
        "loop": r.loop,
        "offered_fps": r.offered_fps,
        "inflight": r.inflight,
        "frames": r.frames,
        "achieved_fps": r.achieved_fps,
        "bound_fps": r.bound_fps,
        "ratio": r.ratio,
        "latency_ms": r.latency_ms,
        "queue_ms": {str(k): v for k, v in r.queue_ms.items()},
        "stage_ms": r.stage_ms,
        "utilisation": {str(k): v for k, v in r.utilisation.items()},
        "other_ms": r.other_ms,
        "deadline_misses": r.deadline_misses,
        "dropped": r.dropped,
    }


def uplinks_of(record: RunRecord) -> dict[str, float]:
    """Each participant's emulated uplink in bit/s, from a run's record."""
    return {name: p.uplink_bps for name, p in record.participants.items()}


def streams_path(path: str | Path) -> Path:
    """Where stream results go beside a spans file: ``runs.csv`` -> ``runs-streams.csv``."""
    target = Path(path)
    return target.with_name(f"{target.stem}-streams{target.suffix}")


def export_run_streams(store: ResultsStore, run_id: str, path: str | Path, fmt: str) -> Path | None:
    """Write a run's stream rows (one per client and stream, then the aggregates) as CSV or Parquet,
    one flat column per figure; None (and no file) when the run streamed nothing."""
    import pandas as pd

    rows = _run_rows(store, run_id)
    if not rows:
        return None
    return _write(pd.json_normalize(stream_rows_to_dicts(rows, over_time=False), sep="_"), path, fmt)


def windows_path(path: str | Path) -> Path:
    """Where the streams' windows go beside a spans file: ``runs.csv`` -> ``runs-stream-windows.csv``."""
    target = Path(path)
    return target.with_name(f"{target.stem}-stream-windows{target.suffix}")


def export_run_stream_windows(store: ResultsStore, run_id: str, path: str | Path, fmt: str) -> Path | None:
    """Write each stream's throughput and latency over time, one row per (client, stream, window),
    as CSV or Parquet; None (and no file) when the run streamed nothing."""
    import pandas as pd

    rows = _run_rows(store, run_id)
    if not rows:
        return None
    records = []
    for r in rows:
        w = windowed(r.completions)
        for i, end in enumerate(w.end_s):
            records.append(
                {
                    "client": r.client,
                    "stream": r.stream,
                    "split": r.split,
                    "window": i,
                    "window_s": w.window_s,
                }
                | {"end_s": end, "frames": w.frames[i], "fps": w.fps[i]}
                | {"p50_ms": w.p50_ms[i], "p95_ms": w.p95_ms[i]}
            )
    return _write(pd.DataFrame.from_records(records), path, fmt)


def _run_rows(store: ResultsStore, run_id: str) -> list[StreamRow]:
    run = store.get_run(run_id)
    return summarize_streams(store.spans(run.id), store.metrics(run.id), uplinks_of(run.record))


def _write(frame: Any, path: str | Path, fmt: str) -> Path:
    target = Path(path)
    with atomic_path(target) as temp:
        if fmt == "parquet":
            try:
                frame.to_parquet(temp)
            except ImportError as exc:
                raise SplitTracerError(
                    "Parquet export needs the optional dependency pyarrow, which is not installed",
                    hint="Install it with: pip install 'splittracer[parquet]' (or export to .csv).",
                ) from exc
        else:
            frame.to_csv(temp, index=False)
    return target
