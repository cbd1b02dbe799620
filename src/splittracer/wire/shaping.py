"""Link emulation: a rate and a latency imposed on the sending side, on either path.

So that one machine can play phone, link and cloud, the sender holds each
chunk of a message until a link of the given rate would have finished
transmitting it (a virtual-clock token bucket with no burst allowance, so a
message of ``n`` bytes takes ``8 n / rate`` however it is chunked), after
waiting the one-way latency once per message. Replies use the replying
participant's shaper.
"""

from __future__ import annotations

import math
import threading
import time


class LinkShaper:
    """Emulated uplink: a rate in bits per second and a one-way latency.

    Every chunk gets a release time on one virtual clock: a message may not
    start before its latency has passed, and the link carries one chunk
    after another at ``rate``. The sender sleeps once per chunk, to that
    chunk's release time, so a late wake-up delays that chunk only and is
    not added again to the next one.
    """

    def __init__(self, rate_bps: float = math.inf, latency_s: float = 0.0) -> None:
        self.rate_bps = rate_bps
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self._free_at = 0.0
        self._not_before = 0.0

    @property
    def active(self) -> bool:
        """Whether this link changes anything at all."""
        return math.isfinite(self.rate_bps) or self.latency_s > 0

    def set_rate(self, rate_bps: float) -> None:
        """Use ``rate_bps`` for every chunk not yet paced (a link that changes during a run)."""
        with self._lock:
            self.rate_bps = rate_bps

    def wait_latency(self) -> None:
        """Start a message: its first byte may leave one latency from now."""
        if self.latency_s > 0:
            self._not_before = time.perf_counter() + self.latency_s
            if not math.isfinite(self.rate_bps):
                _sleep_until(self._not_before)

    def pace(self, nbytes: int) -> None:
        """Block until the link would have delivered ``nbytes`` more."""
        if not math.isfinite(self.rate_bps):
            return
        with self._lock:
            start = max(time.perf_counter(), self._free_at, self._not_before)
            self._free_at = start + nbytes * 8 / self.rate_bps
            done = self._free_at
        _sleep_until(done)


def _sleep_until(deadline: float) -> None:
    """Sleep to ``deadline`` (perf_counter seconds); spin the last 200 µs for precision."""
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        time.sleep(remaining - 2e-4 if remaining > 5e-4 else 0)
