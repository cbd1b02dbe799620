"""``splittracer report``: write a run's self-contained HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._render import console
from .results import RunArg, WorkspaceOpt


def report(
    run: RunArg,
    workspace: WorkspaceOpt = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="HTML file or folder (default: results/<run>-report.html)"),
    ] = None,
    inference: Annotated[
        int | None, typer.Option(help="Inference the timeline shows (default: median of the fastest split)")
    ] = None,
) -> None:
    """Write the HTML report of a run (opens with no network), PNG and SVG of each figure beside it."""
    from ..metrics.store import ResultsStore
    from ..report.html import write_html_report
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    with ResultsStore(ws.results_db) as store:
        run_id = store.get_run(run).id
        target = output or ws.results_dir
        if target.is_dir() or target.suffix.lower() not in (".html", ".htm"):
            target = target / f"{run_id}-report.html"
        files = write_html_report(store, run_id, target, inference=inference)
    console.print(str(files.html), highlight=False, soft_wrap=True)
    for path in files.figures:
        console.print(str(path), highlight=False, soft_wrap=True)
