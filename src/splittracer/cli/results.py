"""``splittracer results``: list runs, summarise, export and plot them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..units import format_rate
from ._render import console, print_json, print_table

if TYPE_CHECKING:  # the store and the report (numpy) load in the commands, not with the command line
    from ..metrics.store import ResultsStore
    from ..report.accuracy import AccuracyRow
    from ..report.export import ExportFormat
    from ..report.runs import RunSummary
    from ..report.summary import SplitRow

app = typer.Typer(help="List, summarise, export and plot the runs of a workspace.", no_args_is_help=True)


class Format(str, Enum):
    """Export formats offered on the command line."""

    csv = "csv"
    parquet = "parquet"


_FORMATS: dict[Format, ExportFormat] = {Format.csv: "csv", Format.parquet: "parquet"}


RunArg = Annotated[str, typer.Argument(help="Run id, a unique prefix of one, or 'latest'")]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", help="Workspace directory (default: found from here up)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]

_STATUS_STYLE = {"running": "yellow", "succeeded": "green", "failed": "bold red", "interrupted": "magenta"}


def _store(workspace: Path | None) -> ResultsStore:
    from ..metrics.store import ResultsStore
    from ..workspace import find_workspace

    return ResultsStore(find_workspace(explicit=workspace).results_db)


@app.command("ls")
def ls(
    experiment: Annotated[str | None, typer.Option(help="Only runs of this experiment")] = None,
    json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Every run, oldest first: status, start, duration and inferences measured."""
    from ..report.runs import format_duration, format_timestamp, list_runs, run_to_dict

    with _store(workspace) as store:
        listings = list_runs(store, experiment)
    if json:
        print_json([{**run_to_dict(x.run), "inferences": x.inferences} for x in listings])
        return
    if not listings:
        console.print("No runs yet." if experiment is None else f"No runs of '{experiment}' yet.")
        return
    rows = [
        [
            x.run.id,
            x.run.experiment,
            x.run.status,
            format_timestamp(x.run.started_at),
            format_duration(x.duration_s),
            x.inferences,
        ]
        for x in listings
    ]
    print_table("Runs", ["id", "experiment", "status", "started (UTC)", "duration", "inferences"], rows)


