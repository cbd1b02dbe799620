"""Split and codec chosen together within an accuracy budget."""

from __future__ import annotations

import pytest

from splittracer.cli.plan_codecs import parse_drop, qualities
from splittracer.errors import SplitTracerError
from splittracer.plan.chain import ChainEstimate, Link
from splittracer.plan.codecs import CodecQuality, plan_codecs
from splittracer.report.accuracy import AccuracyRow

LTE = Link(bandwidth_bps=8e6)  # 1 byte per microsecond


def _estimate(split: int, nbytes: int, compute_ms: float) -> ChainEstimate:
    transfer = LTE.transfer_ms(nbytes)
    return ChainEstimate((split,), (compute_ms, 1.0), (transfer,), (nbytes,), 0.5)


def test_codecs_shrink_the_transfer_and_the_budget_rules_out_what_costs_too_much() -> None:
    rows = [_estimate(0, 600_000, 1.0), _estimate(5, 100_000, 20.0)]
    measured = [
        CodecQuality(0, "int8", 0.25, 0.02),
        CodecQuality(0, "fp16", 0.5, 0.0),
        CodecQuality(5, "int8", 0.25, 0.0),
    ]
    strict = plan_codecs(rows, LTE, measured, max_drop=0.01)
    assert [(c.split, c.codec) for c in strict] == [(5, "int8"), (5, "none"), (0, "fp16"), (0, "none")]
    assert strict[0].bytes == 25_000 and strict[0].transfer_ms == pytest.approx(25.0)
    assert strict[0].total_ms == pytest.approx(20.0 + 1.0 + 25.0 + 0.5)
    loose = plan_codecs(rows, LTE, measured, max_drop=0.05)
    assert [(c.split, c.codec, c.drop) for c in loose][2] == (0, "int8", 0.02)  # 152.5 ms, allowed now


def _row(split: int, codec: str, wire: int, top1: float) -> AccuracyRow:
    return AccuracyRow((split,), codec, 10, 4 * wire, wire, 1.0, 1.0, 0.0, top1, top1, 10)


def test_qualities_compare_each_codec_with_none_at_the_same_split() -> None:
    rows = [_row(3, "none", 1000, 0.98), _row(3, "int8", 260, 0.97), _row(4, "int8", 100, 0.9)]
    assert qualities(rows) == [CodecQuality(3, "int8", 0.26, pytest.approx(0.01))]
    assert parse_drop("1%") == pytest.approx(0.01) and parse_drop("0.02") == 0.02
    with pytest.raises(SplitTracerError, match="1%"):
        parse_drop("lots")
