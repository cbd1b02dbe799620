"""A CPU limit without root: a parent process that stops and resumes its child with signals.

``python -m splittracer.devices.throttle --cpu 0.1 -- COMMAND...`` runs
COMMAND as its child and lets it use ``cpu`` of one CPU: every period (10
ms, as the cgroup quota) it charges the child's real CPU time, all threads
together, against the period's budget (:class:`~.dutycycle.DutyCycle`),
sends ``SIGSTOP`` once the budget is spent and ``SIGCONT`` when a period
grants more. Nothing needs root or a cgroup; the price is accuracy: see
README, "CPU and memory limits".

A child left stopped must never outlive its run:

- the child is started with ``PR_SET_PDEATHSIG = SIGKILL``: when the throttle
  dies, even by ``SIGKILL``, the kernel kills the child (stopped or not);
- ``SIGTERM``, ``SIGINT`` and ``SIGHUP`` are forwarded after a ``SIGCONT``,
  and throttling ends, so the child can act on them;
- the throttle exits when the child does, with its status (a child killed
  by a signal: the throttle kills itself with the same signal).

``--hold`` starts the child unthrottled until the throttle gets ``SIGUSR1``
(:func:`start_throttling`), as the cgroup quota is written only once the
participant listens: importing torch under a tenth of a CPU measures
nothing of the run. The child finds its limit in its environment
(:data:`~splittracer.environment.CPU_LIMIT_ENV`), for its ``Hello``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from ..environment import CPU_LIMIT_BY_ENV, CPU_LIMIT_ENV
from .dutycycle import DutyCycle, process_cpu_ns
from .limits import cpu_quota

__all__ = ["main", "start_throttling", "throttled_command"]

_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1
_HELD_WAIT_S = 5.0  # a held (unthrottled) child: its exit and our signals wake the loop sooner


def throttled_command(
    cpu: float, command: Sequence[str], *, hold: bool = True, python: str = sys.executable
) -> list[str]:
    """``command`` run under the throttle at ``cpu`` of one CPU (held until :func:`start_throttling`)."""
    throttle = [python, "-m", "splittracer.devices.throttle", "--cpu", f"{cpu:g}"]
    return [*throttle, *(["--hold"] if hold else []), "--", *command]


def start_throttling(pid: int) -> None:
    """Tell the throttle ``pid`` (held with ``--hold``) to start limiting its child."""
    os.kill(pid, signal.SIGUSR1)


class _State:
    """What the signal handlers tell the loop."""

    def __init__(self, hold: bool) -> None:
        self.throttling = not hold
        self.ended = False  # a forwarded signal ends throttling for good
        self.child: int | None = None
        self.pending: list[int] = []  # signals that came before the child existed


def _die_with(parent: int) -> Callable[[], None]:
    """The child's pre-exec step: killed by the kernel when ``parent`` dies (loaded before the fork)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: die now
            os._exit(128 + int(signal.SIGKILL))

    return arm


def _install_handlers(state: _State) -> None:
    def forward(signum: int, _frame: object) -> None:
        state.ended = True
        if state.child is None:
            state.pending.append(signum)
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(state.child, signal.SIGCONT)  # a stopped child acts on nothing but SIGKILL
            os.kill(state.child, signum)

    def start(_signum: int, _frame: object) -> None:
        state.throttling = True

    for signum in _FORWARDED:
        signal.signal(signum, forward)
    signal.signal(signal.SIGUSR1, start)


def _throttle(pid: int, cpu: float, state: _State) -> None:
    """Stop and resume ``pid`` to hold it at ``cpu`` of one CPU until it exits or a signal ends it."""
    quota_us, period_us = cpu_quota(cpu)
    exited = os.pidfd_open(pid)
    # A signal (SIGUSR1: start throttling) wakes the wait at once rather than when it times out.
    woken, wake = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake, warn_on_full_buffer=False)
    cycle: DutyCycle | None = None
    running = True
    try:
        while not state.ended:
            wait_s = _HELD_WAIT_S
            if state.throttling:
                now, used = time.monotonic_ns(), process_cpu_ns(pid)
                if cycle is None:
                    cycle = DutyCycle(quota_us * 1000, period_us * 1000, now, used)
                run, wait_ns = cycle.step(now, used)
                if run != running and not state.ended:
                    os.kill(pid, signal.SIGCONT if run else signal.SIGSTOP)
                    running = run
                wait_s = wait_ns / 1e9
            ready = select.select([exited, woken], [], [], wait_s)[0]
            if exited in ready:
                return
            if woken in ready:
                os.read(woken, 512)
    except OSError:
        return  # the child is gone
    finally:
        signal.set_wakeup_fd(-1)
        for fd in (exited, woken, wake):
            os.close(fd)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)  # whatever ended the loop, the child is never left stopped


def run(command: Sequence[str], cpu: float, *, hold: bool = False) -> int:
    """Run ``command`` throttled to ``cpu`` of one CPU; its exit status (negative: killed by a signal)."""
    state = _State(hold)
    _install_handlers(state)
    env = {**os.environ, CPU_LIMIT_ENV: f"{cpu:g}", CPU_LIMIT_BY_ENV: "signals"}
    child = subprocess.Popen(list(command), env=env, preexec_fn=_die_with(os.getpid()))
    state.child = child.pid
    for signum in state.pending:
        os.kill(child.pid, signum)
    _throttle(child.pid, cpu, state)
    return child.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """The throttle's command line; returns the child's exit status, or dies by the child's signal."""
    parser = argparse.ArgumentParser(prog="python -m splittracer.devices.throttle", description=__doc__)
    parser.add_argument("--cpu", type=float, required=True, help="fraction of one CPU, e.g. 0.1")
    parser.add_argument("--hold", action="store_true", help="run unthrottled until SIGUSR1")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or not args.cpu > 0:
        parser.error("expected a positive --cpu and a command after --")
    status = run(command, args.cpu, hold=args.hold)
    if status < 0:  # killed by a signal: so are we, so our parent sees the same status
        with contextlib.suppress(OSError, ValueError):  # SIGKILL has no handler to reset
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    raise SystemExit(main())
