"""Metrics handlers record with ``ctx.record``: tied to their inference, summarised, exported, reported."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.metrics import Metric, ResultsStore, RunRecord, Span
from splittracer.report.custom import summarize_metrics
from splittracer.report.export import export_run_metrics, metrics_path
from splittracer.report.html import write_html_report
from splittracer.report.runs import run_summary, summary_to_dict

from .report_store import INFERENCES_PER_SPLIT, make_run

MS = 1_000_000


def span(kind: str, split: int, i: int, *, warmup: bool = False, stage: int = 0) -> Span:
    return Span(
        run_id="r",
        participant="phone" if stage == 0 else "cloud",
        stage=stage,
        kind=kind,
        inference=i,
        split=split,
        start_layer=0 if stage == 0 else split,
        end_layer=split if stage == 0 else 4,
        start_ns=0,
        end_ns=MS,
        attrs={"warmup": True} if warmup else {},
    )


def done(split: int, i: int, *, warmup: bool = False) -> list[Span]:
    return [span("compute", split, i, warmup=warmup), span("inference", split, i, warmup=warmup)]


def metric(
    name: str, value: float, split: int = -1, i: int = -1, **attrs: str | int | float | bool
) -> Metric:
    return Metric(
        run_id="r",
        participant="cloud",
        name=name,
        value=value,
        time_ns=i,
        inference=i,
        split=split,
        attrs=attrs,
    )


SPANS = [*done(1, 0, warmup=True), *done(1, 1), *done(1, 2), *done(1, 3), *done(2, 4), *done(2, 5)]
SPANS.append(span("compute", 2, 6))  # inference 6 never completed


def test_samples_are_summarised_per_split_of_their_inference() -> None:
    metrics = [
        metric("top1", 9.0, 1, 0),  # warm-up: left out
        metric("top1", 1.0, 1, 1),
        metric("top1", 0.0, 1, 2),
        metric("top1", 1.0, 1, 3),
        metric("top1", 1.0, 2, 4),
        metric("top1", 5.0, 2, 6),  # its inference failed: left out
    ]
    rows = summarize_metrics(metrics, SPANS)
    assert [(r.name, r.cuts, r.count, r.value.median, r.mean) for r in rows] == [
        ("top1", (1,), 3, 1.0, pytest.approx(2 / 3)),
        ("top1", (2,), 1, 1.0, 1.0),
    ]
    assert rows[0].value.p25 == 0.5 and rows[0].cut_label == "1"


def test_each_set_of_attributes_is_a_row_of_its_own() -> None:
    metrics = [
        metric("confidence", 0.9, 1, 1, cls="dog"),
        metric("confidence", 0.7, 1, 2, cls="dog"),
        metric("confidence", 0.2, 1, 3, cls="cat"),
        metric("confidence", 0.4, 1, 3, cls="cat", inference=3),  # an explicit id is not an attribute
    ]
    rows = summarize_metrics(metrics, SPANS)
    assert [(r.attrs_label, r.count, r.value.median) for r in rows] == [
        ("cls=cat", 2, pytest.approx(0.3)),
        ("cls=dog", 2, pytest.approx(0.8)),
    ]


def test_samples_outside_inferences_are_apart_and_samplers_are_left_out() -> None:
    metrics = [
        metric("model_mb", 42.0),
        metric("cpu_process_percent", 80.0),
        metric("split_plan", 3.0, inference=0),
        metric("clock_offset_ns", 5.0),
    ]
    (row,) = summarize_metrics(metrics, SPANS)
    assert (row.name, row.cuts, row.cut_label, row.count) == ("model_mb", (), "—", 1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    with ResultsStore(tmp_path / "results.sqlite") as opened:
        yield opened


def with_custom(store: ResultsStore) -> str:
    """The report store's sweep, the cloud recording a per-inference score with a class label."""
    run_id = make_run(store, system=False, energy=False, split_tensors=(1, 1, 2, 3, 1))
    per_split = INFERENCES_PER_SPLIT + 1
    samples = [
        Metric(
            run_id=run_id,
            participant="cloud",
            name="score",
            value=float(index % per_split),
            time_ns=index,
            inference=index,
            split=index // per_split,
            attrs={"cls": "dog"},
        )
        for index in range(5 * per_split)
    ]
    store.append_metrics(run_id, samples)
    return run_id


def test_the_store_keeps_a_samples_inference_and_split(store: ResultsStore) -> None:
    run_id = store.create_run("e", "")
    sample = Metric(run_id=run_id, participant="p", name="x", value=1.0, time_ns=1, inference=7, split=3)
    store.append_metrics(
        run_id, [sample, Metric(run_id=run_id, participant="p", name="y", value=2, time_ns=2)]
    )
    tied, free = store.metrics(run_id)
    assert (tied.inference, tied.split) == (7, 3) and (free.inference, free.split) == (-1, -1)


