"""The accounting of a CPU limit enforced with signals: when to stop a process, when to resume it.

:class:`DutyCycle` follows the kernel's CFS bandwidth control: every period
(10 ms, as the cgroup quota uses) the process is granted ``cpu`` of it as a
budget of CPU time; the process's real CPU time, all its threads together
(:func:`process_cpu_ns`), is charged against the budget, and once it is
spent the process is stopped until a period grants more. CPU time used past
the budget before the stop took effect (the stopper woke late, or several
threads spent it at once) is a debt the next periods pay back, so the share
over many periods is ``cpu`` however late the stopper is; an unused budget
is not kept, so an idle process cannot save up a long burst.

The class is pure arithmetic on the times it is given (unit tests drive it
with a fake clock); :mod:`.throttle` reads the clocks and sends the signals.
"""

from __future__ import annotations

import time

__all__ = ["MIN_WAIT_NS", "DutyCycle", "process_cpu_ns"]

MIN_WAIT_NS = 1_000_000
"""The shortest wait between two looks at a running process: 1 ms (cheap, and as fine as a wake-up gets)."""


class DutyCycle:
    """When a process limited to ``quota_ns`` of CPU time per ``period_ns`` may run."""

    def __init__(self, quota_ns: int, period_ns: int, now_ns: int, cpu_ns: int) -> None:
        if quota_ns <= 0 or period_ns <= 0:
            raise ValueError(f"quota {quota_ns} ns and period {period_ns} ns must be positive")
        self.quota_ns = quota_ns
        self.period_ns = period_ns
        self.boundary_ns = now_ns + period_ns  # when the next period starts
        self.budget_ns = quota_ns  # CPU time the process may still use in this period (negative: debt)
        self._cpu_ns = cpu_ns
        self.running = True

    def step(self, now_ns: int, cpu_ns: int) -> tuple[bool, int]:
        """Charge the CPU time used since the last step: ``(may run now, ns until the next step)``.

        ``cpu_ns`` is the process's total CPU time so far; ``now_ns`` a monotonic clock.
        """
        self.budget_ns -= max(0, cpu_ns - self._cpu_ns)
        self._cpu_ns = max(cpu_ns, self._cpu_ns)
        if now_ns >= self.boundary_ns:
            periods = (now_ns - self.boundary_ns) // self.period_ns + 1
            self.boundary_ns += periods * self.period_ns
            # Debt is paid back in full; an unused budget is not carried over (no saved-up bursts).
            self.budget_ns = min(self.quota_ns, self.budget_ns + periods * self.quota_ns)
        self.running = self.budget_ns > 0
        until_boundary = self.boundary_ns - now_ns
        if not self.running:
            return False, until_boundary
        # One thread spends the budget no faster than the wall clock runs: look again when it could be
        # spent (more threads spend it faster; what they overrun is paid back as debt).
        return True, min(until_boundary, max(self.budget_ns, MIN_WAIT_NS))


def process_cpu_ns(pid: int) -> int:
    """The CPU time process ``pid`` has used so far, all its threads together, in ns.

    Reads the process's CPU-time clock (what ``clock_getcpuclockid`` returns:
    the clock id is ``~pid << 3 | 2`` on Linux), one system call, with no
    file to parse. OSError once the process is reaped.
    """
    return time.clock_gettime_ns(((~pid) << 3) | 2)
