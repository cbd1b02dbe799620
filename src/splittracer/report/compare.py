"""Runs side by side: per-split median totals and their run-to-run difference.

What ``splittracer results compare`` prints and plots. Two identical runs of
an experiment should agree; how far they do not is the measurement's noise,
reported per split as the difference between the last and the first run and
as the coefficient of variation (sample standard deviation over mean) of the
runs' median totals.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SplitTracerError
from ..metrics.store import ResultsStore
from .runs import RunSummary, run_summary, run_to_dict, split_label
from .streams import stream_rows_to_dicts
from .summary import SplitRow

__all__ = ["CompareRow", "RunComparison", "compare_runs", "comparison_to_dict", "write_comparison_plot"]


@dataclass(frozen=True)
class CompareRow:
    """One split point across runs; ``rows[i]`` is run i's row, None where it lacks the split."""

    split: int
    label: str
    rows: tuple[SplitRow | None, ...]

    @property
    def totals(self) -> list[float | None]:
        """Median total (ms) of each run."""
        return [None if r is None else r.total.median for r in self.rows]

    @property
    def delta_ms(self) -> float | None:
        """Last run's median total less the first's; None unless both measured the split."""
        first, last = self.totals[0], self.totals[-1]
        return None if first is None or last is None else last - first

    @property
    def delta_pct(self) -> float | None:
        """:attr:`delta_ms` as a percentage of the first run's total."""
        first, delta = self.totals[0], self.delta_ms
        return None if delta is None or not first else 100.0 * delta / first

    @property
    def cv_pct(self) -> float | None:
        """Coefficient of variation of the runs' median totals, in percent (needs two runs)."""
        present = [t for t in self.totals if t is not None]
        if len(present) < 2 or statistics.fmean(present) == 0:
            return None
        return 100.0 * statistics.stdev(present) / statistics.fmean(present)


@dataclass(frozen=True)
class RunComparison:
    """Several runs' summaries and one :class:`CompareRow` per split any of them measured."""

    runs: tuple[RunSummary, ...]
    rows: tuple[CompareRow, ...]

    @property
    def best_splits(self) -> list[int | None]:
        """Each run's fastest split (by median total); None for a run that measured nothing."""
        return [min(s.rows, key=lambda r: r.total.median).split if s.rows else None for s in self.runs]

    @property
    def cv_pct(self) -> tuple[float | None, float | None]:
        """Median and largest coefficient of variation over the splits every run measured."""
        values = sorted(cv for cv in (r.cv_pct for r in self.rows) if cv is not None)
        return (statistics.median(values), values[-1]) if values else (None, None)


def compare_runs(store: ResultsStore, run_ids: Sequence[str]) -> RunComparison:
    """Summaries of ``run_ids`` (ids, prefixes or 'latest') side by side, split by split."""
    if len(run_ids) < 2:
        raise SplitTracerError(
            "comparing needs at least two runs", hint="Name two or more: splittracer results compare RUN RUN"
        )
    summaries = tuple(run_summary(store, run_id) for run_id in run_ids)
    layers = next((s.layers for s in summaries if s.layers), ())
    by_split = [{row.split: row for row in s.rows if not row.placement} for s in summaries]  # splits only
    splits = sorted(set().union(*by_split))
    rows = tuple(
        CompareRow(k, split_label(k, layers), tuple(found.get(k) for found in by_split)) for k in splits
    )
    return RunComparison(summaries, rows)


def comparison_to_dict(comparison: RunComparison) -> dict[str, Any]:
    """JSON-ready: the runs, then per split each run's median total and the differences."""
    median_cv, max_cv = comparison.cv_pct
    return {
        "runs": [run_to_dict(s.run) for s in comparison.runs],
        "best_splits": comparison.best_splits,
        "median_cv_pct": median_cv,
        "max_cv_pct": max_cv,
        "splits": [
            {
                "split": row.split,
                "after": row.label,
                "total_ms": row.totals,
                "delta_ms": row.delta_ms,
                "delta_pct": row.delta_pct,
                "cv_pct": row.cv_pct,
            }
            for row in comparison.rows
        ],
        "streams": [
            {"run": s.run.id, **row} for s in comparison.runs for row in stream_rows_to_dicts(s.streams)
        ],
    }


def write_comparison_plot(comparison: RunComparison, out_dir: str | Path) -> list[Path]:
    """The overlaid chart as PNG and SVG in ``out_dir``, named after the runs compared."""
    from .figures import ComparedRun, plot_comparison

    if not comparison.rows:
        raise SplitTracerError("nothing to plot: none of the runs has completed, non-warm-up inferences")
    ids = [s.run.id for s in comparison.runs]
    name = "compare-" + ("-".join(ids) if len(ids) <= 3 else f"{ids[0]}-and-{len(ids) - 1}-more")
    runs = [
        ComparedRun(
            s.run.id,
            [None if r is None else r.total.median for r in column],
            [None if r is None else r.total.p25 for r in column],
            [None if r is None else r.total.p75 for r in column],
        )
        for s, column in zip(comparison.runs, zip(*(row.rows for row in comparison.rows)))
    ]
    ticks = [row.label for row in comparison.rows]
    title = f"Median total latency per split — {len(ids)} runs compared"
    return list(plot_comparison(ticks, runs, Path(out_dir) / name, title).paths)
