"""Runs as a user looks at them: listings, per-split summaries and their figures.

What ``splittracer results`` shows, as plain functions over a
:class:`~splittracer.metrics.store.ResultsStore`, so a notebook gets the same
numbers as the command line. Every ``run_id`` may be an id, a unique prefix
of one or ``'latest'``; an unknown one raises SplitTracerError.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..metrics.record import RunRecord, record_to_dict
from ..metrics.spans import Metric, Span
from ..metrics.store import INTERRUPTED_BY_USER, ResultsStore, RunInfo
from .accuracy import AccuracyRow, accuracy_informative, accuracy_rows, accuracy_rows_to_dicts
from .custom import MetricRow, metric_rows_to_dicts, summarize_metrics
from .streams import StreamRow, stream_rows_to_dicts, summarize_streams, uplinks_of
from .summary import Incomplete, SplitRow, completed_inferences, incomplete, summarize, summary_to_dicts
from .uplinks import UplinkSweep, summarize_by_uplink

__all__ = [
    "NotCounted",
    "RunListing",
    "RunSummary",
    "SplitDecision",
    "chain_links",
    "format_duration",
    "format_timestamp",
    "hop_cells",
    "list_runs",
    "not_counted",
    "not_counted_lines",
    "row_label",
    "run_duration_s",
    "run_summary",
    "run_to_dict",
    "split_decisions",
    "split_label",
    "split_tensors",
    "summary_to_dict",
    "tensors_label",
    "write_plots",
]


@dataclass(frozen=True)
class RunListing:
    """One run with the number of inferences it measured (warm-ups left out)."""

    run: RunInfo
    inferences: int

    @property
    def duration_s(self) -> float | None:
        """Seconds from start to end; None while it is still running."""
        return run_duration_s(self.run)


@dataclass(frozen=True)
class SplitDecision:
    """One choice of cuts a run made itself (``split: auto`` or ``adaptive``), and why."""

    inference: int  # the first inference it applies to
    cuts: str
    reason: str  # start, or bandwidth (an adaptive re-plan)
    bandwidth_bps: float  # of the first hop; 0: unlimited
    predicted_ms: float
    codec: str = ""  # the first hop's, when it was planned too (``max_accuracy_drop``)


@dataclass(frozen=True)
class NotCounted:
    """An inference left out of the summary because it did not complete.

    ``outcome`` is ``interrupted`` (the user stopped the run while it was in
    flight), ``running`` (the run has not ended yet) or ``failed``; ``why``
    says it in words.
    """

    split: int
    inference: int
    outcome: str
    why: str
    warmup: bool


@dataclass(frozen=True)
class RunSummary:
    """A run, its per-split rows, the names of its model's layers (when recorded), its split
    decisions, the inferences that are no samples because they did not complete, and the
    summary of the metrics its handlers recorded."""

    run: RunInfo
    rows: tuple[SplitRow, ...]
    layers: tuple[str, ...]
    decisions: tuple[SplitDecision, ...] = ()
    not_counted: tuple[NotCounted, ...] = ()
    metrics: tuple[MetricRow, ...] = ()
    uplinks: tuple[UplinkSweep, ...] = ()  # one per link of a sweep over several uplinks
    streams: tuple[StreamRow, ...] = ()  # per client and stream of a run with Stream tasks
    accuracy: tuple[AccuracyRow, ...] = ()  # per (cuts, codec), where inferences recorded predictions

    @property
    def labels(self) -> list[str]:
        """The layer each row's cuts come after ('input' for split 0; 'conv1 → fc' along a chain)."""
        return [row_label(row, self.layers) for row in self.rows]

    @property
    def tensors(self) -> list[tuple[int | None, ...]]:
        """How many tensors cross each cut of each row (None where the run did not record it)."""
        return [split_tensors(row, self.run.record.split_tensors) for row in self.rows]


def list_runs(store: ResultsStore, experiment: str | None = None) -> list[RunListing]:
    """Every run (of ``experiment``, if given), oldest first, with its inference count."""
    return [
        RunListing(run, _measured(store.spans(run.id, kind="inference")))
        for run in store.list_runs(experiment)
    ]


