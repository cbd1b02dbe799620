"""Clock offsets between the controller and each participant, NTP style.

The controller reads its clock (``t0``), asks the participant for its clock
(``tp``) and reads its own again (``t1``). If the request and the answer
took equally long, the participant read its clock at ``(t0 + t1) / 2`` of
ours, so ``offset = tp - (t0 + t1) / 2``; however the two legs differ, the
error is at most half the round trip. Of several exchanges the one with the
shortest round trip is kept: its bound is the tightest.

Spans are then moved onto the controller's clock: a span recorded on one
participant shifts by that participant's offset; a transfer span starts on
the sender's clock and ends on the receiver's, so each end shifts by its
own participant's offset, and its uncertainty is the sum of both bounds.
A one-way time is never a difference of two machines' raw clocks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgspec

from ..clock import now_ns
from ..metrics.spans import Span


@dataclass(frozen=True)
class ClockEstimate:
    """A participant's clock minus the controller's, with an error bound."""

    offset_ns: int
    uncertainty_ns: int
    samples: int


def estimate_offset(read_remote: Callable[[], int], samples: int = 8) -> ClockEstimate:
    """Offset of the clock behind ``read_remote`` from ours, best of ``samples`` exchanges."""
    best: tuple[int, int] | None = None  # (round trip, offset)
    for _ in range(samples):
        t0 = now_ns()
        remote = read_remote()
        t1 = now_ns()
        trip = t1 - t0
        if best is None or trip < best[0]:
            best = (trip, remote - (t0 + t1) // 2)
    assert best is not None
    return ClockEstimate(offset_ns=best[1], uncertainty_ns=(best[0] + 1) // 2, samples=samples)


def to_controller_clock(span: Span, estimates: Mapping[str, ClockEstimate]) -> Span:
    """``span`` with both ends moved onto the controller's clock."""
    own = estimates.get(span.participant)
    if span.kind != "transfer":
        return span if own is None else span.shifted(-own.offset_ns)
    sender = estimates.get(str(span.attrs.get("from", "")))
    start = span.start_ns - (sender.offset_ns if sender else 0)
    end = span.end_ns - (own.offset_ns if own else 0)
    bound = (sender.uncertainty_ns if sender else 0) + (own.uncertainty_ns if own else 0)
    attrs = {**span.attrs, "clock_uncertainty_ns": bound}
    return msgspec.structs.replace(span, start_ns=start, end_ns=end, attrs=attrs)
