"""The results store: runs, spans as they arrive, lookups and errors."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.errors import RunError, SplitTracerError
from splittracer.metrics import (
    SCHEMA_VERSION,
    ControllerHost,
    Metric,
    ParticipantRecord,
    ResultsStore,
    RunRecord,
    Span,
)


def make_span(run_id: str, inference: int = 0, kind: str = "compute") -> Span:
    return Span(
        run_id=run_id,
        participant="CLIENT1",
        stage=0,
        kind=kind,
        inference=inference,
        split=2,
        start_layer=1,
        end_layer=2,
        start_ns=10,
        end_ns=20,
        bytes_raw=5,
        attrs={"warmup": inference == 0, "codec": "raw"},
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "results" / "runs.sqlite") as opened:
        yield opened


def test_create_run_records_manifest_and_metadata(store: ResultsStore) -> None:
    record = RunRecord(controller=ControllerHost(torch="2.4"), layers=("conv1", "fc"))
    run_id = store.create_run("neurosurgeon", "experiment: neurosurgeon\n", record)
    info = store.get_run(run_id)
    assert (info.experiment, info.status, info.ended_at, info.error) == (
        "neurosurgeon",
        "running",
        None,
        None,
    )
    assert info.manifest == "experiment: neurosurgeon\n"
    assert info.record == record and info.record.controller.torch == "2.4"
    assert len(run_id) == len("20261126-121530-ab12")
    assert run_id[8] == "-" and run_id[:8].isdigit()


def test_store_uses_wal_and_records_schema_version(store: ResultsStore) -> None:
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == (SCHEMA_VERSION)


def test_appended_spans_are_visible_to_another_connection_at_once(
    store: ResultsStore,
) -> None:
    run_id = store.create_run("e", "")
    store.append_spans(run_id, [make_span(run_id, 0), make_span(run_id, 1)])
    # A second store on the same file (as a report in another process would be)
    # sees the rows while the run is still going and the writer is still open.
    with ResultsStore(store.path) as reader:
        assert [s.inference for s in reader.spans(run_id)] == [0, 1]
    raw = sqlite3.connect(store.path)
    try:
        assert raw.execute("SELECT COUNT(*) FROM spans").fetchone()[0] == 2
    finally:
        raw.close()


def test_spans_round_trip_and_filter_by_kind(store: ResultsStore) -> None:
    run_id = store.create_run("e", "")
    spans = [make_span(run_id, 0), make_span(run_id, 1, "transfer"), make_span(run_id, 2)]
    store.append_spans(run_id, spans)
    assert store.spans(run_id) == spans
    assert store.spans(run_id, kind="transfer") == [spans[1]]
    assert type(store.spans(run_id)[0].attrs["warmup"]) is bool


def test_metrics_round_trip(store: ResultsStore) -> None:
    run_id = store.create_run("e", "")
    metrics = [Metric(run_id=run_id, participant="P", name="joules", value=2.5, time_ns=3)]
    store.append_metrics(run_id, metrics)
    assert store.metrics(run_id) == metrics


def test_finish_run(store: ResultsStore) -> None:
    ok, bad = store.create_run("e", ""), store.create_run("e", "")
    store.finish_run(ok, "succeeded")
    store.finish_run(bad, "failed", error="EDGE1 died")
    assert store.get_run(ok).status == "succeeded"
    failed = store.get_run(bad)
    assert (failed.status, failed.error) == ("failed", "EDGE1 died")
    assert failed.ended_at is not None
    with pytest.raises(RunError, match="no such run"):
        store.finish_run("nope", "failed")


def test_list_runs_by_experiment_oldest_first(store: ResultsStore) -> None:
    first = store.create_run("a", "")
    second = store.create_run("b", "")
    third = store.create_run("a", "")
    assert [r.id for r in store.list_runs()] == [first, second, third]
    assert {r.id for r in store.list_runs("a")} == {first, third}


def test_get_run_by_full_id_and_latest(store: ResultsStore) -> None:
    ids = [store.create_run("e", "") for _ in range(5)]
    # Runs made within one second differ only in a random tail: 'latest'
    # must still be the one started last.
    assert store.get_run("latest").id == ids[-1]
    assert [store.get_run(run_id).id for run_id in ids] == ids
    assert [r.id for r in store.list_runs()] == ids
    store.append_spans(ids[-1], [make_span(ids[-1])])
    assert len(store.spans("latest")) == 1


def test_prefix_lookup_with_controlled_ids(store: ResultsStore) -> None:
    # Insert ids directly so the prefixes are known, not left to the clock.
    with store._write() as conn:
        for run_id in ("20260101-000000-aaaa", "20260101-000000-aabb", "20260102-000000-cccc"):
            started = f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T00:00:00+00:00"
            conn.execute(
                "INSERT INTO runs (id, experiment, status, started_at, ended_at, error, manifest, record)"
                " VALUES (?, 'e', 'running', ?, NULL, NULL, '', ?)",
                (run_id, started, '{"version": 2}'),
            )
    assert store.get_run("20260102").id == "20260102-000000-cccc"
    assert store.get_run("20260101-000000-aab").id == "20260101-000000-aabb"
    assert store.get_run("latest").id == "20260102-000000-cccc"
    with pytest.raises(SplitTracerError, match="ambiguous") as ambiguous:
        store.get_run("20260101")
    assert "20260101-000000-aaaa" in (ambiguous.value.hint or "")
    with pytest.raises(SplitTracerError, match="no run '20260102-000000-cccd'") as typo:
        store.get_run("20260102-000000-cccd")
    assert "Did you mean 20260102-000000-cccc" in (typo.value.hint or "")
    with pytest.raises(SplitTracerError) as unknown:
        store.get_run("zzz")
    assert "Known runs" in (unknown.value.hint or "")
    assert "20260102-000000-cccc" in (unknown.value.hint or "")


def test_prefix_is_not_a_like_pattern(store: ResultsStore) -> None:
    store.create_run("e", "")
    with pytest.raises(SplitTracerError):
        store.get_run("%")


def test_unknown_run_in_an_empty_store(store: ResultsStore) -> None:
    with pytest.raises(SplitTracerError, match="no runs yet"):
        store.get_run("latest")


def test_append_to_unknown_run_or_with_mixed_run_ids(store: ResultsStore) -> None:
    with pytest.raises(RunError, match="no such run"):
        store.append_spans("missing", [make_span("missing")])
    run_id = store.create_run("e", "")
    with pytest.raises(RunError, match="other"):
        store.append_spans(run_id, [make_span(run_id), make_span("other")])
    assert store.spans(run_id) == []  # nothing half-appended


def test_data_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    with ResultsStore(path) as first:
        record = RunRecord(participants={"pi": ParticipantRecord(hostname="pi", uplink_bps=math.inf)})
        run_id = first.create_run("e", "m", record)
        first.append_spans(run_id, [make_span(run_id)])
    with ResultsStore(path) as second:
        assert len(second.spans(run_id)) == 1
        assert second.get_run(run_id).record == record


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    ResultsStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(SplitTracerError, match="newer than this SplitTracer"):
        ResultsStore(path)


def test_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SplitTracerError, match="cannot be used"):
        ResultsStore(path)


def test_one_writer_thread_and_concurrent_readers(store: ResultsStore) -> None:
    run_id = store.create_run("e", "")
    seen: list[int] = []
    failures: list[BaseException] = []

    def write() -> None:
        for i in range(50):
            store.append_spans(run_id, [make_span(run_id, i)])

    def read() -> None:
        try:
            for _ in range(50):
                seen.append(len(store.spans(run_id)))
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(store.spans(run_id)) == 50
    assert all(0 <= n <= 50 for n in seen)
