"""``splittracer run NAME``: run an experiment of the workspace by name."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..deploy import agent_client
from ._render import console, print_json
from .results import print_run_summary

if TYPE_CHECKING:  # the controller (torch, gRPC) loads when a run starts, not with the command line
    from rich.progress import Progress

    from ..controller.resolve import ResolvedRun
    from ..controller.run import RunObserver
    from ..manifest import Manifest
    from ..workspace import Workspace


def _observer(progress: Progress) -> RunObserver:
    """A run observer that draws a Rich progress bar: inferences done / total and the current split."""
    from ..controller.run import RunObserver

    class ProgressObserver(RunObserver):
        def __init__(self) -> None:
            self.task = progress.add_task("starting", total=None)

        def phase(self, text: str) -> None:
            progress.update(self.task, description=text)

        def progress(self, participant: str, done: int, total: int, label: str) -> None:
            progress.update(self.task, completed=done, total=total, description=f"{participant}: {label}")

        def log(self, participant: str, message: str) -> None:
            progress.console.print(f"[dim]{participant}:[/] {message}")

    return ProgressObserver()


WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace directory")]
PlotOpt = Annotated[bool, typer.Option(help="Write the charts after the run")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the run's summary as JSON")]
WeightsOpt = Annotated[
    Path | None,
    typer.Option(help="The model's weights for this run (a local state_dict; replaces model.weights)"),
]
DatasetOpt = Annotated[
    Path | None,
    typer.Option(help="Inputs for this run: an image folder or a CSV of file,label (replaces model.dataset)"),
]


def run(
    name: Annotated[str, typer.Argument(help="Experiment name (a manifest in experiments/)")],
    workspace: WorkspaceOpt = None,
    plot: PlotOpt = True,
    json: JsonOpt = False,
    weights: WeightsOpt = None,
    dataset: DatasetOpt = None,
) -> None:
    """Run an experiment: start participants, feed them, record everything, tear down."""
    from ..experiment import Experiment

    experiment = Experiment.load(workspace, name).with_model_files(weights=weights, dataset=dataset)
    _execute(experiment.workspace, experiment.plan(), plot=plot, json=json)


def rerun(
    run_id: Annotated[str, typer.Argument(help="Run to repeat: an id, a unique prefix, or 'latest'")],
    workspace: WorkspaceOpt = None,
    plot: PlotOpt = True,
    json: JsonOpt = False,
) -> None:
    """Repeat a stored run: the same manifest, with today's code (changes are reported)."""
    import msgspec

    from ..controller.provenance import changed_code
    from ..controller.resolve import resolve_run
    from ..metrics.store import ResultsStore
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    store = ResultsStore(ws.results_db)
    previous = store.get_run(run_id)
    manifest = load_snapshot(ws, previous.id, previous.manifest)
    plan = resolve_run(manifest, ws.root)
    changed = changed_code(previous.record.code, plan.provenance.code)
    if changed and not json:
        console.print(f"[yellow]code changed since {previous.id}:[/] {', '.join(changed)}")
    provenance = msgspec.structs.replace(plan.provenance, rerun_of=previous.id)
    _execute(ws, dataclasses.replace(plan, provenance=provenance), plot=plot, json=json)


def _execute(ws: Workspace, plan: ResolvedRun, *, plot: bool, json: bool) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..controller.run import run_logs
    from ..experiment import RunFailedError, execute
    from ..metrics.store import ResultsStore
    from ..report.runs import write_plots

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=json) as progress:
        outcome = execute(ws, plan, observer=_observer(progress))
    store = ResultsStore(ws.results_db)
    summary = outcome.summary
    paths = write_plots(store, outcome.run_id, ws.results_dir) if plot and summary.rows else []
    launch = store.get_run(outcome.run_id).record.launch
    logs = run_logs(store, outcome.run_id)
    if json:
        print_json(
            {
                "run": outcome.run_id,
                "status": outcome.status,
                "error": outcome.error,
                "elapsed_s": outcome.elapsed_s,
                "launch": launch,
                "plots": [str(p) for p in paths],
                "logs": str(logs) if logs.is_dir() else None,
                "summary": summary.rows,
            }
        )
    else:
        print_run_summary(summary, error=False)  # the error goes to stderr, once
        _print_launch(launch)
        for path in paths:
            console.print(f"wrote {path}")
        if not outcome.succeeded and logs.is_dir():
            console.print(f"participants' logs: {logs}", highlight=False)
    if not outcome.succeeded:
        raise RunFailedError(outcome)


def _print_launch(launch: dict[str, str]) -> None:
    """Which participants the warm agent forked; else why it did not, or the tip to start one."""
    warm = [name for name, how in launch.items() if how == "agent"]
    if warm:
        console.print(f"forked by the warm agent: {', '.join(warm)}", highlight=False)
    elif "spawn" in launch.values() and agent_client.agent_enabled():
        refused = agent_client.last_refusal()
        if refused is not None:
            console.print(f"[yellow]warm agent not used:[/] {refused}", highlight=False, soft_wrap=True)
        else:
            console.print(
                "[dim]tip: `splittracer agent start` keeps torch imported between runs: "
                "local participants then start in well under a second[/]"
            )


def load_snapshot(ws: Workspace, run_id: str, text: str) -> Manifest:
    """The manifest a run stored, validated as if it were in the workspace's experiments/."""
    from ..manifest import load_manifest

    # Written beside the others so relative paths resolve as they did; the suffix
    # keeps it out of 'experiment ls' while it exists, and it is removed at once.
    path = ws.experiments_dir / f".rerun-{run_id}.snapshot"
    path.write_text(text, encoding="utf-8")
    try:
        return load_manifest(path, workspace=ws.root)
    finally:
        path.unlink(missing_ok=True)