@app.command()
def show(run: RunArg, json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Per split: median head, transfer, tail and total, IQR of the total, bytes across the cut."""
    from ..report.runs import run_summary, summary_to_dict

    with _store(workspace) as store:
        summary = run_summary(store, run)
    if json:
        print_json(summary_to_dict(summary))
        return
    print_run_summary(summary)


def print_run_summary(summary: RunSummary, *, error: bool = True) -> None:
    """The run's status (and ``error``) above its per-split table, as ``results show`` prints it."""
    _print_header(summary, error=error)
    if not summary.rows:
        console.print("No completed inferences outside warm-up were recorded.")
        _print_not_counted(summary)
        return
    if summary.uplinks:
        # A sweep per uplink: a table per link; one table of all would mix their transfers.
        for sweep in summary.uplinks:
            title = f"Uplink {sweep.uplink}: median per split point (best: split {sweep.best.split})"
            _print_split_table(summary, sweep.rows, title)
    else:
        _print_split_table(summary, summary.rows, "Median per split point (bytes: forward transfers only)")
    _print_plans(summary)
    _print_streams(summary)
    _print_accuracy(summary)
    _print_metrics(summary)


def _print_streams(summary: RunSummary) -> None:
    """One row per client and stream (then the clients together, as '*'): throughput and tail latency."""
    if not summary.streams:
        return
    rows = [
        [
            r.client,
            r.stream,
            r.split,
            f"{r.offered_fps:g}/s {r.loop}" if r.offered_fps else f"closed, {r.inflight} in flight",
            r.frames,
            r.achieved_fps,
            r.bound_fps,
            f"{r.ratio:.0%}",
            *(r.latency_ms[q] for q in ("p50", "p95", "p99", "max")),
            "  ".join(f"{stage}: {ms:.2f}" for stage, ms in r.queue_ms.items()),
            r.deadline_misses,
            r.dropped,
        ]
        for r in summary.streams
    ]
    columns = ["client", "stream", "split", "offered", "frames", "achieved fps", "bound fps", "of bound"]
    columns += ["p50 ms", "p95 ms", "p99 ms", "max ms", "queue ms per stage", "late", "dropped"]
    print_table("Streams (achieved: completions/s after the first; bound: 1/slowest stage)", columns, rows)
    _print_front(summary)


def _print_front(summary: RunSummary) -> None:
    """The streams on the Pareto front of achieved frames/s against p95 latency, in one line."""
    from ..report.streams import TRADEOFF_QUANTILE, pareto_keys, tradeoff_rows

    points = tradeoff_rows(summary.streams)
    if len(points) < 2:
        return
    front = pareto_keys(points)
    named = [
        f"split {r.split} (stream {r.stream}{'' if r.client == '*' else ', ' + r.client}: "
        f"{r.achieved_fps:.2f} fps, {TRADEOFF_QUANTILE} {r.latency_ms[TRADEOFF_QUANTILE]:.1f} ms)"
        for r in sorted(points, key=lambda r: r.achieved_fps)
        if (r.client, r.stream) in front
    ]
    console.print(
        f"Pareto front, frames/s against {TRADEOFF_QUANTILE} latency ({len(named)} of {len(points)} "
        f"streams): {'; '.join(named)}",
        highlight=False,
    )


def _print_accuracy(summary: RunSummary) -> None:
    from ..report.accuracy import accuracy_informative

    if not summary.accuracy:
        return
    if not accuracy_informative(summary.accuracy):
        count = sum(r.count for r in summary.accuracy)
        console.print(
            f"accuracy: all {count} inferences gave the uncompressed model's output (codec none, no labels; "
            "the table is in --json and the exports)",
            highlight=False,
        )
        return

    def share(value: float | None) -> str:
        return "—" if value is None else f"{100 * value:.1f}%"

    rows = [
        [r.cut_label, r.codec, r.count, r.bytes_raw, r.bytes_wire, r.total_ms, *_quality(r, share)]
        for r in summary.accuracy
    ]
    columns = [
        "split",
        "codec",
        "n",
        "bytes",
        "wire bytes",
        "total ms",
        "agreement",
        "rel error",
        "top-1",
        "top-5",
    ]
    print_table("Accuracy per split and codec (agreement: top-1 as the uncompressed model's)", columns, rows)


def _quality(row: AccuracyRow, share: Callable[[float | None], str]) -> list[str]:
    return [share(row.agreement), f"{row.rel_error:.2e}", share(row.top1), share(row.top5)]


def _print_split_table(summary: RunSummary, split_rows: Sequence[SplitRow], title: str) -> None:
    from ..report.runs import chain_links, hop_cells, row_label, split_tensors, tensors_label

    links = chain_links(split_rows)
    labels = [row_label(r, summary.layers) for r in split_rows]
    counts = [split_tensors(r, summary.run.record.split_tensors) for r in split_rows]
    rows = [
        [
            r.split if len(r.cuts) <= 1 and not r.placement else r.cut_label,
            label,
            r.count,
            r.head.median,
            r.transfer.median,
            r.tail.median,
            r.total.median,
            f"{r.total.p25:,.3f}–{r.total.p75:,.3f}",
            r.other_ms,
            r.bytes_raw,
            r.bytes_wire,
            tensors_label(tensors),
            *hop_cells(r, links),
        ]
        for r, label, tensors in zip(split_rows, labels, counts)
    ]
    columns = ["split", "after layer", "n", "head ms", "transfer ms", "tail ms", "total ms"]
    columns += ["total IQR ms", "other ms", "bytes", "wire bytes", "tensors"]
    columns += [f"{a}→{b} {what}" for a, b in links for what in ("ms", "bytes")]
    print_table(title, columns, rows)


def _print_plans(summary: RunSummary) -> None:
    if summary.decisions:
        coded = any(p.codec for p in summary.decisions)
        plans = [
            [
                p.inference,
                p.cuts,
                *([p.codec] if coded else []),
                p.reason,
                format_rate(p.bandwidth_bps or math.inf),
                p.predicted_ms,
            ]
            for p in summary.decisions
        ]
        columns = [
            "from inference",
            "cuts",
            *(["codec"] if coded else []),
            "why",
            "bandwidth",
            "predicted ms",
        ]
        print_table("Planned splits", columns, plans)
    _print_not_counted(summary)


def _print_not_counted(summary: RunSummary) -> None:
    from ..report.runs import not_counted_lines

    for line in not_counted_lines(summary.not_counted):
        console.print(line, highlight=False, soft_wrap=True)


def _print_metrics(summary: RunSummary) -> None:
    if not summary.metrics:
        return
    rows = [
        [
            m.name,
            m.participant,
            m.cut_label,
            m.attrs_label,
            m.count,
            m.value.median,
            f"{m.value.p25:,.4g}–{m.value.p75:,.4g}",
            m.mean,
        ]
        for m in summary.metrics
    ]
    columns = ["metric", "participant", "split", "attrs", "n", "median", "IQR", "mean"]
    print_table("Recorded metrics (ctx.record; split —: outside any inference)", columns, rows)


def _print_header(summary: RunSummary, *, error: bool) -> None:
    from ..report.limits import limits_lines, whole_model_ratio
    from ..report.runs import format_duration, format_timestamp, participant_models, run_duration_s

    info = summary.run
    style = _STATUS_STYLE.get(info.status, "")
    console.print(
        f"[bold]{info.id}[/]  {info.experiment}  [{style}]{info.status}[/]  "
        f"started {format_timestamp(info.started_at)} UTC, ran {format_duration(run_duration_s(info))}",
        highlight=False,
    )
    if error and info.error:
        console.print(f"[bold red]error:[/] {info.error}", highlight=False, soft_wrap=True)
    for line in limits_lines(info.record):
        console.print(f"limits  {line}", highlight=False, markup=False)  # [spawn+cgroup] is no style
    models = participant_models(info.record)
    if len(set(models.values())) > 1:  # one model needs no line: the manifest says which
        console.print("models  " + ", ".join(f"{n}: {m}" for n, m in models.items()), highlight=False)
    measured = whole_model_ratio(summary.rows, summary.layers)
    if measured is not None:
        console.print(
            f"whole model: {measured.first_ms:,.1f} ms on the first participant, {measured.next_ms:,.1f} ms "
            f"on the next: {measured.ratio:.1f}x slower",
            highlight=False,
        )


@app.command()
def export(
    run: RunArg,
    fmt: Annotated[Format, typer.Option("--format", help="csv or parquet")] = Format.csv,
    output: Annotated[Path | None, typer.Option(help="File to write (default: results/<run>.<fmt>)")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write every span of a run to a CSV or Parquet file, its metrics beside it (<name>-metrics)
    and, for a stream run, its stream results (<name>-streams) and their throughput and latency per
    window (<name>-stream-windows), and, when inferences recorded
    predictions, accuracy per split and codec (<name>-accuracy)."""
    from ..metrics.store import ResultsStore
    from ..report.accuracy import accuracy_path, export_run_accuracy
    from ..report.export import export_run, export_run_metrics, metrics_path
    from ..report.streams import export_run_stream_windows, export_run_streams, streams_path, windows_path
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    with ResultsStore(ws.results_db) as store:
        run_id = store.get_run(run).id
        target = output or ws.results_dir / f"{run_id}.{fmt.value}"
        written = [export_run(store, run_id, target, _FORMATS[fmt])]
        metrics = export_run_metrics(store, run_id, metrics_path(target), _FORMATS[fmt])
        streams = export_run_streams(store, run_id, streams_path(target), _FORMATS[fmt])
        windows = export_run_stream_windows(store, run_id, windows_path(target), _FORMATS[fmt])
        accuracy = export_run_accuracy(store, run_id, accuracy_path(target), _FORMATS[fmt])
    extra = [p for p in (metrics, streams, windows, accuracy) if p]
    for path in [*written, *extra]:
        console.print(str(path), highlight=False, soft_wrap=True)


@app.command()
def plot(
    run: RunArg,
    output: Annotated[Path | None, typer.Option(help="Directory for the charts (default: results/)")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write the latency-per-split and bytes-per-split charts (PNG and SVG); print their paths."""
    from ..metrics.store import ResultsStore
    from ..report.runs import write_plots
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    with ResultsStore(ws.results_db) as store:
        written = write_plots(store, run, output or ws.results_dir)
    for path in written:
        console.print(str(path), highlight=False, soft_wrap=True)
