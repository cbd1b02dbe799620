"""``splittracer init`` and ``splittracer experiment``: workspaces and their experiments."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._render import console, print_json, print_table

if TYPE_CHECKING:  # the workspace and the store load in the commands, not with the command line
    from ..manifest import Limits, Manifest
    from ..metrics.store import ResultsStore

app = typer.Typer(help="List and show the experiments of a workspace.", no_args_is_help=True)

WorkspaceOpt = Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace directory")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts")]


def init(
    directory: Annotated[Path, typer.Argument(help="Directory to create the workspace in")],
    force: Annotated[bool, typer.Option(help="Overwrite existing files")] = False,
) -> None:
    """Create a workspace: settings, roles.py, tasks.py, experiments/ and results/."""
    from ..workspace import init_workspace

    workspace = init_workspace(directory, force=force)
    console.print(f"workspace '{workspace.name}' ready in {workspace.root}")
    console.print(
        f"run the Neurosurgeon replication with: splittracer run neurosurgeon --workspace {directory}"
    )


@app.command("ls")
def list_experiments(workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """Experiments of the workspace: name, description, participants, last run."""
    from ..metrics.store import ResultsStore
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    experiments = ws.experiments()
    last = _last_runs(ResultsStore(ws.results_db)) if ws.results_db.exists() else {}
    if json:
        print_json([{**_info(e), "last_run": last.get(e.name)} for e in experiments])
        return
    rows = [
        [e.name, e.error or e.description, ", ".join(e.participants), last.get(e.name, "—")]
        for e in experiments
    ]
    print_table(f"experiments in {ws.root}", ["name", "description", "participants", "last run"], rows)


@app.command("show")
def show(name: str, workspace: WorkspaceOpt = None, json: JsonOpt = False) -> None:
    """An experiment's manifest, validated (user code imported and checked)."""
    from ..controller.preflight import check_manifest, preflight_cache
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    manifest = ws.load_manifest(name)
    with console.status("checking the model and its splits…", spinner="dots"):
        check_manifest(manifest, preflight_cache(ws.root))
    if json:
        print_json(manifest.model_dump(mode="json"))
        return
    console.print(f"[bold]{manifest.name}[/] — {manifest.description}  ({manifest.path})")
    rows = [
        [p.stage, p.name, p.device, p.torch_device, p.role, *_limits(p.limits), _model(manifest, p.name)]
        for p in manifest.participants.values()
    ]
    columns = ["stage", "name", "device", "computes on", "role", "threads", "uplink", "latency", "model"]
    print_table("participants", columns, rows)
    console.print(manifest.manifest_text, highlight=False, markup=False)


def _info(e: object) -> dict[str, object]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(e).items()}


def _last_runs(store: ResultsStore) -> dict[str, str]:
    runs = store.list_runs()
    return {r.experiment: f"{r.id} ({r.status})" for r in runs}


def _model(manifest: Manifest, name: str) -> str:
    model = manifest.model_of(name)
    return "" if model is None else model.source


def _limits(limits: Limits) -> list[object]:
    return [limits.threads, limits.uplink, limits.latency]
