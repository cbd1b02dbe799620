"""The results store: one SQLite file holding runs (each with its typed record), their spans and metrics.

Rows are committed as they arrive, so a crash loses nothing already appended.
The database runs in WAL mode: one writer (the controller's collecting
thread) and any number of readers (a report in another process, or another
thread here) proceed without blocking each other. Writes go through one
locked connection; every read opens its own short-lived connection, which
also means a read always sees everything committed so far.
"""

from __future__ import annotations

import difflib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from ..errors import RunError, SplitTracerError
from .lease import LeaseKeeper, expire_stale_runs, holder
from .record import RunRecord, decode_record, encode_record
from .schema import migrate
from .spans import Attrs, Metric, Span

EndStatus = Literal["succeeded", "failed", "interrupted"]
RunStatus = Literal["running", "succeeded", "failed", "interrupted"]
BUSY_TIMEOUT_S = 30.0  # how long a connection waits for another one's lock

INTERRUPTED_BY_USER = "interrupted by the user"
"""The error of a run the user stopped (Ctrl-C): a failed run whose cut-short inferences were interrupted."""


_SPAN_COLUMNS = (
    "run_id, participant, stage, kind, inference, split, start_layer, end_layer, "
    "start_ns, end_ns, bytes_raw, bytes_wire, attrs"
)
_METRIC_COLUMNS = "run_id, participant, name, value, time_ns, inference, split, attrs"
_RUN_COLUMNS = "id, experiment, status, started_at, ended_at, error, manifest, record"
_LEASE_COLUMNS = "lease_at, lease_host, lease_pid"


@dataclass(frozen=True)
class RunInfo:
    """One row of the runs table."""

    id: str
    experiment: str
    status: RunStatus
    started_at: str
    ended_at: str | None
    error: str | None
    manifest: str
    record: RunRecord


