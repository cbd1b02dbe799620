"""A running run's lease: how a store knows that the controller of a ``running`` run is gone.

A controller killed with SIGKILL (or lost with its laptop) cannot mark its
run as ended. So the store that created a run renews a lease on it every
:data:`RENEW_S` while the run runs: the time of the last renewal and the
host and pid of the process renewing it (schema 5). Opening a store marks
every ``running`` run whose lease is older than :data:`EXPIRY_S` as
``interrupted``, unless its controller's process still exists on this host
(a controller that was only paused, say by a closed lid, keeps its run).
Spans already stored stay as they are: an interrupted run reads like one
stopped with Ctrl-C.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from ..errors import SplitTracerError
from .processes import pid_alive

__all__ = ["CONTROLLER_LOST", "EXPIRY_S", "RENEW_S", "LeaseKeeper", "expire_stale_runs", "holder"]

RENEW_S = 1.0
"""How often a running run's lease is renewed."""

EXPIRY_S = 10.0
"""How old a lease may grow before its run counts as abandoned."""

CONTROLLER_LOST = "the controller stopped (killed or lost) while the run was running"
"""The error of a run whose controller stopped without ending it."""


def holder() -> tuple[str, int]:
    """This process, as a lease names it: host name and pid."""
    return socket.gethostname(), os.getpid()


def _abandoned(lease_at: float | None, host: str | None, pid: int | None, now: float) -> bool:
    if lease_at is not None and now - lease_at <= EXPIRY_S:
        return False
    # Expired (or never held: written before leases), and no controller of it here.
    here = host == socket.gethostname() and pid is not None and pid_alive(pid)
    return not here


def expire_stale_runs(conn: sqlite3.Connection) -> list[str]:
    """Mark the abandoned running runs interrupted; their ids. Call inside a write transaction."""
    now = time.time()
    rows = conn.execute("SELECT id, lease_at, lease_host, lease_pid FROM runs WHERE status = 'running'")
    stale = [run_id for run_id, at, host, pid in rows.fetchall() if _abandoned(at, host, pid, now)]
    ended = datetime.now(timezone.utc).isoformat()
    for run_id in stale:
        conn.execute(
            "UPDATE runs SET status = 'interrupted', ended_at = ?, error = ? WHERE id = ?",
            (ended, CONTROLLER_LOST, run_id),
        )
    return stale


class LeaseKeeper:
    """Renews the leases of the runs it holds, every :data:`RENEW_S`, on a daemon thread."""

    def __init__(self, renew: Callable[[list[str]], None]) -> None:
        self._renew = renew
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, run_id: str) -> None:
        """Keep renewing ``run_id``'s lease until :meth:`release`."""
        with self._lock:
            self._held.add(run_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="run-lease", daemon=True)
                self._thread.start()

    def release(self, run_id: str) -> None:
        """Stop renewing ``run_id``'s lease."""
        with self._lock:
            self._held.discard(run_id)

    def stop(self) -> None:
        """Stop renewing every lease; waits for a renewal in progress."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _loop(self) -> None:
        while not self._stop.wait(RENEW_S):
            with self._lock:
                held = sorted(self._held)
            if held:
                try:
                    self._renew(held)
                except (sqlite3.Error, SplitTracerError):
                    continue  # a busy or full store: the next renewal tries again
