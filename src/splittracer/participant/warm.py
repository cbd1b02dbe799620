"""``keep_warm: true``: keep a participant's CPU busy while it waits, as a loaded server would be.

A participant that waits between inferences (for a transfer, for the next
request) computes the next one slower: its thread pools go to sleep, an idle
vCPU is descheduled, the CPU's frequency drops. Real devices do the same, so
by default nothing is done about it and each compute span records its
``idle_ms``. ``keep_warm`` is a deliberate *deviation from an idle device*:
a background thread runs small matrix products on torch's threads whenever
the participant is not computing, and stops while it computes, so the
measured compute time is that of a device kept busy. Under a ``cpu`` limit
the spinning spends the participant's own quota.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

__all__ = ["KeepWarm"]

_SIZE = 128  # a product of two 128x128 matrices: well under a millisecond, so a pause waits little


class KeepWarm:
    """A spinning thread, paused while the participant computes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held by the spinner for one product at a time
        self._computing = 0  # compute spans in progress
        self._count_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="keep-warm", daemon=True)
        self.products = 0  # how many products the spinner ran: it did spin

    def start(self) -> None:
        """Start spinning."""
        self._thread.start()

    def stop(self) -> None:
        """Stop spinning and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No spinning inside the block (a compute span): it would compete with the work measured."""
        with self._count_lock:
            self._computing += 1
        with self._lock:  # the product in flight, if any, ends first
            pass
        try:
            yield
        finally:
            with self._count_lock:
                self._computing -= 1

    def _spin(self) -> None:
        a = torch.randn(_SIZE, _SIZE)
        with torch.no_grad():
            while not self._stop.is_set():
                if self._computing:
                    self._stop.wait(0.0005)
                    continue
                with self._lock:
                    if not self._computing:
                        torch.mm(a, a)
                        self.products += 1
