"""The results store's tables, version by version, and how an older store is brought up to date.

Every store has a ``schema_version`` table holding each version applied to
it. Opening a store applies the missing steps in one transaction, so a store
is either fully migrated or left as it was.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

from ..errors import SplitTracerError
from .record import encode_record, record_from_metadata

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "migrate"]

# A step is a statement, or a function for what SQL alone cannot do.
Step = str | Callable[[sqlite3.Connection], None]


def _typed_records(conn: sqlite3.Connection) -> None:
    """Rewrite each run's schema-1 metadata dict as a version-2 run record."""
    rows = conn.execute("SELECT id, record FROM runs").fetchall()
    for run_id, text in rows:
        try:
            record = record_from_metadata(json.loads(text))
        except ValueError as exc:
            raise SplitTracerError(
                f"run {run_id}: its metadata cannot be read as a run record: {exc}",
                hint="Fix or delete that run's row, then open the store again.",
            ) from exc
        conn.execute("UPDATE runs SET record = ? WHERE id = ?", (encode_record(record), run_id))


def _tied_metrics(conn: sqlite3.Connection) -> None:
    """Tie each metric recorded inside an inference to it: its id (kept in the attrs until
    schema 3) and the split of that inference's spans."""
    rows = conn.execute("SELECT seq, run_id, attrs FROM metrics").fetchall()
    splits = dict(
        ((run_id, inference), split)
        for run_id, inference, split in conn.execute(
            "SELECT run_id, inference, split FROM spans WHERE kind = 'inference'"
        )
    )
    for seq, run_id, text in rows:
        inference = json.loads(text).get("inference")
        if isinstance(inference, int) and not isinstance(inference, bool):
            split = splits.get((run_id, inference), -1)
            conn.execute("UPDATE metrics SET inference = ?, split = ? WHERE seq = ?", (inference, split, seq))


# Each entry upgrades the schema by one version; append, never edit, so a
# store written by an older release can be opened by a newer one.
MIGRATIONS: tuple[tuple[Step, ...], ...] = (
    (
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            experiment TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
            started_at TEXT NOT NULL,
            ended_at TEXT,
            error TEXT,
            manifest TEXT NOT NULL,
            metadata TEXT NOT NULL
        )""",
        """CREATE TABLE spans (
            seq INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (id),
            participant TEXT NOT NULL,
            stage INTEGER NOT NULL,
            kind TEXT NOT NULL,
            inference INTEGER NOT NULL,
            split INTEGER NOT NULL,
            start_layer INTEGER NOT NULL,
            end_layer INTEGER NOT NULL,
            start_ns INTEGER NOT NULL,
            end_ns INTEGER NOT NULL,
            bytes_raw INTEGER NOT NULL,
            bytes_wire INTEGER NOT NULL,
            attrs TEXT NOT NULL
        )""",
        "CREATE INDEX spans_by_run ON spans (run_id, kind)",
        """CREATE TABLE metrics (
            seq INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL REFERENCES runs (id),
            participant TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            time_ns INTEGER NOT NULL,
            attrs TEXT NOT NULL
        )""",
        "CREATE INDEX metrics_by_run ON metrics (run_id)",
    ),
    # 2: run metadata became a typed, versioned record (see record.py).
    ("ALTER TABLE runs RENAME COLUMN metadata TO record", _typed_records),
    # 3: a run stopped by Ctrl-C is 'interrupted', not 'failed'. SQLite cannot change a CHECK
    # constraint in place: the table is rebuilt (spans and metrics refer to it by name).
    (
        """CREATE TABLE runs_new (
            id TEXT PRIMARY KEY,
            experiment TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted')),
            started_at TEXT NOT NULL,
            ended_at TEXT,
            error TEXT,
            manifest TEXT NOT NULL,
            record TEXT NOT NULL
        )""",
        """INSERT INTO runs_new
            SELECT id, experiment, status, started_at, ended_at, error, manifest, record FROM runs""",
        "DROP TABLE runs",
        "ALTER TABLE runs_new RENAME TO runs",
    ),
    # 4: a metric knows the inference (and split) it was recorded under.
    (
        "ALTER TABLE metrics ADD COLUMN inference INTEGER NOT NULL DEFAULT -1",
        "ALTER TABLE metrics ADD COLUMN split INTEGER NOT NULL DEFAULT -1",
        _tied_metrics,
    ),
    # 5: a running run's lease, renewed by its controller (see lease.py): when and by whom.
    (
        "ALTER TABLE runs ADD COLUMN lease_at REAL",
        "ALTER TABLE runs ADD COLUMN lease_host TEXT",
        "ALTER TABLE runs ADD COLUMN lease_pid INTEGER",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Apply the steps ``conn``'s store lacks; call inside a write transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    current = row[0] or 0
    if current > SCHEMA_VERSION:
        raise SplitTracerError(
            f"results store {path} has schema version {current}, "
            f"newer than this SplitTracer understands ({SCHEMA_VERSION})",
            hint="Upgrade SplitTracer to read it.",
        )
    for version in range(current + 1, SCHEMA_VERSION + 1):
        for step in MIGRATIONS[version - 1]:
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
