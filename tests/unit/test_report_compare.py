"""Runs side by side: ``compare_runs`` and ``splittracer results compare``."""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.cli import main
from splittracer.errors import SplitTracerError
from splittracer.metrics import ResultsStore, Span
from splittracer.report.compare import compare_runs, comparison_to_dict, write_comparison_plot
from splittracer.workspace import init_workspace

from .report_store import MS, inference_spans, metadata


def sweep_run(store: ResultsStore, scale: float, splits: tuple[int, ...] = (1, 2, 3)) -> str:
    """A run whose inferences at each split take ``scale`` times the usual time."""
    run_id = store.create_run("neurosurgeon", "name: neurosurgeon\n", metadata())
    spans: list[Span] = []
    start, index = 1_000 * MS, 0
    for split in splits:
        for jitter in (1.0, 1.1, 0.9):
            spans += inference_spans(
                run_id, split, index, start, jitter * scale, warmup=False, single_layers=True
            )
            start, index = start + 100 * MS, index + 1
    store.append_spans(run_id, spans)
    store.finish_run(run_id, "succeeded")
    return run_id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "results" / "splittracer.sqlite") as opened:
        yield opened


def test_identical_runs_differ_by_nothing(store: ResultsStore) -> None:
    first, second = sweep_run(store, 1.0), sweep_run(store, 1.0)
    comparison = compare_runs(store, [first, second])
    assert [r.split for r in comparison.rows] == [1, 2, 3]
    assert [r.label for r in comparison.rows] == ["conv1", "relu1", "pool1"]
    assert all(r.delta_ms == 0 and r.cv_pct == 0 for r in comparison.rows)
    assert comparison.best_splits == [3, 3] and comparison.cv_pct == (0.0, 0.0)


def test_difference_and_coefficient_of_variation(store: ResultsStore) -> None:
    runs = [sweep_run(store, 1.0), sweep_run(store, 1.1), sweep_run(store, 1.2)]
    comparison = compare_runs(store, runs)
    row = comparison.rows[0]
    a, b, c = row.totals
    assert a is not None and b is not None and c is not None and a < b < c
    assert row.delta_ms == pytest.approx(c - a)
    assert row.delta_pct == pytest.approx(100 * (c - a) / a)
    assert row.cv_pct == pytest.approx(100 * statistics.stdev([a, b, c]) / statistics.fmean([a, b, c]))
    median_cv, max_cv = comparison.cv_pct
    assert median_cv is not None and max_cv is not None and 0 < median_cv <= max_cv


def test_split_missing_from_a_run_has_no_difference(store: ResultsStore) -> None:
    comparison = compare_runs(store, [sweep_run(store, 1.0, (1, 2)), sweep_run(store, 1.0, (2, 3))])
    by_split = {r.split: r for r in comparison.rows}
    assert by_split[1].totals[1] is None and by_split[1].delta_ms is None and by_split[1].cv_pct is None
    assert by_split[2].delta_ms == 0
    data = comparison_to_dict(comparison)
    assert [s["split"] for s in data["splits"]] == [1, 2, 3] and data["splits"][0]["total_ms"][1] is None


def test_one_run_is_not_a_comparison(store: ResultsStore) -> None:
    with pytest.raises(SplitTracerError, match="at least two runs"):
        compare_runs(store, [sweep_run(store, 1.0)])


def test_overlaid_chart_is_written_as_png_and_svg(store: ResultsStore, tmp_path: Path) -> None:
    first, second = sweep_run(store, 1.0), sweep_run(store, 1.3, (1, 2))
    written = write_comparison_plot(compare_runs(store, [first, second]), tmp_path)
    assert [p.name for p in written] == [f"compare-{first}-{second}.png", f"compare-{first}-{second}.svg"]
    svg = written[1].read_text(encoding="utf-8")
    assert first in svg and second in svg and "relu1" in svg


def test_results_compare_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = init_workspace(tmp_path / "ws")
    with ResultsStore(ws.results_db) as opened:
        first, second = sweep_run(opened, 1.0), sweep_run(opened, 1.1)
    assert main(["results", "compare", first, second, "--workspace", str(ws.root)]) == 0
    out = capsys.readouterr().out
    assert "Median total per split point" in out and "CV %" in out and "pool1" in out
    assert "Fastest split per run" in out
    assert (ws.results_dir / f"compare-{first}-{second}.png").is_file()
    assert main(["results", "compare", first, "latest", "--json", "--workspace", str(ws.root)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in data["runs"]] == [first, second] and len(data["charts"]) == 2
    assert data["splits"][0]["delta_pct"] > 0
    assert main(["results", "compare", first, "--workspace", str(ws.root)]) == 2
    assert "at least two runs" in capsys.readouterr().err