def _measured(spans: Sequence[Span]) -> int:
    """Completed, non-warm-up inferences, from their ``inference`` spans."""
    counted = [s for s in spans if s.attrs.get("warmup") is not True and not s.attrs.get("error")]
    return len({(s.split, s.inference) for s in counted})


def run_summary(store: ResultsStore, run_id: str) -> RunSummary:
    """The per-split summary of a run's completed inferences, and those that did not complete."""
    run = store.get_run(run_id)
    spans, metrics = store.spans(run.id), store.metrics(run.id)
    return RunSummary(
        run,
        tuple(summarize(spans)),
        run.record.layers,
        split_decisions(metrics),
        not_counted=not_counted(run, spans),
        metrics=tuple(summarize_metrics(metrics, spans)),
        uplinks=summarize_by_uplink(spans),
        streams=tuple(summarize_streams(spans, metrics, uplinks_of(run.record))),
        accuracy=tuple(accuracy_rows(spans, metrics)),
    )


def not_counted(run: RunInfo, spans: Sequence[Span]) -> tuple[NotCounted, ...]:
    """The inferences of ``run`` that did not complete, each with why, given how the run ended.

    Only an inference after the last one that completed can have been cut
    short by the end of the run; one followed by a completed inference failed
    on its own while the run went on.
    """
    last_completed = max(completed_inferences(spans), default=-1)
    return tuple(_why(run, i, cut_short=i.inference > last_completed) for i in incomplete(spans))


def _why(run: RunInfo, started: Incomplete, *, cut_short: bool) -> NotCounted:
    raised = f"ended with {started.error}" if started.error else "recorded no end-to-end span"
    if cut_short and run.status == "running":
        outcome, why = "running", "the run has not ended yet"
    elif cut_short and (run.status == "interrupted" or run.error == INTERRUPTED_BY_USER):
        outcome = "interrupted"
        why = f"the run was {INTERRUPTED_BY_USER} while it was in flight (it {raised})"
    else:
        outcome, why = "failed", f"it {raised}" + (" when the run failed" if cut_short else "")
    return NotCounted(started.split, started.inference, outcome, why, started.warmup)


def not_counted_lines(items: Sequence[NotCounted]) -> list[str]:
    """``items`` for people: a headline, then one line per outcome and reason naming the inferences."""
    if not items:
        return []
    groups: dict[tuple[str, str], list[NotCounted]] = {}
    for item in items:
        groups.setdefault((item.outcome, item.why), []).append(item)
    noun = "inference" if len(items) == 1 else "inferences"
    lines = [f"Not counted: {len(items)} {noun} that did not complete (no sample in the medians)"]
    for (outcome, why), members in groups.items():
        lines.append(f"  {len(members)} {outcome}: {why} — {_which(members)}")
    return lines


def _which(members: Sequence[NotCounted], shown: int = 5) -> str:
    named = [f"#{m.inference} at split {m.split}" + (" (warm-up)" if m.warmup else "") for m in members]
    more = f" and {len(named) - shown} more" if len(named) > shown else ""
    return ", ".join(named[:shown]) + more


def chain_links(rows: Sequence[SplitRow]) -> list[tuple[str, str]]:
    """The links (sender, receiver) of a chain of three or more participants in chain order; [] for two."""
    longest = max(rows, key=lambda r: len(r.hops), default=None)
    if longest is None or len(longest.hops) < 2:
        return []
    hops = longest.hops
    if any(a.receiver != b.sender for a, b in itertools.pairwise(hops)):
        return []  # several clients' links to one server (a fleet), side by side: no chain
    return [(h.sender, h.receiver) for h in hops]


def hop_cells(row: SplitRow, links: Sequence[tuple[str, str]]) -> list[float | int | None]:
    """Per link: the row's median transfer ms and forward bytes (None where it did not use it)."""
    hops = {(h.sender, h.receiver): h for h in row.hops}
    cells: list[float | int | None] = []
    for link in links:
        hop = hops.get(link)
        cells += [hop.transfer.median, hop.bytes_raw] if hop else [None, None]
    return cells


