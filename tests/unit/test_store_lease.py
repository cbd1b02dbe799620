"""A running run's lease: renewed while its store is open, expired runs marked interrupted on open."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from splittracer.metrics import ResultsStore
from splittracer.metrics.lease import CONTROLLER_LOST, EXPIRY_S, RENEW_S

from .test_store import make_span


def _lease(db: Path, run_id: str) -> tuple[float, str, int]:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT lease_at, lease_host, lease_pid FROM runs WHERE id = ?", (run_id,))
        return tuple(row.fetchone())  # type: ignore[return-value]


def _set_lease(db: Path, run_id: str, age_s: float, host: str, pid: int) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute(
            "UPDATE runs SET lease_at = ?, lease_host = ?, lease_pid = ? WHERE id = ?",
            (time.time() - age_s, host, pid, run_id),
        )


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(done.stdout)


def _abandoned_run(db: Path, host: str, pid: int) -> str:
    """A running run with two spans whose lease stopped being renewed long ago."""
    with ResultsStore(db) as store:
        run_id = store.create_run("e", "name: e\n")
        store.append_spans(run_id, [make_span(run_id, 0), make_span(run_id, 1)])
    _set_lease(db, run_id, EXPIRY_S + 5, host, pid)
    return run_id


def test_an_open_store_renews_the_lease_of_its_running_run(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    with ResultsStore(db) as store:
        run_id = store.create_run("e", "name: e\n")
        first = _lease(db, run_id)
        time.sleep(RENEW_S * 2.5)
        renewed = _lease(db, run_id)
        assert renewed[0] > first[0] and renewed[2] == first[2]
        store.finish_run(run_id, "succeeded")
        time.sleep(RENEW_S * 1.5)
        ended = _lease(db, run_id)
        time.sleep(RENEW_S * 1.5)
        assert _lease(db, run_id) == ended, "a finished run's lease is still renewed"


def test_opening_the_store_marks_an_expired_run_without_controller_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    gone_here = _abandoned_run(db, socket.gethostname(), _dead_pid())
    elsewhere = _abandoned_run(db, "another-host.invalid", 1)
    with ResultsStore(db) as store:
        for run_id in (gone_here, elsewhere):
            run = store.get_run(run_id)
            assert (run.status, run.error) == ("interrupted", CONTROLLER_LOST)
            assert run.ended_at is not None
            assert [s.inference for s in store.spans(run_id)] == [0, 1]  # kept, readable


def test_a_run_whose_controller_still_lives_here_keeps_running(tmp_path: Path) -> None:
    db = tmp_path / "runs.sqlite"
    # Paused (a closed lid): the lease is old, but the controller's process exists.
    paused = _abandoned_run(db, socket.gethostname(), os.getpid())
    with ResultsStore(db) as store:
        fresh = store.create_run("e", "name: e\n")
        with ResultsStore(db) as other:
            assert other.get_run(paused).status == "running"
            assert other.get_run(fresh).status == "running"
