"""Whether the controller of this participant's run is still there.

A participant must not outlive its controller: a controller killed with
SIGKILL (or lost with its laptop) cannot stop anyone. Three signs tell a
participant its controller is gone, checked every half second by the
participant's watchdog:

- its parent changed: a participant the controller spawned is re-parented
  when the controller dies (``SPLITTRACER_CONTROLLER_PID`` names the
  controller, so a participant forked by the warm agent, whose parent is the
  agent, skips this sign);
- the controller's process no longer exists (on the same host only);
- the control stream (``Watch``) closed without a ``Shutdown`` first: a
  controller that stops a run asks first, so a closed stream without the
  request means the controller's end of the connection died.

Why not ``prctl(PR_SET_PDEATHSIG)``: Linux sends that signal when the parent
*thread* that forked the child ends, and the controller starts each
participant from a short-lived thread, so every participant would be
killed as soon as it started. Watching the parent's pid has the same effect
without that trap, and works on every POSIX system.
"""

from __future__ import annotations

import os
import threading
import time

from ..metrics.processes import pid_alive

__all__ = ["CONTROLLER_PID_ENV", "STREAM_LOST_GRACE_S", "Lifeline"]

CONTROLLER_PID_ENV = "SPLITTRACER_CONTROLLER_PID"
"""Environment variable a local deployer sets to the controller's pid."""

STREAM_LOST_GRACE_S = 2.0
"""How long the control stream may stay closed (without a Shutdown) before the participant exits."""


def _controller_pid() -> int:
    try:
        return int(os.environ.get(CONTROLLER_PID_ENV, "0"))
    except ValueError:
        return 0


class Lifeline:
    """The signs, kept up to date by the participant (see the module docstring)."""

    def __init__(self) -> None:
        self.controller = _controller_pid()
        # Only a participant spawned by the controller itself has it as its parent.
        self.spawned = self.controller > 0 and os.getppid() == self.controller
        self._lock = threading.Lock()
        self._streams = 0
        self._stream_lost_at: float | None = None
        self.shutdown_requested = False

    def stream_opened(self) -> None:
        """A control stream opened."""
        with self._lock:
            self._streams += 1
            self._stream_lost_at = None

    def stream_closed(self) -> None:
        """A control stream ended (for whatever reason)."""
        with self._lock:
            self._streams = max(0, self._streams - 1)
            if self._streams == 0:
                self._stream_lost_at = time.monotonic()

    def gone(self) -> str | None:
        """Why the controller is gone, or None while it seems to be there."""
        if self.spawned and os.getppid() != self.controller:
            return f"the controller (pid {self.controller}) exited"
        if self.controller > 0 and not self.spawned and not pid_alive(self.controller):
            return f"the controller (pid {self.controller}) no longer exists"
        with self._lock:
            lost = self._stream_lost_at
        if self.shutdown_requested or lost is None:
            return None
        if time.monotonic() - lost > STREAM_LOST_GRACE_S:
            return "the controller's control stream closed without a shutdown"
        return None
