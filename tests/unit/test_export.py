"""Exports: CSV content, Parquet when pyarrow is there, a clear error when not."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from splittracer.errors import SplitTracerError
from splittracer.metrics import ResultsStore, Span
from splittracer.report import export_run, export_spans
from splittracer.report.export import COLUMNS

SPANS = [
    Span(
        run_id="r",
        participant="CLIENT1",
        stage=0,
        kind="compute",
        inference=0,
        split=3,
        start_layer=1,
        end_layer=3,
        start_ns=1_000_000,
        end_ns=3_000_000,
        attrs={"warmup": True},
    ),
    Span(
        run_id="r",
        participant="CLOUD1",
        stage=0,
        kind="transfer",
        inference=0,
        split=3,
        start_ns=3_000_000,
        end_ns=3_500_000,
        bytes_raw=4096,
        bytes_wire=1024,
        attrs={"codec": "lz4", "ratio": 0.25},
    ),
]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_csv_export_content(tmp_path: Path) -> None:
    path = export_spans(SPANS, tmp_path / "out" / "spans.csv")
    rows = read_csv(path)
    assert list(rows[0]) == list(COLUMNS)
    assert len(rows) == 2
    first, second = rows
    assert (first["participant"], first["kind"], first["split"]) == ("CLIENT1", "compute", "3")
    assert (first["start_layer"], first["end_layer"]) == ("1", "3")
    assert float(first["duration_ms"]) == 2.0
    assert json.loads(first["attrs"]) == {"warmup": True}
    assert (second["bytes_raw"], second["bytes_wire"]) == ("4096", "1024")
    assert (second["end_layer"], float(second["duration_ms"])) == ("-1", 0.5)
    assert json.loads(second["attrs"]) == {"codec": "lz4", "ratio": 0.25}
    assert [p.name for p in path.parent.iterdir()] == ["spans.csv"]  # no temp file left


def test_explicit_format_overrides_the_suffix(tmp_path: Path) -> None:
    path = export_spans(SPANS[:1], tmp_path / "spans.txt", fmt="csv")
    assert len(read_csv(path)) == 1


def test_unknown_suffix_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(SplitTracerError, match="export format") as error:
        export_spans(SPANS, tmp_path / "spans.xlsx")
    assert "*.csv or *.parquet" in (error.value.hint or "")


def test_unknown_explicit_format_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(SplitTracerError, match="unknown export format 'xlsx'"):
        export_spans(SPANS, tmp_path / "spans.csv", fmt="xlsx")  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_export_that_fails_midway_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = export_spans(SPANS, tmp_path / "spans.csv")
    before = path.read_bytes()

    def broken(spans: list[Span]) -> dict[str, object]:
        raise OSError("disk full")

    # The header is already written when the first record fails.
    monkeypatch.setattr("splittracer.report.export._record", broken)
    with pytest.raises(OSError, match="disk full"):
        export_spans(SPANS, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["spans.csv"]


def test_export_run_from_the_store(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "runs.sqlite") as store:
        run_id = store.create_run("e", "")
        spans = [Span(**{**_fields(s), "run_id": run_id}) for s in SPANS]
        store.append_spans(run_id, spans)
        path = export_run(store, "latest", tmp_path / "latest.csv")
    assert [r["run_id"] for r in read_csv(path)] == [run_id, run_id]


def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # makes `import pyarrow` fail
    with pytest.raises(SplitTracerError, match="pyarrow") as error:
        export_spans(SPANS, tmp_path / "spans.parquet")
    assert "pip install 'splittracer[parquet]'" in (error.value.hint or "")
    assert list(tmp_path.iterdir()) == []


def test_parquet_export(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    table = pq.read_table(export_spans(SPANS, tmp_path / "spans.parquet"))
    assert table.column_names == list(COLUMNS)
    assert table.column("bytes_raw").to_pylist() == [0, 4096]
    assert table.column("duration_ms").to_pylist() == [2.0, 0.5]
    empty = pq.read_table(export_spans([], tmp_path / "empty.parquet"))
    assert empty.num_rows == 0 and str(empty.schema.field("kind").type) == "string"


def _fields(span: Span) -> dict[str, object]:
    return {name: getattr(span, name) for name in span.__struct_fields__}