def tensors_label(counts: Sequence[int | None]) -> int | str | None:
    """One cut's count, or '3→2' along a chain; None when unknown."""
    if len(counts) == 1:
        return counts[0]
    return None if None in counts else "→".join(map(str, counts))


def row_label(row: SplitRow, layers: Sequence[str]) -> str:
    """The layer each cut of ``row`` comes after: 'input', 'conv1', or 'conv1 → fc' along a chain;
    a placement's layers on the first device, named at the ranges' ends."""
    if row.placement:
        return row.placement_layers or row.placement
    return " → ".join(split_label(k, layers) for k in row.cuts or (row.split,))


def split_tensors(row: SplitRow, counts: Sequence[int]) -> tuple[int | None, ...]:
    """The number of tensors crossing each cut of ``row``, from the run record's ``split_tensors``."""
    if row.placement:
        return (row.placement_tensors,)
    return tuple(counts[k] if 0 <= k < len(counts) else None for k in row.cuts or (row.split,))


def split_decisions(metrics: Sequence[Metric]) -> tuple[SplitDecision, ...]:
    """The ``split_plan`` metrics of a run, in the order they were made."""
    made = sorted((m for m in metrics if m.name == "split_plan"), key=lambda m: m.time_ns)
    return tuple(
        SplitDecision(
            inference=int(m.attrs.get("inference", 0)),
            cuts=f"[{m.attrs['placement']}]"
            if "placement" in m.attrs
            else str(m.attrs.get("cuts", int(m.value))),
            reason=str(m.attrs.get("reason", "")),
            bandwidth_bps=float(m.attrs.get("bandwidth_bps", 0.0)),
            predicted_ms=float(m.attrs.get("predicted_ms", math.nan)),
            codec=str(m.attrs.get("codec", "")),
        )
        for m in made
    )


def split_label(split: int, layers: Sequence[str]) -> str:
    """'input' for split 0, else the name of layer ``split`` when known, else its number."""
    if split == 0:
        return "input"
    return layers[split - 1] if split <= len(layers) else str(split)


def write_plots(store: ResultsStore, run_id: str, out_dir: str | Path) -> list[Path]:
    """Write the stacked-latency and bytes-per-split charts of a run as PNG and SVG.

    Files are ``<run id>-splits.{png,svg}`` and ``<run id>-bytes.{png,svg}``
    in ``out_dir`` (a stream run adds ``-latency-cdf``, ``-over-time``,
    ``-tradeoff`` and, open loop, ``-throughput``); raises SplitTracerError if the run measured nothing.
    """
    # matplotlib is imported only when a figure is wanted.
    from .plots import plot_bytes_per_split, plot_stacked_splits

    summary = run_summary(store, run_id)
    run, rows, layers = summary.run, summary.rows, summary.layers
    stem = Path(out_dir) / run.id
    title = f"{run.experiment} ({run.id})"
    latency = plot_stacked_splits(
        rows, f"{stem}-splits", title=f"Latency per split point — {title}", labels=layers
    )
    sizes = plot_bytes_per_split(
        rows, f"{stem}-bytes", title=f"Bytes crossing each split point — {title}", labels=layers
    )
    if summary.uplinks:
        from .plots import plot_stacked_by_uplink

        links = [(f"uplink {s.uplink}", s.rows) for s in summary.uplinks]
        latency += plot_stacked_by_uplink(
            links, f"{stem}-uplinks", title=f"Latency per split point, per uplink — {title}", labels=layers
        )
    return [*latency, *sizes, *_stream_plots(summary, stem, title), *_accuracy_plots(summary, stem, title)]


