"""``splittracer results``: list runs, summarise, export and plot them."""

from __future__ import annotations

import math
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..units import format_rate
from ._render import console, print_json, print_table

if TYPE_CHECKING:  # the store and the report (numpy) load in the commands, not with the command line
    from ..metrics.store import ResultsStore
    from ..report.export import ExportFormat
    from ..report.runs import RunSummary

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

_STATUS_STYLE = {"running": "yellow", "succeeded": "green", "failed": "bold red"}


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


def print_run_summary(summary: RunSummary) -> None:
    """The run's status (and error) above its per-split table, as ``results show`` prints it."""
    _print_header(summary)
    if not summary.rows:
        console.print("No completed inferences outside warm-up were recorded.")
        return
    rows = [
        [
            r.split,
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
        ]
        for r, label in zip(summary.rows, summary.labels)
    ]
    columns = ["split", "after layer", "n", "head ms", "transfer ms", "tail ms", "total ms"]
    columns += ["total IQR ms", "other ms", "bytes", "wire bytes"]
    print_table("Median per split point (bytes: forward transfers only)", columns, rows)
    if summary.decisions:
        plans = [
            [p.inference, p.cuts, p.reason, format_rate(p.bandwidth_bps or math.inf), p.predicted_ms]
            for p in summary.decisions
        ]
        print_table("Planned splits", ["from inference", "cuts", "why", "bandwidth", "predicted ms"], plans)


def _print_header(summary: RunSummary) -> None:
    from ..report.runs import format_duration, format_timestamp, run_duration_s

    info = summary.run
    style = _STATUS_STYLE.get(info.status, "")
    console.print(
        f"[bold]{info.id}[/]  {info.experiment}  [{style}]{info.status}[/]  "
        f"started {format_timestamp(info.started_at)} UTC, ran {format_duration(run_duration_s(info))}",
        highlight=False,
    )
    if info.error:
        console.print(f"[bold red]error:[/] {info.error}", highlight=False, soft_wrap=True)


@app.command()
def export(
    run: RunArg,
    fmt: Annotated[Format, typer.Option("--format", help="csv or parquet")] = Format.csv,
    output: Annotated[Path | None, typer.Option(help="File to write (default: results/<run>.<fmt>)")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write every span of a run to a CSV or Parquet file."""
    from ..metrics.store import ResultsStore
    from ..report.export import export_run
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    with ResultsStore(ws.results_db) as store:
        run_id = store.get_run(run).id
        target = output or ws.results_dir / f"{run_id}.{fmt.value}"
        written = export_run(store, run_id, target, _FORMATS[fmt])
    console.print(str(written), highlight=False, soft_wrap=True)


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
