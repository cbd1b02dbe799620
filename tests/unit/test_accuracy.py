"""Predictions compared with a reference and labels; the per (cuts, codec) accuracy summary."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from splittracer.errors import SplitTracerError
from splittracer.metrics.accuracy import classification, predict, reference_outputs, relative_error
from splittracer.metrics.spans import Metric, Span
from splittracer.report.accuracy import AccuracyRow, accuracy_rows
from splittracer.report.ratecharts import pareto_front, plot_latency_accuracy, plot_rate_accuracy


def test_predict_gives_top5_agreement_error_and_correctness() -> None:
    ref = torch.tensor([[0.1, 0.9, 0.3, 0.2, 0.0, 0.5]])
    close = ref + 0.01
    swapped = torch.tensor([[0.9, 0.1, 0.3, 0.2, 0.0, 0.5]])
    found = predict([close], [ref], label=1)
    assert (found.top1, found.top5, found.agrees) == (1, (1, 5, 2, 3, 0), True)
    assert found.rel_error == pytest.approx(math.sqrt(6 * 0.01**2) / float(ref.norm()), rel=1e-5)
    assert found.attrs()["correct"] is True and found.attrs()["correct5"] is True
    wrong = predict([swapped], [ref], label=1)
    assert wrong.agrees is False and wrong.attrs()["correct"] is False and wrong.attrs()["correct5"] is True
    assert predict([ref], [ref]).rel_error == 0.0 and "label" not in predict([ref], [ref]).attrs()


def test_outputs_that_are_no_classification_still_get_their_error() -> None:
    boxes = torch.randn(1, 84, 100)
    found = predict([boxes * 1.01], [boxes])
    assert found.top1 == -1 and found.agrees is None and abs(found.rel_error - 0.01) < 1e-6
    assert classification([torch.randn(3)]) is None and classification([torch.randn(2, 1)]) is None
    assert relative_error([torch.zeros(2)], [torch.zeros(3)]) == math.inf


def test_reference_outputs_are_the_models_leaves_on_the_cpu() -> None:
    model = torch.nn.Linear(4, 3)
    x = torch.randn(1, 4)
    (out,) = reference_outputs(model, x, torch.device("cpu"))
    assert torch.equal(out, model(x).detach())


def _span(kind: str, inference: int, ns: int = 0, **attrs: object) -> Span:
    fields = {"bytes_raw": 400, "bytes_wire": 100} if kind == "transfer" else {}
    return Span(
        run_id="r", participant="phone", stage=0, kind=kind, inference=inference, split=2,
        start_ns=0, end_ns=ns, attrs=dict(attrs), **fields,
    )  # fmt: skip


def test_accuracy_rows_group_by_cuts_and_codec_and_skip_warmups() -> None:
    spans, metrics = [], []
    for i, (codec, agrees, correct, warm) in enumerate(
        [
            ("none", True, True, False),
            ("int8", True, False, False),
            ("int8", False, False, False),
            ("int8", False, True, True),
        ]
    ):
        extra = {"warmup": True} if warm else {}
        spans += [
            _span("inference", i, 2_000_000, codec=codec, **extra),
            _span("transfer", i, direction="forward"),
        ]
        spans += [_span("compute", i, 1, **extra)]
        attrs = {
            "codec": codec,
            "agrees": agrees,
            "rel_error": 0.5 * i,
            "correct": correct,
            "correct5": True,
            **extra,
        }
        metrics.append(
            Metric(
                run_id="r",
                participant="phone",
                name="prediction",
                value=1.0,
                time_ns=0,
                inference=i,
                split=2,
                attrs=attrs,
            )
        )
    rows = accuracy_rows(spans, metrics)
    assert [(r.cuts, r.codec, r.count, r.agreement, r.top1, r.top5) for r in rows] == [
        ((2,), "none", 1, 1.0, 1.0, 1.0),  # in the order the run used the codecs
        ((2,), "int8", 2, 0.5, 0.0, 1.0),
    ]
    assert rows[1].bytes_wire == 100 and rows[1].bytes_raw == 400 and rows[1].total_ms == 2.0


def _row(
    split: int, codec: str, wire: float, ms: float, top1: float | None, agreement: float | None = 1.0
) -> AccuracyRow:
    return AccuracyRow(
        (split,), codec, 10, round(4 * wire), round(wire), ms, agreement, 0.0, top1, top1, 10 if top1 else 0
    )


def test_pareto_front_keeps_what_nothing_beats_on_latency_and_accuracy() -> None:
    rows = [_row(0, "none", 800, 10, 0.99), _row(0, "int8", 200, 6, 0.97), _row(3, "int8", 50, 8, 0.96)]
    rows += [_row(3, "int4", 25, 5, 0.90), _row(5, "fp16", 100, 12, 0.99)]
    assert [(r.split, r.codec) for r in pareto_front(rows)] == [(3, "int4"), (0, "int8"), (0, "none")]


def test_rate_and_latency_charts_are_written_with_agreement_when_unlabelled(tmp_path) -> None:
    rows = [
        _row(k, c, 100.0 * (k + 1) / (2 if c == "fp16" else 1), 5.0 + k, None)
        for k in range(3)
        for c in ("none", "fp16")
    ]
    rate = plot_rate_accuracy(rows, tmp_path / "rate", "t")
    latency = plot_latency_accuracy(rows, tmp_path / "latency", "t")
    assert all(p.stat().st_size > 1000 for p in (*rate.paths, *latency.paths))
    assert "agreement" in rate.svg and "Pareto" in latency.svg
    with pytest.raises(SplitTracerError, match="no classification"):
        plot_rate_accuracy([_row(0, "none", 1, 1, None, agreement=None)], tmp_path / "none", "t")


def test_an_accuracy_table_is_shown_only_when_it_says_something() -> None:
    from splittracer.report.accuracy import accuracy_informative

    plain = [_row(0, "none", 100, 1.0, None), _row(5, "none", 10, 2.0, None)]
    assert not accuracy_informative(plain)  # a split sweep: the model agreed with itself everywhere
    assert accuracy_informative([*plain, _row(5, "int8", 3, 2.0, None)])  # a codec to compare
    assert accuracy_informative([_row(0, "none", 100, 1.0, 0.9)])  # labels: top-1 accuracy
    assert accuracy_informative([_row(0, "none", 100, 1.0, None, agreement=0.98)])  # a difference
    rounding = dataclasses.replace(plain[0], rel_error=1e-7)  # thread counts round differently
    assert not accuracy_informative([rounding])
    assert accuracy_informative([dataclasses.replace(plain[0], rel_error=0.01)])
