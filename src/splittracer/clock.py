"""The one clock every span is stamped with, and a way to shift it for tests.

Spans use the monotonic ``time.perf_counter_ns`` of the process that records
them. Clocks of different machines are unrelated, so the controller
measures each participant's offset (:mod:`splittracer.controller.clocksync`)
and moves every span onto its own clock before storing it.

``SPLITTRACER_CLOCK_SHIFT_NS`` adds a constant to this process's clock. It
exists to test that offsets are recovered — a participant started with a
shift of +250 ms must come out with an offset of +250 ms and unchanged
transfer times — and has no other use.
"""

from __future__ import annotations

import os
import time

SHIFT_ENV = "SPLITTRACER_CLOCK_SHIFT_NS"
_SHIFT = int(os.environ.get(SHIFT_ENV, "0") or 0)


def now_ns() -> int:
    """This process's span clock, in nanoseconds."""
    return time.perf_counter_ns() + _SHIFT
