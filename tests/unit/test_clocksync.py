"""Clock offset estimation and span correction, with fake remote clocks."""

from __future__ import annotations

import pytest

from splittracer.clock import now_ns
from splittracer.controller.clocksync import ClockEstimate, estimate_offset, to_controller_clock
from splittracer.metrics.spans import Span


def test_estimate_recovers_a_constant_offset():
    estimate = estimate_offset(lambda: now_ns() + 123_456_789, samples=5)
    assert abs(estimate.offset_ns - 123_456_789) <= estimate.uncertainty_ns + 50_000
    assert estimate.samples == 5


def test_estimate_keeps_the_shortest_round_trip():
    # The long trips are far apart from the short one, so that a busy machine's late wake-ups
    # (milliseconds) cannot make the short trip look like a long one.
    trips = iter([80_000_000, 10_000, 60_000_000])

    def slow_remote() -> int:
        import time

        delay = next(trips) / 1e9
        time.sleep(delay)
        return now_ns() + 1_000  # the clock is read after the request leg: offset looks larger

    estimate = estimate_offset(slow_remote, samples=3)
    assert estimate.uncertainty_ns < 20_000_000  # a long trip's would be >= 30 ms


def span(kind: str, participant: str, start: int, end: int, **attrs) -> Span:
    return Span(
        run_id="r", participant=participant, stage=0, kind=kind, start_ns=start, end_ns=end, attrs=attrs
    )


def test_spans_move_onto_the_controller_clock():
    clocks = {"phone": ClockEstimate(100, 5, 8), "cloud": ClockEstimate(250_000_000, 7, 8)}
    compute = to_controller_clock(span("compute", "cloud", 250_000_500, 250_001_500), clocks)
    assert (compute.start_ns, compute.end_ns) == (500, 1500)
    transfer = to_controller_clock(span("transfer", "cloud", 1_100, 250_003_000, **{"from": "phone"}), clocks)
    assert (transfer.start_ns, transfer.end_ns) == (1_000, 3_000)
    assert transfer.attrs["clock_uncertainty_ns"] == 12


@pytest.mark.parametrize("participant", ["controller", "unknown"])
def test_spans_of_unknown_clocks_are_left_alone(participant):
    original = span("compute", participant, 10, 20)
    assert to_controller_clock(original, {}) == original
