"""The participant's inbox: highest priority first, arrival order among equals; bounded, so a
sender flooding it waits for room and memory stays bounded."""

from __future__ import annotations

import itertools
import threading
import time

from splittracer.participant.inbox import INBOX_LIMIT, Inbox
from splittracer.participant.runtime import _Queued


def test_inbox_serves_higher_priority_first_then_arrival_order():
    inbox: Inbox[_Queued] = Inbox()
    seq = itertools.count()
    arrivals = [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5)]
    for name, priority in arrivals:
        item = _Queued(-priority, next(seq), None)
        item.name = name  # type: ignore[attr-defined]
        inbox.wait_for_room()
        inbox.put(item)
    order = [inbox.get().name for _ in arrivals]  # type: ignore[attr-defined]
    assert order == ["d", "b", "e", "a", "c"]


def test_a_flooding_sender_waits_and_the_queue_never_exceeds_its_limit() -> None:
    inbox: Inbox[int] = Inbox(limit=8)
    sent = 0
    most = 0

    def flood() -> None:
        nonlocal sent
        for i in range(400):
            inbox.wait_for_room()
            inbox.put(i)
            sent += 1

    sender = threading.Thread(target=flood)
    sender.start()
    taken = []
    while len(taken) < 400:
        most = max(most, inbox.qsize())
        if len(taken) < 20:
            time.sleep(0.005)  # a slow handler at first: the sender must wait for it
            assert sent <= len(taken) + 8
        taken.append(inbox.get())
    sender.join(5)
    assert not sender.is_alive()
    assert most <= 8 and sorted(taken) == list(range(400))


def test_control_items_never_wait_and_come_first_by_priority() -> None:
    inbox: Inbox[tuple[int, str]] = Inbox(limit=1)
    inbox.wait_for_room()
    inbox.put((0, "task"))
    inbox.put_control((-1, "stop"))  # the inbox is full: a task would wait, a control item does not
    assert inbox.get() == (-1, "stop") and inbox.get() == (0, "task")
    inbox.wait_for_room()  # the task's room is free again (would block otherwise)


def test_the_default_limit_is_bounded() -> None:
    assert 0 < INBOX_LIMIT <= 1024
