"""The ``splittracer results`` commands, run as a user would: a real process on a real workspace."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from splittracer.metrics import Metric, ResultsStore, RunRecord, Span
from splittracer.workspace import init_workspace

MS = 1_000_000


@dataclass(frozen=True)
class Filled:
    root: Path
    results: Path
    good: str
    failed: str


def span(run_id: str, kind: str, stage: int, split: int, i: int, ms: float, **extra: object) -> Span:
    start = (1 + i) * 1_000 * MS
    return Span(
        run_id=run_id,
        participant="phone" if stage == 0 else "cloud",
        stage=stage,
        kind=kind,
        inference=i,
        split=split,
        start_ns=start,
        end_ns=start + round(ms * MS),
        **extra,  # type: ignore[arg-type]
    )


def inference(run_id: str, split: int, i: int, scale: float, nbytes: int, warmup: bool = False) -> list[Span]:
    warm: dict[str, object] = {"warmup": True} if warmup else {}
    fwd, back = {**warm, "direction": "forward"}, {**warm, "direction": "reply"}
    return [
        span(run_id, "compute", 0, split, i, 1 * scale, attrs=warm),
        span(run_id, "transfer", 0, split, i, 5 * scale, bytes_raw=nbytes, attrs=fwd),
        span(run_id, "compute", 1, split, i, 2 * scale, attrs=warm),
        span(run_id, "transfer", 1, split, i, 1 * scale, bytes_raw=40, attrs=back),
        span(run_id, "inference", 0, split, i, 10 * scale, attrs=warm),
    ]


def accuracy(run_id: str, split: int, i: int, value: float) -> Metric:
    return Metric(
        run_id=run_id,
        participant="cloud",
        name="accuracy",
        value=value,
        time_ns=i,
        inference=i,
        split=split,
        attrs={"label": "cat"},
    )


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    ws = init_workspace(tmp_path_factory.mktemp("cli-results") / "ws")
    with ResultsStore(ws.results_db) as store:
        record = RunRecord(layers=("conv1", "relu1"), split_tensors=(1, 3, 2))
        good = store.create_run("neurosurgeon", "name: neurosurgeon\n", record)
        spans: list[Span] = []
        metrics: list[Metric] = []
        for split, nbytes in ((1, 8000), (2, 2000)):
            for i, scale in enumerate((50.0, 1.0, 2.0)):
                spans += inference(good, split, 10 * split + i, scale, nbytes, warmup=i == 0)
                metrics.append(accuracy(good, split, 10 * split + i, scale))
        store.append_spans(good, spans)
        store.append_metrics(good, metrics)
        store.finish_run(good, "succeeded")
        failed = store.create_run("neurosurgeon", "name: neurosurgeon\n")
        store.append_spans(failed, inference(failed, 1, 0, 1.0, 8000))
        store.finish_run(failed, "failed", "participant 'cloud' exited with status 1")
    return Filled(ws.root, ws.results_dir, good, failed)


def splittracer(filled: Filled, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splittracer", "results", *args, "--workspace", str(filled.root)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=filled.root.parent,
    )


def test_ls_json_lists_both_runs(filled: Filled) -> None:
    result = splittracer(filled, "ls", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["id"], r["status"], r["inferences"]) for r in runs] == [
        (filled.good, "succeeded", 4),
        (filled.failed, "failed", 1),
    ]


def test_ls_table(filled: Filled) -> None:
    result = splittracer(filled, "ls", "--experiment", "neurosurgeon")
    assert result.returncode == 0, result.stderr
    assert filled.good in result.stdout and "succeeded" in result.stdout and "failed" in result.stdout


def test_show_json_has_forward_bytes_per_split(filled: Filled) -> None:
    prefix = next(filled.good[:n] for n in range(1, 30) if not filled.failed.startswith(filled.good[:n]))
    result = splittracer(filled, "show", prefix, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["run"]["id"] == filled.good
    assert [(s["split"], s["after"], s["count"], s["bytes_raw"]) for s in data["splits"]] == [
        (1, "conv1", 2, 8000),
        (2, "relu1", 2, 2000),
    ]
    assert data["splits"][0]["total_ms"] == pytest.approx(15.0)
    assert [s["tensors"] for s in data["splits"]] == [[3], [2]]
    # The warm-up's sample (50.0) is left out of each split's summary.
    assert [(m["name"], m["split"], m["attrs"], m["count"], m["median"]) for m in data["metrics"]] == [
        ("accuracy", 1, {"label": "cat"}, 2, 1.5),
        ("accuracy", 2, {"label": "cat"}, 2, 1.5),
    ]


def test_show_table(filled: Filled) -> None:
    result = splittracer(filled, "show", filled.good)
    assert result.returncode == 0, result.stderr
    texts = ("succeeded", "conv1", "relu1", "8,000", "head ms", "total IQR ms", "tensors", "accuracy")
    for text in (*texts, "label=cat", "Recorded metrics"):
        assert text in result.stdout


def test_show_failed_run_gives_status_error_and_what_it_recorded(filled: Filled) -> None:
    result = splittracer(filled, "show", "latest")
    assert result.returncode == 0, result.stderr
    assert "failed" in result.stdout and "participant 'cloud' exited with status 1" in result.stdout
    assert "8,000" in result.stdout


def test_show_unknown_run_is_one_paragraph_exit_2(filled: Filled) -> None:
    result = splittracer(filled, "show", "nosuchrun")
    assert result.returncode == 2
    assert "no run 'nosuchrun'" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_no_workspace_exits_2(filled: Filled, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "splittracer", "results", "ls", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "is not a workspace" in result.stderr and "Traceback" not in result.stderr


def test_export_csv_to_the_results_folder(filled: Filled) -> None:
    result = splittracer(filled, "export", filled.good, "--format", "csv")
    assert result.returncode == 0, result.stderr
    path = filled.results / f"{filled.good}.csv"
    assert path.is_file()
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30 and {r["run_id"] for r in rows} == {filled.good}
    metrics = filled.results / f"{filled.good}-metrics.csv"
    assert str(metrics) in result.stdout
    with metrics.open(newline="", encoding="utf-8") as handle:
        samples = list(csv.DictReader(handle))
    assert [(r["name"], r["inference"], r["split"], r["attrs"]) for r in samples][:1] == [
        ("accuracy", "10", "1", '{"label": "cat"}')
    ]
    assert len(samples) == 6


def test_export_parquet_to_a_chosen_path(filled: Filled, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    target = tmp_path / "out" / "run.parquet"
    result = splittracer(filled, "export", "latest", "--format", "parquet", "--output", str(target))
    assert result.returncode == 0, result.stderr
    assert pq.read_table(target).num_rows == 5


def test_plot_writes_and_prints_the_charts(filled: Filled, tmp_path: Path) -> None:
    result = splittracer(filled, "plot", filled.good, "--output", str(tmp_path))
    assert result.returncode == 0, result.stderr
    png = tmp_path / f"{filled.good}-splits.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / f"{filled.good}-bytes.svg").is_file()
    assert str(png) in result.stdout


def test_plot_defaults_to_the_results_folder(filled: Filled) -> None:
    result = splittracer(filled, "plot", filled.good)
    assert result.returncode == 0, result.stderr
    assert (filled.results / f"{filled.good}-bytes.png").is_file()


def test_show_and_ls_on_a_store_written_before_records_were_typed(tmp_path: Path) -> None:
    ws = init_workspace(tmp_path / "ws")
    ws.results_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).parents[1] / "unit" / "fixtures" / "store_v1.sqlite", ws.results_db)
    old = Filled(ws.root, ws.results_dir, "20261127-110550-b185", "20261127-110550-8209")
    table = splittracer(old, "show", old.good)
    assert table.returncode == 0, table.stderr
    for text in ("succeeded", "conv1", "pool1", "fc", "total IQR ms", "Planned splits"):
        assert text in table.stdout
    data = json.loads(splittracer(old, "show", old.good, "--json").stdout)
    assert data["run"]["metadata"]["participants"]["phone"]["uplink_bps"] == 20e6
    assert data["run"]["metadata"]["layers"] == ["conv1", "relu1", "pool1", "fc"]
    listed = json.loads(splittracer(old, "ls", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(old.good, "succeeded"), (old.failed, "failed")]
    failed = splittracer(old, "show", "latest")
    assert failed.returncode == 0 and "exited with status 1" in failed.stdout
