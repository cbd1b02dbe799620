"""Streams over time and the latency-throughput trade-off: windows and the Pareto front."""

from __future__ import annotations

import csv
import math

import msgspec
import pytest

from splittracer.report.stream_series import choose_window, pareto_front, windowed, windows_to_dict
from splittracer.report.streams import pareto_keys, stream_rows_to_dicts, summarize_streams, tradeoff_rows

from .test_streams import _frames


def test_pareto_front_keeps_what_nothing_beats_on_both() -> None:
    # (frames/s, p95 ms): the third is beaten by the first (fewer frames/s, more latency).
    assert pareto_front([(10.0, 50.0), (20.0, 80.0), (8.0, 60.0), (5.0, 40.0)]) == [True, True, False, True]


def test_pareto_front_ties_single_points_and_nans() -> None:
    assert pareto_front([(10.0, 50.0)]) == [True]
    assert pareto_front([]) == []
    assert pareto_front([(10.0, 50.0), (10.0, 50.0)]) == [True, True]  # equal points: neither dominates
    # Equal throughput, lower latency wins; equal latency, higher throughput wins.
    assert pareto_front([(10.0, 50.0), (10.0, 40.0)]) == [False, True]
    assert pareto_front([(10.0, 50.0), (12.0, 50.0)]) == [False, True]
    assert pareto_front([(10.0, math.nan), (1.0, 90.0)]) == [False, True]


def test_the_window_adapts_to_the_stream() -> None:
    assert choose_window(60.0, 6000) == 2.0  # 20 windows of 3 s, rounded down to a round step
    assert choose_window(2.0, 10) == 0.5  # 3 frames a window: 0.6 s, rounded down
    assert choose_window(0.001, 2) == 0.01  # nothing shorter than the smallest step


def test_windows_tile_the_stream_and_count_every_frame() -> None:
    # 10 frames/s for 2 s, then 20 frames/s for 1 s; latency 10 ms then 30 ms.
    frames = [(0.1 * i, 10.0) for i in range(1, 21)] + [(2 + 0.05 * i, 30.0) for i in range(1, 21)]
    windows = windowed(frames, window_s=1.0)
    assert windows.window_s == pytest.approx(1.0) and windows.end_s == pytest.approx((1.0, 2.0, 3.0))
    assert windows.frames == (10, 10, 20) and windows.fps == pytest.approx((10.0, 10.0, 20.0))
    assert windows.p50_ms == pytest.approx((10.0, 10.0, 30.0))
    # 0.7 s wanted over 3 s: four windows of 0.75 s, not a partial fifth.
    stretched = windowed(frames, window_s=0.7)
    assert len(stretched.end_s) == 4 and stretched.window_s == pytest.approx(0.75)
    assert sum(stretched.frames) == len(frames)


def test_an_empty_window_has_no_latency_and_one_instant_no_rate() -> None:
    windows = windowed([(0.5, 10.0), (2.0, 20.0)], window_s=0.5)
    assert windows.frames == (1, 0, 0, 1) and math.isnan(windows.p95_ms[1])
    assert windows_to_dict(windows)["p95_ms"][1] is None
    single = windowed([(0.0, 7.0)])
    assert (single.frames, single.fps, single.p50_ms) == ((1,), (0.0,), (7.0,))
    assert windowed([]).end_s == ()


def test_stream_rows_carry_completions_and_their_front() -> None:
    fast = _frames("phone", 0, [100, 150, 200, 250])  # 20 frames/s, 100 ms each
    slow = [
        msgspec.structs.replace(s, inference=s.inference + 10, split=5, attrs={**s.attrs, "stream": 1})
        for s in _frames("phone", 0, [400, 500, 600])
    ]  # 10 frames/s at the same latency: dominated
    rows = summarize_streams(fast + slow)
    assert [t for t, _ in rows[0].completions] == pytest.approx([0.1, 0.15, 0.2, 0.25])
    assert {ms for _, ms in rows[0].completions} == {100.0}
    assert pareto_keys(rows) == {("phone", 0)}
    assert rows[0].other_ms == pytest.approx(5.0)  # 100 ms less 1 + 20 + 40 + 4 + 30 ms of spans
    dicts = stream_rows_to_dicts(rows)
    assert [d["pareto_p95"] for d in dicts] == [True, False]
    assert sum(dicts[0]["over_time"]["frames"]) == 4
    assert "over_time" not in stream_rows_to_dicts(rows, over_time=False)[0]


def test_a_stream_of_several_clients_is_one_point() -> None:
    spans = _frames("cam-0", 0, [100, 200, 300]) + _frames("cam-1", 1_000_000, [150, 250, 350])
    rows = summarize_streams(spans)
    assert [r.client for r in tradeoff_rows(rows)] == ["*"]
    assert [d["pareto_p95"] for d in stream_rows_to_dicts(rows)] == [None, None, True]


def test_the_report_json_and_table_show_time_and_front(tmp_path, capsys) -> None:
    from splittracer.cli.results import print_run_summary
    from splittracer.metrics import ParticipantRecord, ResultsStore, RunRecord
    from splittracer.report.html import write_html_report
    from splittracer.report.runs import run_summary, summary_to_dict, write_plots
    from splittracer.report.streams import export_run_stream_windows, windows_path

    fast = _frames("phone", 0, [100, 150, 200, 250])
    slow = [
        msgspec.structs.replace(s, inference=s.inference + 10, split=5, attrs={**s.attrs, "stream": 1})
        for s in _frames("phone", 0, [400, 500, 600])
    ]
    with ResultsStore(tmp_path / "results.sqlite") as store:
        run_id = store.create_run(
            "pipe", "name: pipe\n", RunRecord(participants={"phone": ParticipantRecord()})
        )
        store.append_spans(run_id, [msgspec.structs.replace(s, run_id=run_id) for s in fast + slow])
        store.finish_run(run_id, "succeeded")
        summary = run_summary(store, run_id)
        streams = summary_to_dict(summary)["streams"]
        assert [s["pareto_p95"] for s in streams] == [True, False] and "fps" in streams[0]["over_time"]
        print_run_summary(summary)
        assert (
            "Pareto front, frames/s against p95 latency (1 of 2 streams): split 13" in capsys.readouterr().out
        )
        windows = export_run_stream_windows(store, run_id, windows_path(tmp_path / "run.csv"), "csv")
        report = write_html_report(store, run_id, tmp_path / "report" / "run.html")
        plots = {p.name.removeprefix(run_id) for p in write_plots(store, run_id, tmp_path)}
    page = report.html.read_text()
    assert 'data-figure="over-time"' in page and 'data-figure="tradeoff"' in page and "dominated" in page
    assert {p.name for p in report.figures} >= {"run-over-time.svg", "run-tradeoff.png"}
    assert {"-over-time.png", "-tradeoff.svg"} <= plots
    assert windows == tmp_path / "run-stream-windows.csv"
    with windows.open() as handle:
        exported = list(csv.DictReader(handle))
    assert {row["stream"] for row in exported} == {"0", "1"}
    assert sum(int(row["frames"]) for row in exported if row["stream"] == "0") == 4