def _stream_plots(summary: RunSummary, stem: Path, title: str) -> list[Path]:
    """A stream run's latency CDF, throughput and latency over time, its latency-throughput trade-off
    and, with open-loop streams, achieved against offered load."""
    if not summary.streams:
        return []
    from .stream_plots import plot_latency_cdf, plot_over_time, plot_throughput_vs_offered, plot_tradeoff

    written = plot_latency_cdf(summary.streams, f"{stem}-latency-cdf", title=f"Frame latency — {title}")
    written += plot_over_time(summary.streams, f"{stem}-over-time", title=f"Over time — {title}")
    written += plot_tradeoff(
        summary.streams, f"{stem}-tradeoff", title=f"Latency-throughput trade-off — {title}"
    )
    if any(r.offered_fps > 0 for r in summary.streams):
        written += plot_throughput_vs_offered(
            summary.streams, f"{stem}-throughput", title=f"Achieved against offered load — {title}"
        )
    return written


def _accuracy_plots(summary: RunSummary, stem: Path, title: str) -> list[Path]:
    """The rate-accuracy and latency-accuracy charts, when inferences recorded classifications."""
    if not any(row.agreement is not None for row in summary.accuracy) or not accuracy_informative(
        summary.accuracy
    ):
        return []
    from .ratecharts import plot_latency_accuracy, plot_rate_accuracy

    rate = plot_rate_accuracy(summary.accuracy, f"{stem}-rate-accuracy", f"Bytes vs accuracy — {title}")
    latency = plot_latency_accuracy(
        summary.accuracy, f"{stem}-latency-accuracy", f"Latency vs accuracy — {title}"
    )
    return [*rate.paths, *latency.paths]


def run_duration_s(run: RunInfo) -> float | None:
    """Seconds from a run's start to its end; None while it is still running."""
    if run.ended_at is None:
        return None
    ended, started = datetime.fromisoformat(run.ended_at), datetime.fromisoformat(run.started_at)
    return (ended - started).total_seconds()


def format_duration(seconds: float | None) -> str:
    """A duration for people: '850 ms', '12.3 s', '4m 05s', '2h 03m'; '—' when unknown."""
    if seconds is None or math.isnan(seconds):
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def format_timestamp(iso: str) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS' in its own time zone (UTC in the store)."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def run_to_dict(run: RunInfo) -> dict[str, Any]:
    """A run's facts as JSON-ready data (the manifest text left out)."""
    return {
        "id": run.id,
        "experiment": run.experiment,
        "status": run.status,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration_s": run_duration_s(run),
        "error": run.error,
    }


def summary_to_dict(summary: RunSummary) -> dict[str, Any]:
    """A run summary as JSON-ready data: the run, one flat dict per split with its label and the
    tensors crossing each cut, the split decisions and the custom metrics."""
    flats = summary_to_dicts(summary.rows)
    splits = [
        {"after": label, **flat, "tensors": list(tensors)}
        for label, flat, tensors in zip(summary.labels, flats, summary.tensors)
    ]
    decisions = [dataclasses.asdict(decision) for decision in summary.decisions]
    return {
        "run": {**run_to_dict(summary.run), "metadata": record_to_dict(summary.run.record)},
        "splits": splits,
        "plans": decisions,  # the key users read since runs first recorded them
        "not_counted": [dataclasses.asdict(left) for left in summary.not_counted],
        "metrics": metric_rows_to_dicts(summary.metrics),
        "uplinks": [_uplink_dict(sweep, summary.layers) for sweep in summary.uplinks],
        "streams": stream_rows_to_dicts(summary.streams),
        "accuracy": accuracy_rows_to_dicts(summary.accuracy),
        "models": participant_models(summary.run.record),
    }


def participant_models(record: RunRecord) -> dict[str, str]:
    """Each participant that ran a model -> its model (source), as the run recorded them."""
    return {name: p.model for name, p in record.participants.items() if p.model}


def _uplink_dict(sweep: UplinkSweep, layers: Sequence[str]) -> dict[str, Any]:
    rows = summary_to_dicts(sweep.rows)
    labelled = [{"after": row_label(row, layers), **flat} for row, flat in zip(sweep.rows, rows)]
    return {"uplink": sweep.uplink, "best_split": sweep.best.split, "splits": labelled}
