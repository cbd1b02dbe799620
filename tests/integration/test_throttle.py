"""The root-free CPU limit: the throttle holds a busy process to its share of a CPU, forwards
signals, passes on the exit status, and never leaves a stopped child behind, even when killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splittracer.devices.throttle import start_throttling

# Busy for SECONDS of wall time, then prints its share of a CPU (its CPU time over its wall time).
_BUSY = """\
import os, sys, time
print(os.getpid(), flush=True)
wall, cpu = time.monotonic(), time.process_time()
while time.monotonic() - wall < float(sys.argv[1]):
    pass
print((time.process_time() - cpu) / (time.monotonic() - wall), os.environ.get("SPLITTRACER_CPU_LIMIT_BY"))
sys.exit(int(sys.argv[2]))
"""


def _throttled(cpu: float, *child: str, hold: bool = False) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "splittracer.devices.throttle", "--cpu", str(cpu)]
    command += ["--hold", "--", *child] if hold else ["--", *child]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)


def _busy(seconds: float, status: int = 0) -> list[str]:
    return [sys.executable, "-c", _BUSY, str(seconds), str(status)]


def _state(pid: int) -> str | None:
    """The process's state letter (``T``: stopped), or None once it is gone (a zombie counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None
    return None if state in "ZX" else state


def _wait_for(check, timeout: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def test_a_busy_process_gets_its_share_of_a_cpu_and_its_exit_status_comes_back():
    """cpu 0.2: the busy child's CPU time over its wall time is 0.2, measured in the child itself.

    Beside it, in the same seconds, an unthrottled busy process measures what this loaded machine
    gives one busy thread (at most 1.0): the throttled one cannot get more than that, nor more than
    0.2 plus one late look of the throttle over the run (paid back as debt, hence 10%).
    """
    throttled = _throttled(0.2, *_busy(3.0, status=3))
    free = subprocess.Popen(_busy(3.0), stdout=subprocess.PIPE, text=True)
    throttled_out, _ = throttled.communicate(timeout=60)
    free_out, _ = free.communicate(timeout=60)
    share, by = throttled_out.split()[1:]
    share_free = float(free_out.split()[1])
    measured = f"throttled at 0.2: {float(share):.3f} of a CPU; unthrottled beside it: {share_free:.3f}"
    print(measured)
    assert float(share) <= 0.22, measured
    assert float(share) >= 0.6 * min(0.2, share_free), measured  # a loaded machine only takes some away
    assert by == "signals"  # what a participant reads back as its limit's mechanism
    assert throttled.returncode == 3


def test_sigkill_of_the_throttle_while_its_child_is_stopped_leaves_no_process():
    throttle = _throttled(0.02, *_busy(60.0))
    assert throttle.stdout is not None
    child = int(throttle.stdout.readline())
    try:
        assert _wait_for(lambda: _state(child) == "T"), f"child {child} was never stopped"
        throttle.kill()
        throttle.wait(timeout=10)
        assert _wait_for(lambda: _state(child) is None, timeout=5.0), f"child {child} outlived its throttle"
    finally:
        if _state(child) is not None:  # only on failure: end what this test started
            os.kill(child, signal.SIGKILL)
        throttle.stdout.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_forwarded_signal_reaches_a_stopped_child_and_its_status_comes_back(signum: int):
    throttle = _throttled(0.02, *_busy(60.0))
    assert throttle.stdout is not None
    child = int(throttle.stdout.readline())
    try:
        assert _wait_for(lambda: _state(child) == "T"), f"child {child} was never stopped"
        throttle.send_signal(signum)
        status = throttle.wait(timeout=10)
        assert _state(child) is None
        # The signal ended the child (Python ends by SIGINT after a KeyboardInterrupt too), and the
        # throttle ends by the same signal, so its parent sees what the child's would have.
        assert status == -signum
    finally:
        if _state(child) is not None:
            os.kill(child, signal.SIGKILL)
        throttle.stdout.close()


def test_a_held_child_runs_unthrottled_until_the_throttle_is_told_to_start():
    throttle = _throttled(0.02, *_busy(60.0), hold=True)
    assert throttle.stdout is not None
    child = int(throttle.stdout.readline())
    try:
        assert not _wait_for(lambda: _state(child) == "T", timeout=0.5), "stopped while held"
        start_throttling(throttle.pid)
        assert _wait_for(lambda: _state(child) == "T", timeout=2.0), "never stopped once told to start"
    finally:
        throttle.kill()  # and the kernel kills the child with it
        throttle.wait(timeout=10)
        assert _wait_for(lambda: _state(child) is None, timeout=5.0)
        throttle.stdout.close()


def test_a_child_killed_outright_makes_the_throttle_end_by_the_same_signal():
    throttle = _throttled(0.5, *_busy(60.0))
    assert throttle.stdout is not None
    child = int(throttle.stdout.readline())
    os.kill(child, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    assert throttle.wait(timeout=10) == -signal.SIGKILL
    throttle.stdout.close()
