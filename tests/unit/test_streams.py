"""Streams: frame pacing, the Stream task's checks, and stream results from spans."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

import msgspec
import pytest

from splittracer.builtin import Stream
from splittracer.errors import ConfigError, RunError
from splittracer.metrics.spans import Metric, Span
from splittracer.pacing import (
    DropPolicy,
    HeadQueue,
    PumpResult,
    Ticket,
    arrival_offsets,
    arrival_times,
    pump_closed,
    pump_open,
    schedule,
)
from splittracer.report.streams import stream_rows_to_dicts, summarize_streams


def test_constant_and_poisson_arrivals() -> None:
    assert arrival_offsets(4, 10.0, "constant", 0) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    poisson = arrival_offsets(4000, 100.0, "poisson", 7)
    gaps = [b - a for a, b in itertools.pairwise(poisson)]
    assert sum(gaps) / len(gaps) == pytest.approx(0.01, rel=0.1)
    assert poisson == arrival_offsets(4000, 100.0, "poisson", 7)  # seeded: the same load again
    with pytest.raises(RunError, match="constant or poisson"):
        arrival_offsets(3, 1.0, "bursty", 0)


def test_a_schedule_stops_at_its_count_or_its_duration() -> None:
    assert list(schedule(arrival_times(10.0, "constant", 0), 3, None)) == pytest.approx([0.0, 0.1, 0.2])
    # Arrivals stop at the duration: 0.0 .. 0.4 s at 10 frames/s in half a second.
    assert len(list(schedule(arrival_times(10.0, "constant", 0), None, 0.45))) == 5
    assert list(schedule([0.0, 0.5, 1.0, 2.0], None, 1.5)) == [0.0, 0.5, 1.0]
    assert list(schedule([0.0, 0.5, 1.0], 2, 10.0)) == [0.0, 0.5]


def _frame(work: Callable[[int], None]) -> Callable[[Ticket, HeadQueue], bool]:
    """A frame as the head runs one: wait for the head, leave it, then the rest (``work``)."""

    def run(ticket: Ticket, queue: HeadQueue) -> bool:
        if not queue.take(ticket):
            return False
        queue.head_done()
        try:
            work(ticket.index)
        finally:
            queue.answered()
        return True

    return run


class _AtOnce:
    """Work that takes ``seconds`` a frame and counts how many frames did it at once, at most."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.most, self._inside, self._lock = seconds, 0, 0, threading.Lock()

    def __call__(self, _: int) -> None:
        with self._lock:
            self._inside += 1
            self.most = max(self.most, self._inside)
        time.sleep(self.seconds)
        with self._lock:
            self._inside -= 1


def test_a_closed_loop_keeps_inflight_frames_in_the_system() -> None:
    work = _AtOnce(0.01)
    result = pump_closed(3, _frame(work), count=20)
    assert (result.completed, result.arrived, work.most) == (20, 20, 3)


def test_a_closed_loop_runs_until_its_duration() -> None:
    started = time.perf_counter()
    result = pump_closed(2, _frame(lambda _: time.sleep(0.01)), duration_s=0.3)
    took = time.perf_counter() - started
    # Frames start until 0.3 s have passed; the two in flight then finish (10 ms each).
    assert 0.3 <= took < 0.3 + 1.0 and result.completed == result.arrived >= 2


def test_a_failing_frame_stops_the_stream_and_is_raised() -> None:
    def work(i: int) -> None:
        if i == 2:
            raise ValueError("frame 2")

    with pytest.raises(ValueError, match="frame 2"):
        pump_closed(2, _frame(work), count=50)


def _blocked_head(policy: str) -> tuple[PumpResult, list[int]]:
    """Five frames at once on a head that holds the first for 0.2 s, at most two waiting."""
    release = threading.Event()
    ran: list[int] = []

    def run(ticket: Ticket, queue: HeadQueue) -> bool:
        if not queue.take(ticket):
            return False
        ran.append(ticket.index)
        if ticket.index == 0:
            release.wait(5)
        queue.head_done()
        queue.answered()
        return True

    timer = threading.Timer(0.2, release.set)
    timer.start()
    result = pump_open([0.0, 0.01, 0.02, 0.03, 0.04], run, DropPolicy(max_queue=2, policy=policy))
    return result, ran


