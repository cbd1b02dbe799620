"""A participant's inbox: tasks in priority order, at most :data:`INBOX_LIMIT` of them waiting.

Why bounded: a peer that sends tasks faster than the handlers take them would otherwise grow
the receiver's memory without end. A task that finds the inbox full holds the connection it
came on until a worker takes one: a sender's ``send`` returns only once the receiver
acknowledged the task, so a flooding sender is slowed to the receiver's pace (backpressure),
and what waits is one task per connection, not an unbounded queue. Control items (stopping
the workers) never wait.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

__all__ = ["INBOX_LIMIT", "Inbox"]

INBOX_LIMIT = 256
"""Tasks a participant holds queued; a sender beyond it waits for room."""

T = TypeVar("T")


@dataclass(order=True)
class _Entry(Generic[T]):
    item: T
    counted: bool = field(compare=False)


class Inbox(Generic[T]):
    """A priority queue of at most ``limit`` tasks (items order as they compare) plus control items."""

    def __init__(self, limit: int = INBOX_LIMIT) -> None:
        self.limit = limit
        self._queue: queue.PriorityQueue[_Entry[Any]] = queue.PriorityQueue()
        self._room = threading.Semaphore(limit)

    def wait_for_room(self) -> None:
        """Block until a task may be queued; then :meth:`put` it (the room is held for it)."""
        self._room.acquire()

    def put(self, item: T) -> None:
        """Queue a task for which :meth:`wait_for_room` returned."""
        self._queue.put(_Entry(item, True))

    def put_control(self, item: T) -> None:
        """Queue an item that takes no room and never waits (stopping the workers)."""
        self._queue.put(_Entry(item, False))

    def get(self) -> T:
        """The next item, highest priority first; a task's room is free again."""
        entry = self._queue.get()
        if entry.counted:
            self._room.release()
        item: T = entry.item
        return item

    def qsize(self) -> int:
        """Items queued now."""
        return self._queue.qsize()
