"""A CPU limit enforced with signals: the duty cycle's accounting (a fake clock), the choice of
mechanism, and what a throttled participant reads of its own limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from splittracer.devices.dutycycle import MIN_WAIT_NS, DutyCycle
from splittracer.devices.limits import ResourceLimits, cpu_mechanism
from splittracer.devices.throttle import throttled_command
from splittracer.metrics.cgroups import EnforcedLimits, enforced_limits

MS = 1_000_000


class FakeProcess:
    """A process with ``threads`` busy threads while it runs, driven by the duty cycle's decisions."""

    def __init__(self, threads: int = 1, late_ns: int = 0) -> None:
        self.threads = threads
        self.late_ns = late_ns  # how late every wake-up of the stopper comes
        self.now = 0
        self.cpu = 0

    def follow(self, cycle: DutyCycle, until_ns: int, busy: bool = True) -> None:
        running = True
        while self.now < until_ns:
            running, wait = cycle.step(self.now, self.cpu)
            wait += self.late_ns
            if running and busy:
                self.cpu += wait * self.threads
            self.now += wait


def test_a_busy_process_gets_its_quota_per_period_and_waits_out_the_rest():
    cycle = DutyCycle(1 * MS, 10 * MS, now_ns=0, cpu_ns=0)
    assert cycle.step(0, 0) == (True, 1 * MS)  # look again when one thread could have spent the budget
    assert cycle.step(1 * MS, 1 * MS) == (False, 9 * MS)  # spent: stopped until the next period
    assert cycle.step(10 * MS, 1 * MS) == (True, 1 * MS)  # a new period grants a new budget
    assert cycle.step(10 * MS + MS // 2, 1 * MS) == (True, 1 * MS)  # idle: the budget is still there


def test_an_overrun_is_paid_back_so_the_long_run_share_is_exact_however_late_the_stopper():
    for late in (0, 3 * MS, 12 * MS):
        process = FakeProcess(late_ns=late)
        process.follow(DutyCycle(1 * MS, 10 * MS, 0, 0), until_ns=10_000 * MS)
        # The share is exact to within one late look and one period's quota, over 10 s.
        assert process.cpu / process.now == pytest.approx(0.1, abs=(late + 2 * MS) / (10_000 * MS)), late


def test_threads_spend_the_budget_together():
    process = FakeProcess(threads=4)
    process.follow(DutyCycle(2 * MS, 10 * MS, 0, 0), until_ns=5_000 * MS)
    assert process.cpu / process.now == pytest.approx(0.2, abs=0.01)


def test_an_unused_budget_is_not_saved_up_for_a_burst():
    cycle = DutyCycle(1 * MS, 10 * MS, 0, 0)
    for period in range(1, 100):  # idle for a second
        cycle.step(period * 10 * MS, 0)
    assert cycle.budget_ns == 1 * MS
    assert cycle.step(990 * MS + 5 * MS, 5 * MS)[0] is False  # 5 ms at once is an overrun, not savings
    assert cycle.budget_ns == -4 * MS


def test_a_debt_keeps_it_stopped_for_as_many_periods_as_it_takes():
    cycle = DutyCycle(1 * MS, 10 * MS, 0, 0)
    assert cycle.step(5 * MS, 5 * MS) == (False, 5 * MS)  # 4 ms over budget
    stopped = [cycle.step(p * 10 * MS, 5 * MS)[0] for p in range(1, 6)]
    assert stopped == [False, False, False, False, True]  # -3, -2, -1, 0: still stopped; then 1 ms


def test_waits_are_never_shorter_than_the_minimum_nor_past_the_period():
    cycle = DutyCycle(5 * MS, 10 * MS, 0, 0)
    assert cycle.step(0, 4_900_000) == (True, MIN_WAIT_NS)  # 0.1 ms of budget left: no 0.1 ms spin
    assert cycle.step(9_500_000, 4_900_000) == (True, 500_000)  # the period ends first
    with pytest.raises(ValueError, match="positive"):
        DutyCycle(0, 10 * MS, 0, 0)


def test_auto_is_a_cgroup_where_one_can_be_written_and_signals_otherwise(tmp_path: Path):
    (tmp_path / "me").mkdir()
    v1 = f"cgroup {tmp_path} cgroup rw,cpu,cpuacct 0 0\n"
    assert cpu_mechanism(ResourceLimits(cpu=0.1), v1, "2:cpu,cpuacct:/me\n") == "cgroup"
    assert cpu_mechanism(ResourceLimits(cpu=0.1), "proc /proc proc rw 0 0\n", "0::/\n") == "signals"
    assert cpu_mechanism(ResourceLimits(cpu=0.1, cpu_by="signals"), v1, "2:cpu,cpuacct:/me\n") == "signals"
    assert cpu_mechanism(ResourceLimits(cpu=0.1, cpu_by="cgroup"), "", "") == "cgroup"  # may then fail
    assert cpu_mechanism(ResourceLimits(memory_bytes=1 << 30), v1, "") == ""


def test_a_throttled_participant_reads_its_limit_and_the_mechanism_from_its_environment(tmp_path: Path):
    signals = {"SPLITTRACER_CPU_LIMIT": "0.1", "SPLITTRACER_CPU_LIMIT_BY": "signals"}
    assert enforced_limits(tmp_path, environ=signals) == EnforcedLimits(cpu=0.1, cpu_by="signals")
    assert enforced_limits(tmp_path, environ={}) == EnforcedLimits()
    assert enforced_limits(tmp_path, environ={"SPLITTRACER_CPU_LIMIT": "0.1"}) == EnforcedLimits()
    garbled = {**signals, "SPLITTRACER_CPU_LIMIT": "fast"}
    assert enforced_limits(tmp_path, environ=garbled) == EnforcedLimits()


def test_the_throttled_command_holds_its_child_until_told():
    child = ["python", "-c", "pass"]
    command = throttled_command(0.25, child, python="py")
    assert command == ["py", "-m", "splittracer.devices.throttle", "--cpu", "0.25", "--hold", "--", *child]
