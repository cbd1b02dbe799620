"""Export a run's spans and metrics for analysis elsewhere: CSV (stdlib), Parquet (pyarrow) or a
pandas DataFrame.

Metrics go to a file of their own beside the spans (``<name>-metrics.<ext>``):
one row per sample with the inference and split it was recorded under, and
its attributes as JSON, as the spans' are.

Every file is written next to its destination under a temporary name and
renamed into place, so a reader never sees half a file, and an interrupted
export leaves the previous file (if any) intact.
"""

from __future__ import annotations

import csv
import json
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..errors import SplitTracerError
from ..metrics.record import RunRecord
from ..metrics.spans import Metric, Span
from ..metrics.store import ResultsStore

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COLUMNS",
    "METRIC_COLUMNS",
    "ExportFormat",
    "atomic_path",
    "export_metrics",
    "export_run",
    "export_run_metrics",
    "export_spans",
    "metrics_path",
    "several_models",
    "spans_to_frame",
]

ExportFormat = Literal["csv", "parquet"]

COLUMNS = (
    "run_id",
    "participant",
    "stage",
    "kind",
    "inference",
    "split",
    "start_layer",
    "end_layer",
    "start_ns",
    "end_ns",
    "duration_ms",
    "bytes_raw",
    "bytes_wire",
    "attrs",
)
METRIC_COLUMNS = ("run_id", "participant", "name", "value", "time_ns", "inference", "split", "attrs")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name rather than mkstemp: the writer creates the file, so it
    # gets the user's usual permissions instead of mkstemp's 0600.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield temp
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def export_spans(spans: Sequence[Span], path: str | Path, fmt: ExportFormat | None = None) -> Path:
    """Write spans to ``path`` as CSV or Parquet (by ``fmt``, else by the suffix)."""
    return _export(spans, COLUMNS, path, fmt)


def export_metrics(metrics: Sequence[Metric], path: str | Path, fmt: ExportFormat | None = None) -> Path:
    """Write metric samples to ``path`` as CSV or Parquet, the columns of :data:`METRIC_COLUMNS`."""
    return _export(metrics, METRIC_COLUMNS, path, fmt)


def _export(
    items: Sequence[Span] | Sequence[Metric],
    columns: Sequence[str],
    path: str | Path,
    fmt: ExportFormat | None,
    models: Mapping[str, str] | None = None,
) -> Path:
    target = Path(path)
    chosen = fmt or _format_of(target)
    if chosen not in ("csv", "parquet"):
        raise SplitTracerError(f"unknown export format '{chosen}'; use 'csv' or 'parquet'")
    with atomic_path(target) as temp:
        if chosen == "csv":
            _write_csv(items, columns, temp, models or {})
        else:
            _write_parquet(items, columns, temp, models or {})
    return target


def export_run(store: ResultsStore, run_id: str, path: str | Path, fmt: ExportFormat | None = None) -> Path:
    """Write every span of a run (id, unique prefix or 'latest') to ``path``.

    A run whose participants ran different models gets a ``model`` column: the
    model (source) the participant of each span ran, from the run's record.
    """
    run = store.get_run(run_id)
    models = several_models(run.record)
    if models is None:
        return export_spans(store.spans(run.id), path, fmt)
    return _export(store.spans(run.id), (*COLUMNS[:2], "model", *COLUMNS[2:]), path, fmt, models)


def several_models(record: RunRecord) -> dict[str, str] | None:
    """Each participant -> the model it ran, when the run's participants ran more than one; else None."""
    models = {name: p.model for name, p in record.participants.items()}
    return models if len(set(filter(None, models.values()))) > 1 else None


def metrics_path(path: str | Path) -> Path:
    """Where the metrics go beside a spans file: ``runs.csv`` -> ``runs-metrics.csv``."""
    target = Path(path)
    return target.with_name(f"{target.stem}-metrics{target.suffix}")


def export_run_metrics(
    store: ResultsStore, run_id: str, path: str | Path, fmt: ExportFormat | None = None
) -> Path | None:
    """Write every metric sample of a run to ``path``; None (and no file) when it recorded none."""
    metrics = store.metrics(run_id)
    return export_metrics(metrics, path, fmt) if metrics else None


def spans_to_frame(spans: Sequence[Span], models: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The spans as a DataFrame: one row per span, the columns of :data:`COLUMNS`.

    ``attrs`` holds each span's attributes as a dict (the files write them as
    JSON text); an empty run still gives the columns, typed. With ``models``
    (participant -> model), a ``model`` column after ``participant`` says which
    model each span's participant ran.
    """
    import pandas as pd  # only for those who ask for a frame: the import takes a while

    columns = list(COLUMNS) if models is None else [*COLUMNS[:2], "model", *COLUMNS[2:]]
    records = [{name: getattr(span, name) for name in COLUMNS} for span in spans]
    if models is not None:
        for record in records:
            record["model"] = models.get(record["participant"], "")
    frame = pd.DataFrame.from_records(records, columns=columns)
    typed: pd.DataFrame = frame.astype({name: _PANDAS_TYPES.get(name, "int64") for name in columns})
    return typed


def _format_of(path: Path) -> ExportFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    raise SplitTracerError(
        f"cannot tell the export format of '{path}' from its suffix '{suffix}'",
        hint="Name the file *.csv or *.parquet, or pass the format explicitly.",
    )


def _record(item: Span | Metric) -> dict[str, Any]:
    columns = METRIC_COLUMNS if isinstance(item, Metric) else COLUMNS
    record = {name: getattr(item, name) for name in columns if name != "attrs"}
    # attrs vary per record; one JSON column keeps the table rectangular.
    record["attrs"] = json.dumps(item.attrs, sort_keys=True)
    return record


def _row(item: Span | Metric, columns: Sequence[str], models: Mapping[str, str]) -> dict[str, Any]:
    record = _record(item)
    if "model" in columns and isinstance(item, Span):  # a run of several models (export_run):
        record["model"] = models.get(item.participant, "")  # what each span's participant ran
    return record


def _write_csv(
    items: Sequence[Span] | Sequence[Metric], columns: Sequence[str], path: Path, models: Mapping[str, str]
) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(_row(item, columns, models) for item in items)


def _write_parquet(
    items: Sequence[Span] | Sequence[Metric], columns: Sequence[str], path: Path, models: Mapping[str, str]
) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise SplitTracerError(
            "Parquet export needs the optional dependency pyarrow, which is not installed",
            hint="Install it with: pip install 'splittracer[parquet]' (or export to .csv).",
        ) from exc
    records = [_row(item, columns, models) for item in items]
    data = {name: [r[name] for r in records] for name in columns}
    # An explicit schema: an empty run must still give typed columns.
    schema = pa.schema([(name, _ARROW_TYPES.get(name, "int64")) for name in columns])
    pq.write_table(pa.table(data, schema=schema), path)


_ARROW_TYPES = {
    "run_id": "string",
    "participant": "string",
    "model": "string",
    "kind": "string",
    "duration_ms": "float64",
    "attrs": "string",
    "name": "string",
    "value": "float64",
}

# "str" is each pandas version's own text type; attrs stay Python dicts.
_PANDAS_TYPES = {
    "run_id": "str",
    "participant": "str",
    "model": "str",
    "kind": "str",
    "duration_ms": "float64",
    "attrs": "object",
}
