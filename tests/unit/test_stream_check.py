"""A throughput plan against a stream run: the streams' cuts, what limited them, what is compared."""

from __future__ import annotations

import types

import pytest

from splittracer.controller.streamcheck import StreamCheck, StreamPlanCheck, stream_cuts
from splittracer.metrics.spans import Span


def _frame(inference: int, stream: int, ends: list[int], **attrs) -> list[Span]:
    common = {"run_id": "r", "inference": inference, "split": ends[0], "start_ns": 0, "end_ns": 1}
    spans = [Span(participant="p0", stage=0, kind="inference", attrs={"stream": stream, **attrs}, **common)]
    spans += [
        Span(participant=f"p{k}", stage=k, kind="compute", end_layer=end, **common)
        for k, end in enumerate(ends)
    ]
    return spans


def test_a_streams_cuts_are_where_its_stages_stopped() -> None:
    spans = _frame(1, 0, [3, 7, 10]) + _frame(2, 0, [3, 7, 10]) + _frame(3, 1, [5, 10])
    spans += _frame(4, 2, [4, 10], error="ValueError")  # a failed frame is no sample
    assert stream_cuts(spans) == {0: (3, 7), 1: (5,)}


def _check(stream: int, cuts: tuple[int, ...], achieved: float, planned: float, **load) -> StreamCheck:
    loop = {"loop": "closed", "offered_fps": 0.0, "inflight": 4, **load}
    return StreamCheck(
        stream, "phone", 1, cuts, 10, achieved_fps=achieved, planned_fps=planned, planned_cycle_ms=1, **loop
    )


def test_what_limited_a_stream_is_said() -> None:
    assert _check(0, (3,), 20.0, 30.0).limited_by == ""
    assert _check(0, (3,), 20.0, 30.0, inflight=1).limited_by == "one in flight"
    assert _check(0, (3,), 19.5, 30.0, loop="poisson", offered_fps=20.0).limited_by == "offered load"
    assert _check(0, (3,), 12.0, 30.0, loop="poisson", offered_fps=20.0).limited_by == ""  # fell behind
    assert _check(0, (3,), 20.0, 30.0).error == pytest.approx(0.5)


def _planned(cuts: tuple[int, ...]):
    """Just enough of a SplitPrediction for StreamPlanCheck.planned."""
    return types.SimpleNamespace(chain=types.SimpleNamespace(best=types.SimpleNamespace(cuts=cuts)))


def test_the_choice_or_the_streamed_cuts_planned_fastest_is_compared() -> None:
    rows = (_check(0, (3,), 20.0, 25.0), _check(1, (5,), 30.0, 40.0), _check(2, (9,), 24.0, 35.0))
    streamed = StreamPlanCheck("r", "x", _planned((9,)), rows)  # type: ignore[arg-type]
    assert streamed.compared.stream == 2 and streamed.shortfall == pytest.approx(0.2)
    unstreamed = StreamPlanCheck("r", "x", _planned((7,)), rows)  # type: ignore[arg-type]
    assert unstreamed.planned_rows == () and unstreamed.compared.stream == 1 and unstreamed.shortfall == 0.0
