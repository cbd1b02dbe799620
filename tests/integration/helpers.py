"""Building workspaces and running experiments for the integration tests."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import RunOutcome, run_experiment
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import Workspace, init_workspace


def workspace_with(tmp_path: Path, manifests: dict[str, str]) -> Workspace:
    """A fresh workspace holding the given manifests (name -> YAML text)."""
    ws = init_workspace(tmp_path / "ws")
    for name, text in manifests.items():
        (ws.experiments_dir / f"{name}.yaml").write_text(textwrap.dedent(text))
    return ws


def run(ws: Workspace, name: str) -> tuple[RunOutcome, ResultsStore]:
    """Run experiment ``name`` of ``ws`` through the library, as ``splittracer run`` does."""
    store = ResultsStore(ws.results_db)
    outcome = run_experiment(resolve_run(ws.load_manifest(name)), store, workspace=ws.root)
    return outcome, store


def alive(pid: int) -> bool:
    """Whether a process with ``pid`` still exists (zombies count as gone: they were reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def participant_pids(store: ResultsStore, run_id: str) -> list[int]:
    """PIDs of a run's participants, from its metadata."""
    return [p.pid for p in store.get_run(run_id).record.participants.values()]
