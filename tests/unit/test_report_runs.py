"""Run listings, summaries and figures, read back from a real results store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.errors import SplitTracerError
from splittracer.metrics import ResultsStore, RunRecord, Span
from splittracer.metrics.store import INTERRUPTED_BY_USER
from splittracer.report.runs import (
    format_duration,
    list_runs,
    not_counted_lines,
    run_summary,
    split_label,
    summary_to_dict,
    write_plots,
)

MS = 1_000_000
LAYERS = ["conv1", "relu1", "pool1"]


def span(run_id: str, kind: str, stage: int, split: int, i: int, ms: float, **extra: object) -> Span:
    start = 1_000 * MS + i * 10_000 * MS
    return Span(
        run_id=run_id,
        participant="phone" if stage == 0 else "cloud",
        stage=stage,
        kind=kind,
        inference=i,
        split=split,
        start_ns=start,
        end_ns=start + round(ms * MS),
        **extra,  # type: ignore[arg-type]
    )


def inference(
    run_id: str,
    split: int,
    i: int,
    times: tuple[float, float, float, float, float],
    nbytes: int,
    warmup: bool = False,
) -> list[Span]:
    """Spans of one inference: head, forward transfer, tail, reply transfer, total."""
    head, forward, tail, reply, total = times
    warm: dict[str, object] = {"warmup": True} if warmup else {}
    fwd, back = {**warm, "direction": "forward"}, {**warm, "direction": "reply"}
    return [
        span(run_id, "compute", 0, split, i, head, start_layer=0, end_layer=split, attrs=warm),
        span(run_id, "serialize", 0, split, i, 0.2, attrs=warm),
        span(run_id, "transfer", 0, split, i, forward, bytes_raw=nbytes, bytes_wire=nbytes // 2, attrs=fwd),
        span(run_id, "compute", 1, split, i, tail, start_layer=split, end_layer=3, attrs=warm),
        span(run_id, "transfer", 1, split, i, reply, bytes_raw=40, bytes_wire=40, attrs=back),
        span(run_id, "inference", 0, split, i, total, attrs=warm),
    ]


def sweep(run_id: str) -> list[Span]:
    """Two splits, three inferences each, the first of each a warm-up."""
    return [
        span(run_id, "compute", 0, -1, -1, 500.0),  # model load, tied to no inference
        *inference(run_id, 1, 0, (100, 100, 100, 100, 1000), 8000, warmup=True),
        *inference(run_id, 1, 1, (1, 10, 5, 1, 20), 8000),
        *inference(run_id, 1, 2, (3, 20, 7, 3, 40), 8000),
        *inference(run_id, 2, 3, (100, 100, 100, 100, 1000), 2000, warmup=True),
        *inference(run_id, 2, 4, (2, 4, 3, 1, 12), 2000),
        *inference(run_id, 2, 5, (2, 6, 3, 1, 14), 2000),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "results" / "splittracer.sqlite") as opened:
        yield opened


@pytest.fixture
def run_id(store: ResultsStore) -> str:
    run_id = store.create_run("neurosurgeon", "name: neurosurgeon\n", RunRecord(layers=tuple(LAYERS)))
    store.append_spans(run_id, sweep(run_id))
    store.finish_run(run_id, "succeeded")
    return run_id


def test_summary_numbers_per_split(store: ResultsStore, run_id: str) -> None:
    summary = run_summary(store, run_id[:10])
    assert summary.run.id == run_id and summary.run.status == "succeeded"
    assert summary.layers == tuple(LAYERS)
    assert summary.labels == ["conv1", "relu1"]
    one, two = summary.rows
    assert (one.split, one.count, two.split, two.count) == (1, 2, 2, 2)
    assert (one.head.median, one.transfer.median, one.tail.median) == (2.0, 17.0, 6.0)
    assert (one.total.median, one.total.p25, one.total.p75) == (30.0, 25.0, 35.0)
    assert one.other_ms == pytest.approx(30 - (2 + 17 + 6))
    assert (two.head.median, two.transfer.median, two.tail.median, two.total.median) == (2.0, 6.0, 3.0, 13.0)


def test_bytes_are_the_forward_transfers_only(store: ResultsStore, run_id: str) -> None:
    one, two = run_summary(store, "latest").rows
    assert (one.bytes_raw, one.bytes_wire) == (8000, 4000)
    assert (two.bytes_raw, two.bytes_wire) == (2000, 1000)


def test_summary_dict_labels_every_split(store: ResultsStore, run_id: str) -> None:
    data = summary_to_dict(run_summary(store, run_id))
    assert data["run"]["id"] == run_id and data["run"]["metadata"]["layers"] == LAYERS
    assert data["run"]["duration_s"] >= 0
    assert [(s["split"], s["after"], s["bytes_raw"]) for s in data["splits"]] == [
        (1, "conv1", 8000),
        (2, "relu1", 2000),
    ]


def test_failed_run_shows_what_it_completed(store: ResultsStore) -> None:
    run_id = store.create_run("neurosurgeon", "")
    spans = inference(run_id, 1, 0, (1, 2, 3, 1, 8), 100)
    spans.append(span(run_id, "compute", 0, 2, 1, 5.0))  # cut short: no total
    store.append_spans(run_id, spans)
    store.finish_run(run_id, "failed", "cloud died")
    summary = run_summary(store, run_id)
    assert summary.run.error == "cloud died"
    assert [(r.split, r.count) for r in summary.rows] == [(1, 1)]
    assert summary.labels == ["1"]  # no layer names recorded


def test_list_runs_counts_measured_inferences(store: ResultsStore, run_id: str) -> None:
    other = store.create_run("other", "")
    listings = list_runs(store)
    assert [(x.run.id, x.inferences) for x in listings] == [(run_id, 4), (other, 0)]
    assert listings[0].duration_s is not None and listings[1].duration_s is None
    assert [x.run.id for x in list_runs(store, "other")] == [other]


def test_write_plots_names_files_after_the_run(store: ResultsStore, run_id: str, tmp_path: Path) -> None:
    out = tmp_path / "figures"
    written = write_plots(store, "latest", out)
    names = [f"{run_id}-splits.png", f"{run_id}-splits.svg", f"{run_id}-bytes.png", f"{run_id}-bytes.svg"]
    assert written == [out / name for name in names]
    assert all(path.stat().st_size > 1000 for path in written)
    assert "conv1" in (out / f"{run_id}-splits.svg").read_text(encoding="utf-8")


def test_write_plots_of_an_empty_run_says_so(store: ResultsStore, tmp_path: Path) -> None:
    run_id = store.create_run("neurosurgeon", "")
    with pytest.raises(SplitTracerError, match="nothing to plot"):
        write_plots(store, run_id, tmp_path)


def test_unknown_run_is_a_splittracer_error(store: ResultsStore, run_id: str) -> None:
    with pytest.raises(SplitTracerError, match="no run 'nosuchrun'"):
        run_summary(store, "nosuchrun")


def test_split_label() -> None:
    assert [split_label(k, LAYERS) for k in (0, 1, 3, 4)] == ["input", "conv1", "pool1", "4"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (0.25, "250 ms"), (12.34, "12.3 s"), (245.0, "4m 05s"), (7380.0, "2h 03m")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_plans_a_run_made_are_in_its_summary(store: ResultsStore) -> None:
    from splittracer.metrics.spans import Metric

    run_id = store.create_run("adaptive", "")

    def plan(at: int, cut: int, reason: str, bps: float, time_ns: int) -> Metric:
        attrs: dict[str, str | int | float | bool] = {
            "inference": at,
            "cuts": str(cut),
            "reason": reason,
            "bandwidth_bps": bps,
            "predicted_ms": 80.0,
        }
        return Metric(
            run_id=run_id, participant="phone", name="split_plan", value=cut, time_ns=time_ns, attrs=attrs
        )

    store.append_metrics(run_id, [plan(5, 21, "bandwidth", 8.0e6, 2), plan(0, 13, "start", 18.88e6, 1)])
    plans = run_summary(store, run_id).decisions
    assert [(p.inference, p.cuts, p.reason, p.bandwidth_bps) for p in plans] == [
        (0, "13", "start", 18.88e6),
        (5, "21", "bandwidth", 8.0e6),
    ]
    assert summary_to_dict(run_summary(store, run_id))["plans"][1]["cuts"] == "21"


def test_interrupted_and_failed_inferences_are_listed_not_counted(store: ResultsStore) -> None:
    run_id = store.create_run("neurosurgeon", "", RunRecord(layers=tuple(LAYERS)))
    spans = [
        *inference(run_id, 1, 0, (1, 2, 3, 1, 8), 100),
        span(run_id, "inference", 0, 1, 1, 5.0, attrs={"error": "ValueError"}),  # failed, the run went on
        *inference(run_id, 2, 2, (1, 2, 3, 1, 9), 100),
        span(run_id, "compute", 0, 2, 3, 1.0),
        span(run_id, "inference", 0, 2, 3, 900.0, attrs={"error": "RunError"}),  # in flight at Ctrl-C
    ]
    store.append_spans(run_id, spans)
    store.finish_run(run_id, "interrupted", INTERRUPTED_BY_USER)
    summary = run_summary(store, run_id)
    assert [(r.split, r.count) for r in summary.rows] == [(1, 1), (2, 1)]
    assert [(n.inference, n.outcome) for n in summary.not_counted] == [(1, "failed"), (3, "interrupted")]
    assert (
        "ValueError" in summary.not_counted[0].why and "interrupted by the user" in summary.not_counted[1].why
    )
    data = summary_to_dict(summary)
    assert [s["count"] for s in data["splits"]] == [1, 1]
    assert [(n["split"], n["inference"], n["outcome"]) for n in data["not_counted"]] == [
        (1, 1, "failed"),
        (2, 3, "interrupted"),
    ]
    (listing,) = list_runs(store)
    assert listing.inferences == 2
    lines = not_counted_lines(summary.not_counted)
    assert lines[0].startswith("Not counted: 2 inferences") and "#3 at split 2" in lines[2]


def test_a_running_run_has_its_last_inference_in_flight(store: ResultsStore) -> None:
    run_id = store.create_run("neurosurgeon", "")
    store.append_spans(
        run_id, [*inference(run_id, 1, 0, (1, 2, 3, 1, 8), 100), span(run_id, "compute", 0, 1, 1, 1.0)]
    )
    (left,) = run_summary(store, run_id).not_counted
    assert (left.inference, left.outcome) == (1, "running")
