"""The participant's inbox: highest priority first, arrival order among equals."""

from __future__ import annotations

import itertools
import queue

from splittracer.participant.runtime import _Queued


def test_inbox_serves_higher_priority_first_then_arrival_order():
    inbox: queue.PriorityQueue[_Queued] = queue.PriorityQueue()
    seq = itertools.count()
    arrivals = [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5)]
    for name, priority in arrivals:
        item = _Queued(-priority, next(seq), None)
        item.name = name  # type: ignore[attr-defined]
        inbox.put(item)
    order = [inbox.get().name for _ in arrivals]  # type: ignore[attr-defined]
    assert order == ["d", "b", "e", "a", "c"]
