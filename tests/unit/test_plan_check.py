"""Reading measured sweeps back and comparing them with a plan."""

from __future__ import annotations

import itertools
import math
import textwrap
import types

import msgspec
import pytest

from splittracer.controller.plancheck import CutCheck, PlanCheck, measured_cuts, run_links
from splittracer.metrics.spans import Span
from splittracer.plan.chain import Link


def _inference(index: int, cuts: list[int], total_ms: float, *, warmup: bool = False, layers: int = 10):
    attrs = {"warmup": True} if warmup else {}
    spans = [
        Span(
            run_id="r",
            participant="p0",
            stage=0,
            kind="inference",
            inference=index,
            split=cuts[0],
            start_ns=0,
            end_ns=int(total_ms * 1e6),
            attrs=attrs,
        )
    ]
    bounds = [0, *cuts, layers]
    for stage, (a, b) in enumerate(itertools.pairwise(bounds)):
        spans.append(
            Span(
                run_id="r",
                participant=f"p{stage}",
                stage=stage,
                kind="compute",
                inference=index,
                split=cuts[0],
                start_layer=a,
                end_layer=b,
                start_ns=0,
                end_ns=1,
                attrs=attrs,
            )
        )
    return spans


def test_measured_cuts_two_devices():
    spans = [
        *_inference(0, [3], 99.0, warmup=True),
        *_inference(1, [3], 10.0),
        *_inference(2, [3], 12.0),
        *_inference(3, [3], 30.0),
        *_inference(4, [0], 50.0),
    ]
    found = measured_cuts(spans)
    assert [(m.cuts, m.count, m.total_ms) for m in found] == [((0,), 1, 50.0), ((3,), 3, 12.0)]
    quartile = measured_cuts(spans, 0.25)  # a disturbed sample (30 ms) cannot move it
    assert [m.total_ms for m in quartile] == [50.0, 11.0]


def test_measured_cuts_three_devices_keep_every_cut():
    spans = [*_inference(0, [2, 5], 10.0), *_inference(1, [2, 7], 20.0), *_inference(2, [2, 7], 22.0)]
    found = measured_cuts(spans)
    assert [(m.cuts, m.count, m.total_ms) for m in found] == [((2, 5), 1, 10.0), ((2, 7), 2, 21.0)]


def test_run_links_follow_the_participants():
    manifest = textwrap.dedent(
        """
        name: x
        model: {source: torchvision:alexnet, granularity: leaf}
        participants:
          phone: {role: "splittracer.builtin:SplitHead", limits: {uplink: 3g, latency: 10ms}}
          edge: {role: "splittracer.builtin:SplitTail", limits: {uplink: 100mbit}}
          cloud: {role: "splittracer.builtin:SplitTail"}
        """
    )
    model, forward, reply = run_links(manifest)
    assert model.source == "torchvision:alexnet"
    assert forward == (Link(1.1e6, 0.01), Link(100e6, 0.0))
    assert reply == (Link(100e6, 0.0), Link(math.inf, 0.0))


def test_plan_check_summaries():
    rows = (CutCheck((0,), 3, 100.0, 90.0), CutCheck((5,), 3, 50.0, 60.0), CutCheck((9,), 3, 48.0, 70.0))
    check = PlanCheck("r", "x", None, rows)  # these summaries read the rows only
    assert check.measured_best.cuts == (9,)
    assert check.predicted_best.cuts == (5,)
    assert rows[1].error == pytest.approx(0.2)
    assert check.median_abs_error == pytest.approx(0.2)
    assert check.rank_correlation == pytest.approx(0.5)


def test_failed_and_interrupted_inferences_are_no_samples():
    failed = _inference(2, [3], 500.0)
    failed[0] = msgspec.structs.replace(failed[0], attrs={"error": "ValueError"})
    interrupted = _inference(3, [0], 900.0)[1:]  # its inference span was never recorded
    spans = [*_inference(1, [3], 10.0), *failed, *interrupted]
    assert [(m.cuts, m.count, m.total_ms) for m in measured_cuts(spans)] == [((3,), 1, 10.0)]


def test_an_unmeasured_choice_is_compared_through_the_predicted_fastest():
    rows = (CutCheck((0,), 3, 100.0, 90.0), CutCheck((5,), 3, 50.0, 60.0), CutCheck((9,), 3, 48.0, 70.0))
    unmeasured = PlanCheck("r", "x", _planned((7,)), rows)
    assert unmeasured.planned_row is None and unmeasured.compared.cuts == (5,)
    assert unmeasured.regret == pytest.approx(50 / 48 - 1)
    measured = PlanCheck("r", "x", _planned((9,)), rows)
    assert measured.compared.cuts == (9,) and measured.regret == 0.0


def _planned(cuts):
    """Just enough of a SplitPrediction for PlanCheck.planned."""
    return types.SimpleNamespace(chain=types.SimpleNamespace(best=types.SimpleNamespace(cuts=cuts)))


def _placed(index: int, placement: str, head_end: int, total_ms: float):
    """One inference of a placement: as the built-in head records it (the placement on its span)."""
    spans = _inference(index, [head_end], total_ms)
    spans[0] = msgspec.structs.replace(spans[0], attrs={"placement": placement})
    return spans


def test_measured_placements_are_grouped_apart_from_the_split_they_end_at():
    spans = [*_inference(1, [3], 10.0), *_placed(2, "1,3", 3, 20.0), *_placed(3, "1,3", 3, 22.0)]
    found = measured_cuts(spans)
    assert [(m.cuts, m.placement, m.count, m.total_ms) for m in found] == [
        ((3,), "", 1, 10.0),
        ((3,), "1,3", 2, 21.0),
    ]