def test_a_full_queue_drops_the_arriving_frame_newest() -> None:
    result, ran = _blocked_head("newest")
    # Frame 0 holds the head; 1 and 2 fill the queue; 3 and 4 find it full.
    assert (result.arrived, result.completed, result.dropped, ran) == (5, 3, 2, [0, 1, 2])


def test_a_full_queue_drops_the_oldest_waiting_frame_oldest() -> None:
    result, ran = _blocked_head("oldest")
    # 3 pushes out 1, 4 pushes out 2: the freshest frames are served.
    assert (result.arrived, result.completed, result.dropped, ran) == (5, 3, 2, [0, 3, 4])


def test_frames_past_the_head_are_bounded_and_wait_at_the_head() -> None:
    queue, work = HeadQueue(beyond=2), _AtOnce(0.02)

    def run(index: int) -> None:
        ticket = queue.arrive(index)
        assert ticket is not None and queue.take(ticket)
        queue.head_done()
        work(index)
        queue.answered()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert work.most == 2


def test_an_open_loop_keeps_max_inflight_frames_past_the_head() -> None:
    work = _AtOnce(0.02)
    result = pump_open([0.0] * 6, _frame(work), DropPolicy(max_queue=10, max_inflight=2))
    assert (result.completed, result.dropped, work.most) == (6, 0, 2)


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({"count": 0}, "count", "at least 1"),
        ({"rate": 5.0, "inflight": 4}, "inflight", "not both"),
        ({"arrivals": "bursty"}, "arrivals", "constant, poisson, trace"),
        ({"arrivals": "poisson"}, "arrivals", "needs rate"),
        ({"deadline": "soon"}, "deadline", "duration"),
        ({"rates": [5.0, 0.0]}, "rates", "positive rates"),
        ({"rates": [5.0], "inflight": 2}, "inflight", "not both"),
        ({"count": 10, "duration": "5s"}, "duration", "not both"),
        ({"duration": "0s"}, "duration", "above 0"),
        ({"arrivals": "trace"}, "trace", "needs trace"),
        ({"trace": [0.0, 0.1]}, "trace", "only with arrivals: trace"),
        ({"arrivals": "trace", "trace": [0.0, 0.2, 0.1]}, "trace", r"trace\[2\]: 0.1 s comes before 0.2 s"),
        ({"arrivals": "trace", "trace": [-1.0]}, "trace", "no time"),
        ({"arrivals": "trace", "trace": [0.0], "rate": 5.0}, "rate", "no rate beside"),
        ({"drop": {"max_queue": 4}}, "drop", "closed loop"),
        ({"rate": 5.0, "drop": {"max_queue": 0}}, "drop.max_queue", "at least 1"),
        ({"rate": 5.0, "drop": {"max_queue": 4, "policy": "random"}}, "drop.policy", "newest or oldest"),
        ({"rate": 5.0, "drop": {"size": 4}}, "drop.size", "no key"),
        ({"rate": 5.0, "drop": {"max_inflight": 0}}, "drop.max_inflight", "at least 1"),
        ({"split": "best"}, "split", "neither a split point nor auto"),
        ({"split": 5, "splits": [0, 5]}, "splits", "not split and splits"),
        ({"splits": [0, 5], "cuts": [3]}, "cuts", "not splits and cuts"),
        ({"split": 5, "bandwidth": "lte"}, "bandwidth", "only to plan split: auto"),
        ({"split": "auto", "bandwidth": "fast"}, "bandwidth", "rate"),
    ],
)
def test_a_stream_refuses_what_cannot_run(params: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        Stream(next=["edge"], **params)  # type: ignore[arg-type]
    assert caught.value.key == field


def _span(kind: str, who: str, stage: int, inference: int, start_ms: float, end_ms: float, **attrs) -> Span:
    return Span(
        run_id="r",
        participant=who,
        stage=stage,
        kind=kind,
        inference=inference,
        split=13,
        start_ns=int(start_ms * 1e6),
        end_ns=int(end_ms * 1e6),
        bytes_wire=attrs.pop("bytes_wire", 0),
        attrs=attrs,
    )


def _frames(client: str, first: int, ends_ms: list[float], **attrs) -> list[Span]:
    """Frames of 100 ms each, ending at ``ends_ms``: 20 ms head, 50 kB over the link, 30 ms tail."""
    spans = []
    for i, end in enumerate(ends_ms):
        n, start = first + i, end - 100
        stream = {"stream": 0, "loop": "closed", "inflight": 2, "offered_fps": 0.0, **attrs}
        spans += [
            _span("inference", client, 0, n, start, end, **stream),
            _span("queue", client, 0, n, start, start + 1),
            _span("compute", client, 0, n, start + 1, start + 21),
            _span(
                "transfer",
                "edge",
                0,
                n,
                start + 21,
                start + 61,
                bytes_wire=50_000,
                **{"from": client, "to": "edge"},
            ),
            _span("queue", "edge", 1, n, start + 61, start + 65),
            _span("compute", "edge", 1, n, start + 65, start + 95),
        ]
    return spans


def test_stream_rows_from_spans() -> None:
    spans = _frames("phone", 0, [100, 150, 200, 250, 300], deadline_ms=99.5)
    metrics = [
        Metric(
            run_id="r", participant="phone", name="stream_dropped", value=2, time_ns=0, attrs={"stream": 0}
        )
    ]
    [row] = summarize_streams(spans, metrics, {"phone": 10e6})
    assert (row.client, row.frames, row.inflight, row.dropped) == ("phone", 5, 2, 2)
    assert row.achieved_fps == pytest.approx(4 / 0.2)  # four completions in 200 ms after the first
    assert row.stage_ms == pytest.approx({"0:phone": 20.0, "1:edge": 30.0, "phone->edge": 40.0})
    assert row.bound_fps == pytest.approx(25.0) and row.ratio == pytest.approx(0.8)
    assert row.latency_ms["p50"] == pytest.approx(100.0) and row.deadline_misses == 5
    assert row.queue_ms == pytest.approx({0: 1.0, 1: 4.0})
    assert stream_rows_to_dicts([row])[0]["queue_ms"] == pytest.approx({"0": 1.0, "1": 4.0})


def test_clients_of_a_stream_add_up_and_share_the_server() -> None:
    spans = _frames("cam-0", 0, [100, 200, 300]) + _frames("cam-1", 1_000_000, [150, 250, 350])
    rows = summarize_streams(spans, (), {})
    assert [r.client for r in rows] == ["cam-0", "cam-1", "*"]
    total = rows[-1]
    assert total.frames == 6 and total.achieved_fps == pytest.approx(5 / 0.25)
    # Each camera alone could do 1/30 ms; the edge they share caps both at 1/30 ms.
    assert rows[0].bound_fps == pytest.approx(1000 / 30) and total.bound_fps == pytest.approx(1000 / 30)


def test_a_server_computing_two_frames_at_once_counts_its_time_once() -> None:
    spans = _frames("cam-0", 0, [100, 200]) + _frames("cam-1", 1_000_000, [100, 200])  # in lockstep
    total = summarize_streams(spans, (), {})[-1]
    assert total.bound_fps == pytest.approx(2 * 1000 / 30)  # 30 ms of the edge served two frames


def test_a_shared_servers_cap_is_what_its_busy_time_allows_so_no_client_mix_exceeds_it() -> None:
    """Two workers on a shared edge: frames alone take 30 ms, a pair side by side 70 ms each.

    Between the first completion (41 ms) and the last (441 ms) the edge was busy 70 + 30 + 30
    + 30 = 160 ms for the five completions after the first: 31.25 frames/s, and achieved over
    that is how busy it was (0.4). A median of its times (30 ms) scaled by the share of overlap
    (190 / 260) said 22 ms a frame, more than the edge can serve; each camera alone is bounded
    by its own median (30 ms), so the cap binds."""
    spans = []
    edge_work = [("cam-0", 0, 30), ("cam-0", 100, 70), ("cam-1", 100, 70), ("cam-1", 200, 30)]
    edge_work += [("cam-0", 300, 30), ("cam-1", 400, 30)]  # (client, start ms, edge compute ms)
    for n, (client, start, ms) in enumerate(edge_work):
        first = 0 if client == "cam-0" else 1_000_000
        end = start + 10 + ms
        stream = {"stream": 0, "loop": "closed", "inflight": 2, "offered_fps": 0.0}
        spans += [
            _span("inference", client, 0, first + n, start, end + 1, **stream),
            _span("compute", client, 0, first + n, start, start + 10),
            _span("compute", "edge", 1, first + n, start + 10, end),
        ]
    total = summarize_streams(spans, (), {})[-1]
    assert total.bound_fps == pytest.approx(5 / 0.160)
    assert total.achieved_fps / total.bound_fps == pytest.approx(160 / 400)


def test_a_stream_run_in_the_summary_json_table_and_export(tmp_path, capsys) -> None:
    import csv

    from splittracer.cli.compare import print_comparison
    from splittracer.cli.results import print_run_summary
    from splittracer.metrics import ParticipantRecord, ResultsStore, RunRecord
    from splittracer.report.compare import compare_runs, comparison_to_dict
    from splittracer.report.html import write_html_report
    from splittracer.report.runs import run_summary, summary_to_dict
    from splittracer.report.streams import export_run_streams, streams_path

    with ResultsStore(tmp_path / "results.sqlite") as store:
        record = RunRecord(participants={"phone": ParticipantRecord(uplink_bps=10e6)})
        run_id = store.create_run("pipe", "name: pipe\n", record)
        frames = _frames("phone", 0, [100, 150, 200])
        store.append_spans(run_id, [msgspec.structs.replace(s, run_id=run_id) for s in frames])
        store.finish_run(run_id, "succeeded")
        summary = run_summary(store, run_id)
        [row] = summary.streams
        assert row.bound_fps == pytest.approx(25.0)  # the 10 Mbit/s link from the record: 40 ms a frame
        assert summary_to_dict(summary)["streams"][0]["achieved_fps"] == pytest.approx(20.0)
        print_run_summary(summary)
        assert "Streams" in capsys.readouterr().out
        written = export_run_streams(store, run_id, streams_path(tmp_path / "run.csv"), "csv")
        comparison = compare_runs(store, [run_id, run_id])
        assert [row["run"] for row in comparison_to_dict(comparison)["streams"]] == [run_id, run_id]
        print_comparison(comparison)
        assert "Streams per run" in capsys.readouterr().out
        report = write_html_report(store, run_id, tmp_path / "report" / "run.html")
    page = report.html.read_text()
    assert 'id="streams"' in page and "Latency CDF" in page
    assert {p.name for p in report.figures} >= {"run-latency-cdf.svg", "run-latency-cdf.png"}
    assert written == tmp_path / "run-streams.csv"
    with written.open() as handle:
        [exported] = list(csv.DictReader(handle))
    assert float(exported["latency_ms_p95"]) == pytest.approx(100.0) and exported["client"] == "phone"


def test_stream_charts(tmp_path) -> None:
    from splittracer.report.stream_plots import plot_latency_cdf, plot_throughput_vs_offered

    spans = _frames("phone", 0, [100, 150, 200], loop="poisson", offered_fps=8.0)
    spans += [msgspec.structs.replace(s, inference=s.inference + 10) for s in _frames("phone", 0, [400, 480])]
    rows = summarize_streams(
        [
            msgspec.structs.replace(s, attrs={**s.attrs, "stream": 10}) if s.inference >= 10 else s
            for s in spans
        ]
    )
    assert [r.offered_fps for r in rows] == [8.0, 0.0] and rows[0].samples_ms == (100.0, 100.0, 100.0)
    written = plot_latency_cdf(rows, tmp_path / "run-latency-cdf", title="t")
    written += plot_throughput_vs_offered(rows, tmp_path / "run-throughput", title="t")
    assert sorted(p.name for p in written) == [
        "run-latency-cdf.png",
        "run-latency-cdf.svg",
        "run-throughput.png",
        "run-throughput.svg",
    ]
    assert all(p.stat().st_size > 1000 for p in written)
