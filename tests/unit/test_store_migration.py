"""A store written before run records were typed (schema 1) opens, is migrated in place and reads typed.

``fixtures/store_v1.sqlite`` was written by the schema-1 store itself, the
way the controller of the day wrote a run: ``create_run`` with its
``_controller_facts()`` plus the plan's ``code`` and ``manifest_file``,
then ``update_metadata`` with ``layers``, ``split_bytes``, ``launch``,
``clocks`` and each participant's ``_facts(...)`` (hosts made neutral), the
spans and metrics of ``report_store.sweep`` thinned to a few, and a second
run that failed before its participants answered (a rerun of the first).
It must never be regenerated: it stands for the stores users already have.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest

from splittracer.errors import SplitTracerError
from splittracer.metrics import RECORD_VERSION, SCHEMA_VERSION, ResultsStore, RunRecord
from splittracer.metrics.record import record_to_dict
from splittracer.report.runs import run_summary

FIXTURE = Path(__file__).parent / "fixtures" / "store_v1.sqlite"
DONE, FAILED = "20261127-110550-b185", "20261127-110550-8209"


@pytest.fixture
def old_store(tmp_path: Path) -> Path:
    path = tmp_path / "runs.sqlite"
    shutil.copyfile(FIXTURE, path)
    return path


def _applied(path: Path) -> list[int]:
    with sqlite3.connect(path) as conn:
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    conn.close()
    return versions


def _v1_metadata(path: Path, run_id: str) -> dict[str, object]:
    with sqlite3.connect(path) as conn:
        text = conn.execute("SELECT metadata FROM runs WHERE id = ?", (run_id,)).fetchone()[0]
    conn.close()
    loaded: dict[str, object] = json.loads(text)
    return loaded


def test_the_fixture_is_a_schema_1_store(old_store: Path) -> None:
    assert _applied(old_store) == [1] and SCHEMA_VERSION > 1
    assert "participants" in _v1_metadata(old_store, DONE)


def test_old_store_lists_its_runs_and_reads_them_typed(old_store: Path) -> None:
    with ResultsStore(old_store) as store:
        assert [r.id for r in store.list_runs()] == [DONE, FAILED]
        record = store.get_run(DONE).record
    assert record.version == RECORD_VERSION
    assert record.controller.hostname == "laptop" and record.controller.user == "alice"
    assert record.layers == ("conv1", "relu1", "pool1", "fc")
    assert record.split_bytes == (60_000, 80_000, 80_000, 20_000, 4_000)
    assert record.launch == {"phone": "spawn", "cloud": "agent"}
    assert record.clocks["cloud"].offset_ns == 1500 and record.clocks["cloud"].samples == 8
    phone, cloud = record.participants["phone"], record.participants["cloud"]
    assert (phone.pid, phone.torch_threads, phone.uplink_bps, phone.latency_s) == (4000, 1, 20e6, 0.005)
    assert cloud.uplink_bps == math.inf and cloud.torch_threads == 2
    assert phone.energy.available and phone.energy.domains == ("rapl/package-0",)
    assert cloud.energy.missing == {"rapl": "no intel-rapl zones"}
    assert set(record.code) == {"roles.py", "tasks.py", "splittracer.builtin"}
    assert record.manifest_file == "experiments/neurosurgeon.yaml" and record.rerun_of is None


def test_a_run_that_failed_early_reads_with_what_it_had(old_store: Path) -> None:
    with ResultsStore(old_store) as store:
        info = store.get_run("latest")
    assert (info.id, info.status) == (FAILED, "failed")
    assert info.record.rerun_of == DONE and info.record.controller.hostname == "laptop"
    assert info.record.participants == {} and info.record.layers == ()


def test_old_store_keeps_its_spans_and_metrics(old_store: Path) -> None:
    with ResultsStore(old_store) as store:
        spans = store.spans(DONE)
        metrics = store.metrics(DONE)
        summary = run_summary(store, DONE)
    assert len(spans) == 252 and {s.run_id for s in spans} == {DONE}
    assert {"compute", "transfer", "inference"} <= {s.kind for s in spans}
    assert len(metrics) == 69 and any(m.name == "split_plan" for m in metrics)
    assert [r.split for r in summary.rows] == [0, 1, 2, 3, 4]
    assert summary.labels[1:] == ["conv1", "relu1", "pool1", "fc"]


def test_migrated_records_keep_the_layout_of_the_old_metadata(old_store: Path) -> None:
    # Scripts read `results show --json`'s metadata: only the version, the empty rerun_of, the
    # empty overrides, the empty split_tensors and each participant's (absent) cpu and memory
    # limits, keep_warm, the limits its cgroups (or a throttle) enforced and how, and its model
    # ('' before runs recorded it) are new.
    before = _v1_metadata(old_store, DONE)
    with ResultsStore(old_store) as store:
        after = record_to_dict(store.get_run(DONE).record)
    new_limits = {
        "cpu_limit": None,
        "cpu_period_us": 0,
        "memory_limit_bytes": None,
        "keep_warm": False,
        "enforced_cpu": None,
        "enforced_memory_bytes": None,
        "enforced_cpu_by": "",
        "model": "",
    }
    participants = {name: {**p, **new_limits} for name, p in before["participants"].items()}
    new = {"version": RECORD_VERSION, "rerun_of": None, "overrides": {}, "split_tensors": []}
    assert after == {**before, "participants": participants, **new}


def test_migration_is_stored_once_and_the_store_still_takes_runs(old_store: Path) -> None:
    ResultsStore(old_store).close()
    with sqlite3.connect(old_store) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
        stored = json.loads(conn.execute("SELECT record FROM runs WHERE id = ?", (DONE,)).fetchone()[0])
    conn.close()
    assert "record" in columns and "metadata" not in columns
    assert stored["version"] == RECORD_VERSION
    with ResultsStore(old_store) as store:
        new = store.create_run("neurosurgeon", "name: neurosurgeon\n", RunRecord(rerun_of=DONE))
        assert store.get_run(new).record.rerun_of == DONE
        assert len(store.list_runs()) == 3
    assert _applied(old_store) == list(range(1, SCHEMA_VERSION + 1))


def test_unreadable_old_metadata_is_refused_and_the_store_left_as_it_was(old_store: Path) -> None:
    with sqlite3.connect(old_store) as conn:
        conn.execute("UPDATE runs SET metadata = ? WHERE id = ?", ('{"layers": 5}', FAILED))
    conn.close()
    with pytest.raises(SplitTracerError, match=f"run {FAILED}: its metadata cannot be read"):
        ResultsStore(old_store)
    assert _applied(old_store) == [1]
    assert _v1_metadata(old_store, DONE)["layers"] == ["conv1", "relu1", "pool1", "fc"]


def test_a_migrated_store_records_an_interrupted_run_and_keeps_every_span(old_store: Path) -> None:
    with ResultsStore(old_store) as store:
        before = {run.id: len(store.spans(run.id)) for run in store.list_runs()}
        run_id = store.create_run("again", "name: again\n")
        store.finish_run(run_id, "interrupted", "interrupted by the user")
        assert store.get_run(run_id).status == "interrupted"
        assert {run.id: len(store.spans(run.id)) for run in store.list_runs() if run.id != run_id} == before
    with sqlite3.connect(old_store) as conn:
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (0,)  # a fresh connection's default
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()


def test_migrated_metrics_are_tied_to_the_inference_their_attrs_named(old_store: Path) -> None:
    # Schema 4 keeps a metric's inference and split in columns; schema 1 had the id in its attrs.
    with ResultsStore(old_store) as store:
        metrics = store.metrics(DONE)
    (plan,) = [m for m in metrics if m.name == "split_plan"]
    assert (plan.inference, plan.split) == (0, 0)
    assert all((m.inference, m.split) == (-1, -1) for m in metrics if m.name != "split_plan")
