"""A process writing spans, killed with SIGKILL at random moments, never corrupts the store."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splittracer.metrics import ResultsStore

pytestmark = pytest.mark.slow

KILLS = 8
BATCH = 50

# Writes as a controller does: runs, batches of spans and metrics, record updates, runs ended.
WRITER = f"""
import sys
from splittracer.metrics import Metric, ResultsStore, RunRecord, Span

store = ResultsStore(sys.argv[1])
print("ready", flush=True)
while True:
    run_id = store.create_run("e", "name: e\\n")
    for batch in range(20):
        spans = [
            Span(run_id=run_id, participant="p", stage=0, kind="compute", inference=batch * {BATCH} + i,
                 split=1, start_layer=0, end_layer=1, start_ns=i, end_ns=i + 1, attrs={{"pad": "x" * 200}})
            for i in range({BATCH})
        ]
        store.append_spans(run_id, spans)
        metric = Metric(run_id=run_id, participant="p", name="cpu", value=1.0, time_ns=batch)
        store.append_metrics(run_id, [metric])
        store.update_record(run_id, RunRecord())
    store.finish_run(run_id, "succeeded")
"""


def _kill_while_writing(db: Path, delay: float) -> None:
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        assert writer.poll() is None, "the writer stopped by itself"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if writer.stdout is not None:
            writer.stdout.close()


def _check(db: Path) -> int:
    """The store is intact and every run reads back whole batches; how many runs it holds."""
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    with ResultsStore(db) as store:
        runs = store.list_runs()
        for run in runs:
            spans = store.spans(run.id)
            assert len(spans) % BATCH == 0, f"run {run.id}: a batch of spans half written"
            assert [s.inference for s in spans] == list(range(len(spans)))
            # spans and their metric are two transactions: a kill may fall between them
            assert len(store.metrics(run.id)) in (len(spans) // BATCH, len(spans) // BATCH - 1)
    return len(runs)


def test_random_kills_of_a_writer_leave_the_store_intact(tmp_path: Path) -> None:
    db = tmp_path / "results" / "runs.sqlite"
    draw = random.Random(15)
    runs = 0
    for _ in range(KILLS):
        _kill_while_writing(db, draw.uniform(0.05, 1.0))
        runs = _check(db)
    assert runs >= KILLS  # each writer created at least one run before it was killed