class ResultsStore:
    """Runs, spans and metrics in one SQLite file (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._leases = LeaseKeeper(self._renew_leases)
        try:
            self._use_wal()
            self._migrate()
            with self._write() as conn:
                expire_stale_runs(conn)  # runs whose controller was killed (see lease.py)
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.DatabaseError):
                raise self._foreign(exc) from exc
            raise

    def _use_wal(self) -> None:
        """Switch the file to write-ahead logging, waiting out another connection's lock.

        SQLite does not call its busy handler for this pragma: a store opened while
        another process creates or writes it (a run starting beside ``results ls``)
        would fail at once with "database is locked".
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so what is
        # committed when is visible in the code, not implied by the driver.
        conn = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _foreign(self, exc: sqlite3.Error) -> SplitTracerError:
        return SplitTracerError(
            f"results store {self.path} cannot be used: {exc}",
            hint="Check that the file is a SplitTracer results database and is writable.",
        )

    def close(self) -> None:
        """Stop renewing leases, close the writer connection; the store cannot be used afterwards."""
        self._leases.stop()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30.0)) as conn:
            conn.execute("PRAGMA query_only = ON")
            yield conn

    def _migrate(self) -> None:
        # SQLite's way to rebuild a table others refer to: foreign keys off outside the
        # transaction, checked by hand before it commits, on again after.
        self._conn.execute("PRAGMA foreign_keys = OFF")
        try:
            with self._write() as conn:
                migrate(conn, self.path)
                broken = conn.execute("PRAGMA foreign_key_check").fetchone()
                if broken:
                    raise SplitTracerError(f"results store {self.path}: a row of {broken[0]} lost its run")
        finally:
            self._conn.execute("PRAGMA foreign_keys = ON")

    # -- writing ------------------------------------------------------------

    def create_run(self, experiment: str, manifest_text: str, record: RunRecord | None = None) -> str:
        """Record a new running run (with an empty record if none is given) and return its id,
        which sorts by start time."""
        meta = encode_record(record or RunRecord())
        while True:
            now = datetime.now(timezone.utc)
            run_id = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
            try:
                with self._write() as conn:
                    conn.execute(
                        f"INSERT INTO runs ({_RUN_COLUMNS}, {_LEASE_COLUMNS}) VALUES ({_marks(11)})",
                        (
                            run_id,
                            experiment,
                            "running",
                            now.isoformat(),
                            None,
                            None,
                            manifest_text,
                            meta,
                            time.time(),
                            *holder(),
                        ),
                    )
                self._leases.hold(run_id)
                return run_id
            except sqlite3.IntegrityError:
                continue  # same second and same random suffix: draw again

    def append_spans(self, run_id: str, spans: Sequence[Span]) -> None:
        """Store spans of ``run_id`` and commit at once."""
        _check_run(run_id, spans)
        rows = [_span_row(s) for s in spans]
        self._append(run_id, f"INSERT INTO spans ({_SPAN_COLUMNS}) VALUES ({_marks(13)})", rows)

    def append_metrics(self, run_id: str, metrics: Sequence[Metric]) -> None:
        """Store metric samples of ``run_id`` and commit at once."""
        _check_run(run_id, metrics)
        rows = [_metric_row(m) for m in metrics]
        self._append(run_id, f"INSERT INTO metrics ({_METRIC_COLUMNS}) VALUES ({_marks(8)})", rows)

    def _append(self, run_id: str, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        try:
            with self._write() as conn:
                conn.executemany(sql, rows)
        except sqlite3.IntegrityError as exc:
            raise RunError(f"cannot append to run '{run_id}': no such run") from exc

    def update_record(self, run_id: str, record: RunRecord) -> None:
        """Replace a run's record (with facts learnt after it started)."""
        resolved = self.get_run(run_id).id
        with self._write() as conn:
            conn.execute("UPDATE runs SET record = ? WHERE id = ?", (encode_record(record), resolved))

    def finish_run(self, run_id: str, status: EndStatus, error: str | None = None) -> None:
        """Mark a run as ended with ``status`` (and the reason, when it failed); its lease ends."""
        if status not in ("succeeded", "failed", "interrupted"):
            raise ValueError(f"a run finishes as 'succeeded' or 'failed', not '{status}'")
        self._leases.release(run_id)
        ended = datetime.now(timezone.utc).isoformat()
        with self._write() as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, ended_at = ?, error = ? WHERE id = ?",
                (status, ended, error, run_id),
            )
        if cursor.rowcount == 0:
            raise RunError(f"cannot finish run '{run_id}': no such run")

    def _renew_leases(self, run_ids: list[str]) -> None:
        now, (host, pid) = time.time(), holder()
        with self._write() as conn:
            conn.executemany(
                "UPDATE runs SET lease_at = ?, lease_host = ?, lease_pid = ? "
                "WHERE id = ? AND status = 'running'",
                [(now, host, pid, run_id) for run_id in run_ids],
            )

    # -- reading ------------------------------------------------------------

    def list_runs(self, experiment: str | None = None) -> list[RunInfo]:
        """Every run (of ``experiment``, if given), oldest first."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        params: tuple[str, ...] = ()
        if experiment is not None:
            sql, params = sql + " WHERE experiment = ?", (experiment,)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY started_at, id", params).fetchall()
        return [_run_info(row) for row in rows]

    def get_run(self, run_id: str) -> RunInfo:
        """The run with this id, a unique prefix of it, or ``'latest'``."""
        with self._read() as conn:
            rows = self._matching(conn, run_id)
            if len(rows) == 1:
                return _run_info(rows[0])
            newest = conn.execute("SELECT id FROM runs ORDER BY started_at DESC, id DESC")
            known = [r[0] for r in newest]
        raise _lookup_error(run_id, [r[0] for r in rows], known)

    def _matching(self, conn: sqlite3.Connection, run_id: str) -> list[tuple[Any, ...]]:
        select = f"SELECT {_RUN_COLUMNS} FROM runs"
        if run_id == "latest":
            # started_at has microseconds; ids share a second and a random tail.
            return conn.execute(select + " ORDER BY started_at DESC, id DESC LIMIT 1").fetchall()
        exact = conn.execute(select + " WHERE id = ?", (run_id,)).fetchall()
        if exact or not run_id:
            return exact
        # substr, not LIKE: an id typed by a user must not act as a pattern.
        prefix = select + " WHERE substr(id, 1, ?) = ? ORDER BY id"
        return conn.execute(prefix, (len(run_id), run_id)).fetchall()

    def spans(self, run_id: str, kind: str | None = None) -> list[Span]:
        """Spans of a run (id, prefix or 'latest') in the order they were stored."""
        resolved = self.get_run(run_id).id
        sql = f"SELECT {_SPAN_COLUMNS} FROM spans WHERE run_id = ?"
        params: tuple[str, ...] = (resolved,)
        if kind is not None:
            sql, params = sql + " AND kind = ?", (resolved, kind)
        with self._read() as conn:
            rows = conn.execute(sql + " ORDER BY seq", params).fetchall()
        return [_span_from_row(row) for row in rows]

    def metrics(self, run_id: str) -> list[Metric]:
        """Metric samples of a run (id, prefix or 'latest') in the order they were stored."""
        resolved = self.get_run(run_id).id
        sql = f"SELECT {_METRIC_COLUMNS} FROM metrics WHERE run_id = ? ORDER BY seq"
        with self._read() as conn:
            rows = conn.execute(sql, (resolved,)).fetchall()
        return [_metric_from_row(row) for row in rows]


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _check_run(run_id: str, records: Sequence[Span] | Sequence[Metric]) -> None:
    # A record tagged with another run means the caller mixed up batches;
    # storing it under either id would corrupt a report without a trace.
    strays = {r.run_id for r in records if r.run_id != run_id}
    if strays:
        raise RunError(f"records for run(s) {sorted(strays)} appended to run '{run_id}'")


def _span_row(s: Span) -> tuple[Any, ...]:
    return (
        s.run_id,
        s.participant,
        s.stage,
        s.kind,
        s.inference,
        s.split,
        s.start_layer,
        s.end_layer,
        s.start_ns,
        s.end_ns,
        s.bytes_raw,
        s.bytes_wire,
        json.dumps(s.attrs),
    )


def _span_from_row(row: tuple[Any, ...]) -> Span:
    (
        run_id,
        participant,
        stage,
        kind,
        inference,
        split,
        start_layer,
        end_layer,
        start_ns,
        end_ns,
        bytes_raw,
        bytes_wire,
        attrs,
    ) = row
    return Span(
        run_id=run_id,
        participant=participant,
        stage=stage,
        kind=kind,
        inference=inference,
        split=split,
        start_layer=start_layer,
        end_layer=end_layer,
        start_ns=start_ns,
        end_ns=end_ns,
        bytes_raw=bytes_raw,
        bytes_wire=bytes_wire,
        attrs=_attrs(attrs),
    )


def _metric_row(m: Metric) -> tuple[Any, ...]:
    return (m.run_id, m.participant, m.name, m.value, m.time_ns, m.inference, m.split, json.dumps(m.attrs))


def _metric_from_row(row: tuple[Any, ...]) -> Metric:
    run_id, participant, name, value, time_ns, inference, split, attrs = row
    return Metric(
        run_id=run_id,
        participant=participant,
        name=name,
        value=value,
        time_ns=time_ns,
        inference=inference,
        split=split,
        attrs=_attrs(attrs),
    )


def _attrs(text: str) -> Attrs:
    loaded: Attrs = json.loads(text)
    return loaded


def _run_info(row: tuple[Any, ...]) -> RunInfo:
    run_id, experiment, status, started_at, ended_at, error, manifest, text = row
    try:
        record = decode_record(text)
    except ValueError as exc:
        raise SplitTracerError(f"run {run_id} has a record this SplitTracer cannot read: {exc}") from exc
    return RunInfo(run_id, experiment, status, started_at, ended_at, error, manifest, record)


def _lookup_error(run_id: str, matches: list[str], known: list[str]) -> SplitTracerError:
    if len(matches) > 1:
        return SplitTracerError(
            f"run id '{run_id}' is ambiguous: it starts {len(matches)} runs",
            hint=f"Give more characters: {', '.join(matches[:5])}",
        )
    if not known:
        return SplitTracerError(f"no run '{run_id}': the results store has no runs yet")
    close = difflib.get_close_matches(run_id, known, n=3, cutoff=0.6)
    hint = f"Did you mean {' or '.join(close)}?" if close else None
    hint = hint or f"Known runs (newest first): {', '.join(known[:5])}, or 'latest'."
    return SplitTracerError(f"no run '{run_id}' in the results store", hint=hint)