def test_results_json_has_the_metrics_and_the_tensors_of_each_cut(store: ResultsStore) -> None:
    data = summary_to_dict(run_summary(store, with_custom(store)))
    # Warm-up (the first of each split, score 0) is left out: scores 1, 2, 3 remain.
    assert [(m["split"], m["cuts"], m["attrs"], m["count"], m["median"]) for m in data["metrics"]] == [
        (k, [k], {"cls": "dog"}, 3, 2.0) for k in range(5)
    ]
    assert [s["tensors"] for s in data["splits"]] == [[1], [1], [2], [3], [1]]
    assert json.loads(json.dumps(data)) == data


def test_a_run_without_a_tensor_count_says_none(store: ResultsStore) -> None:
    run_id = make_run(store, system=False, energy=False)
    assert run_summary(store, run_id).tensors[0] == (None,)


def test_metrics_export_beside_the_spans_with_inference_split_and_attrs(
    store: ResultsStore, tmp_path: Path
) -> None:
    run_id = with_custom(store)
    path = export_run_metrics(store, run_id, metrics_path(tmp_path / "run.csv"))
    assert path == tmp_path / "run-metrics.csv"
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 20 and rows[6]["name"] == "score"
    assert (rows[6]["inference"], rows[6]["split"], json.loads(rows[6]["attrs"])) == (
        "6",
        "1",
        {"cls": "dog"},
    )
    assert export_run_metrics(store, store.create_run("e", ""), tmp_path / "none.csv") is None


def test_metrics_export_to_parquet(store: ResultsStore, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    path = export_run_metrics(store, with_custom(store), tmp_path / "m.parquet")
    assert path is not None
    table = pq.read_table(path)
    assert table.num_rows == 20 and table.column("split").to_pylist()[6] == 1
    assert str(table.schema.field("value").type) == "double"


def test_html_report_shows_the_recorded_metrics_and_tensors(store: ResultsStore, tmp_path: Path) -> None:
    text = write_html_report(store, with_custom(store), tmp_path / "r.html").html.read_text(encoding="utf-8")
    section = text.split('<section id="metrics">')[1].split("</section>")[0]
    assert "<td>score</td><td>cloud</td><td>2</td><td>cls=dog</td><td>3</td><td>2.000</td>" in section
    splits = text.split('<section id="splits">')[1].split("</section>")[0]
    assert "<th>tensors</th>" in splits and "<td>3</td></tr>" in splits


def test_html_report_of_a_run_without_custom_metrics_says_so(store: ResultsStore, tmp_path: Path) -> None:
    run_id = make_run(store, system=False, energy=False)
    text = write_html_report(store, run_id, tmp_path / "r.html").html.read_text(encoding="utf-8")
    assert "No handler recorded a metric with ctx.record." in text


def test_chain_rows_show_every_cut_and_each_hop_in_the_report(store: ResultsStore, tmp_path: Path) -> None:
    run_id = store.create_run("chain", "", RunRecord(layers=("a", "b", "c"), split_tensors=(1, 2, 3, 1)))
    spans = []
    for i in range(2):
        for stage, (start, end) in enumerate(((0, 1), (1, 2), (2, 3))):
            who = ("phone", "edge", "cloud")[stage]
            spans.append(
                Span(
                    run_id=run_id,
                    participant=who,
                    stage=stage,
                    kind="compute",
                    inference=i,
                    split=1,
                    start_layer=start,
                    end_layer=end,
                    start_ns=0,
                    end_ns=MS,
                )
            )
        for stage, (a, b, n) in enumerate((("phone", "edge", 100), ("edge", "cloud", 60))):
            spans.append(
                Span(
                    run_id=run_id,
                    participant=b,
                    stage=stage,
                    kind="transfer",
                    inference=i,
                    split=1,
                    start_ns=0,
                    end_ns=(stage + 2) * MS,
                    bytes_raw=n,
                    attrs={"from": a, "to": b, "direction": "forward"},
                )
            )
        spans.append(
            Span(
                run_id=run_id,
                participant="phone",
                stage=0,
                kind="inference",
                inference=i,
                split=1,
                start_ns=0,
                end_ns=9 * MS,
            )
        )
    store.append_spans(run_id, spans)
    text = write_html_report(store, run_id, tmp_path / "r.html").html.read_text(encoding="utf-8")
    splits = text.split('<section id="splits">')[1].split("</section>")[0]
    assert "<th>phone→edge ms</th><th>phone→edge bytes</th><th>edge→cloud ms</th>" in splits
    assert "<td>1→2</td><td>a → b</td>" in splits and "<td>2→3</td>" in splits
    assert "<td>2.000</td><td>100</td><td>3.000</td><td>60</td>" in splits
