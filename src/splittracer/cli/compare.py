"""``splittracer results compare``: runs side by side, with their run-to-run difference.

Importing this module adds the command to the ``results`` group.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ._render import console, print_json, print_table
from .results import JsonOpt, WorkspaceOpt, app

if TYPE_CHECKING:  # the report (numpy) loads in the command, not with the command line
    from ..report.compare import RunComparison


def compare(
    runs: Annotated[list[str], typer.Argument(help="Two or more run ids, unique prefixes or 'latest'")],
    output: Annotated[
        Path | None, typer.Option(help="Directory for the overlaid chart (default: results/)")
    ] = None,
    json: JsonOpt = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Each run's median total per split, last minus first, and the CV; writes an overlaid chart."""
    from ..metrics.store import ResultsStore
    from ..report.compare import compare_runs, comparison_to_dict, write_comparison_plot
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    with ResultsStore(ws.results_db) as store:
        comparison = compare_runs(store, runs)
    written = write_comparison_plot(comparison, output or ws.results_dir) if comparison.rows else []
    if json:
        print_json({**comparison_to_dict(comparison), "charts": [str(p) for p in written]})
        return
    print_comparison(comparison)
    for path in written:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def print_comparison(comparison: RunComparison) -> None:
    """The side-by-side table and a line on how well the runs agree."""
    ids = [s.run.id for s in comparison.runs]
    if not comparison.rows:
        console.print("None of these runs completed an inference outside warm-up.")
        return
    columns = ["split", "after layer", *[f"{i} ms" for i in ids], "Δ ms (last − first)", "Δ %", "CV %"]
    rows = [[r.split, r.label, *r.totals, r.delta_ms, r.delta_pct, r.cv_pct] for r in comparison.rows]
    print_table("Median total per split point", columns, rows)
    median_cv, max_cv = comparison.cv_pct
    if median_cv is not None and max_cv is not None:
        console.print(
            f"Run-to-run CV over splits: median {median_cv:.2f}%, largest {max_cv:.2f}%", highlight=False
        )
    best = ", ".join(f"{i}: {b if b is not None else '—'}" for i, b in zip(ids, comparison.best_splits))
    console.print(f"Fastest split per run: {best}", highlight=False, soft_wrap=True)
    _print_streams(comparison)


def _print_streams(comparison: RunComparison) -> None:
    """Stream runs: each run's streams, their throughput against the bound and their tail latency."""
    rows = [
        [
            s.run.id,
            r.client,
            r.stream,
            r.split,
            r.offered_fps or f"{r.inflight} in flight",
            r.achieved_fps,
            r.bound_fps,
            f"{r.ratio:.0%}",
            r.latency_ms["p50"],
            r.latency_ms["p99"],
        ]
        for s in comparison.runs
        for r in s.streams
    ]
    if rows:
        columns = ["run", "client", "stream", "split", "offered", "achieved fps", "bound fps", "of bound"]
        print_table("Streams per run", [*columns, "p50 ms", "p99 ms"], rows)


app.command("compare")(compare)
