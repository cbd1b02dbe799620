"""``splittracer run NAME``: run an experiment of the workspace by name."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..controller.plan import plan_from_manifest
from ..controller.run import RunObserver, run_experiment
from ..errors import RunError
from ..metrics.store import ResultsStore
from ..report.runs import run_summary, write_plots
from ..workspace import find_workspace
from ._render import console, print_json
from .results import print_run_summary


class _ProgressObserver(RunObserver):
    """Draws a Rich progress bar: inferences done / total and the current split."""

    def __init__(self, progress: Progress) -> None:
        self.bar = progress
        self.task = progress.add_task("starting", total=None)

    def phase(self, text: str) -> None:
        self.bar.update(self.task, description=text)

    def progress(self, participant: str, done: int, total: int, label: str) -> None:
        self.bar.update(self.task, completed=done, total=total, description=f"{participant}: {label}")

    def log(self, participant: str, message: str) -> None:
        self.bar.console.print(f"[dim]{participant}:[/] {message}")


def run(
    name: Annotated[str, typer.Argument(help="Experiment name (a manifest in experiments/)")],
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace directory")] = None,
    plot: Annotated[bool, typer.Option(help="Write the charts after the run")] = True,
    json: Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON")] = False,
) -> None:
    """Run an experiment: start participants, feed them, record everything, tear down."""
    ws = find_workspace(explicit=workspace)
    plan = plan_from_manifest(ws.load_manifest(name))
    store = ResultsStore(ws.results_db)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=json) as progress:
        outcome = run_experiment(plan, store, workspace=ws.root, observer=_ProgressObserver(progress))
    summary = run_summary(store, outcome.run_id)
    paths = write_plots(store, outcome.run_id, ws.results_dir) if plot and summary.rows else []
    if json:
        print_json(
            {
                "run": outcome.run_id,
                "status": outcome.status,
                "error": outcome.error,
                "elapsed_s": outcome.elapsed_s,
                "plots": [str(p) for p in paths],
                "summary": summary.rows,
            }
        )
    else:
        print_run_summary(summary)
        for path in paths:
            console.print(f"wrote {path}")
    if outcome.status != "succeeded":
        raise RunError(f"run {outcome.run_id} failed: {outcome.error}")
