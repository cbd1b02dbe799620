"""Cgroup limits: the quota arithmetic, the choice of hierarchy and the files written (on a fake tree)."""

from __future__ import annotations

from pathlib import Path

import pytest

from splittracer.devices.limits import LimitsError, ResourceLimits, RunCgroups, cpu_quota


def test_cpu_quota_keeps_a_short_period_and_the_kernels_minimum():
    assert cpu_quota(0.1) == (1000, 10_000)
    assert cpu_quota(2.0) == (20_000, 10_000)
    assert cpu_quota(0.05) == (1000, 20_000)  # a 0.5 ms quota is below the kernel's 1 ms
    assert ResourceLimits(0.1, 2 << 30).describe() == "cpu 0.1 (1 ms per 10 ms), memory 2 GiB"
    assert not ResourceLimits() and ResourceLimits(cpu=1.0)


def test_cgroup_v2_gets_cpu_max_memory_max_and_enabled_controllers(tmp_path: Path):
    root = tmp_path / "unified"
    (root / "me").mkdir(parents=True)
    (root / "me" / "cgroup.controllers").write_text("cpu io memory pids\n")
    run = RunCgroups("exp 1", mounts=f"cgroup2 {root} cgroup2 rw 0 0\n", own="0::/me\n")
    cgroup = run.create("phone", ResourceLimits(0.1, 512 << 20))
    cgroup.throttle()
    parent = root / "me" / run.name
    assert run.name.startswith("splittracer-exp_1-")
    assert (root / "me" / "cgroup.subtree_control").read_text() == "+memory"  # the last one enabled
    assert (parent / "phone" / "cpu.max").read_text() == "1000 10000"
    assert (parent / "phone" / "memory.max").read_text() == str(512 << 20)
    assert cgroup.wrap(["python"])[-2:] == ["--", "python"]
    assert str(parent / "phone" / "cgroup.procs") in cgroup.wrap(["python"])


def test_cgroup_v1_is_used_for_controllers_the_v2_tree_lacks(tmp_path: Path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "memory" / "job").mkdir(parents=True)
    mounts = (
        f"cgroup2 {tmp_path}/unified cgroup2 rw 0 0\n"
        f"cgroup {tmp_path}/cpu cgroup rw,relatime,cpu 0 0\n"
        f"cgroup {tmp_path}/memory cgroup rw,memory 0 0\n"
    )
    run = RunCgroups("e", mounts=mounts, own="4:memory:/job\n1:cpu:/\n0::/\n")
    cgroup = run.create("phone", ResourceLimits(0.25, 1 << 30))
    assert not (tmp_path / "cpu" / run.name / "phone" / "cpu.cfs_quota_us").exists()  # until it listens
    cgroup.throttle()
    cpu_dir = tmp_path / "cpu" / run.name / "phone"
    memory_dir = tmp_path / "memory" / "job" / run.name / "phone"
    assert (cpu_dir / "cpu.cfs_period_us").read_text() == "10000"
    assert (cpu_dir / "cpu.cfs_quota_us").read_text() == "2500"
    assert (memory_dir / "memory.limit_in_bytes").read_text() == str(1 << 30)
    assert cgroup.oom_kills() == 0 and cgroup.out_of_memory_note() == ""
    (memory_dir / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
    assert "killed participant 'phone' at its memory limit of 1 GiB" in cgroup.out_of_memory_note()


def test_no_usable_hierarchy_is_an_error_that_says_what_is_missing(tmp_path: Path):
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.controllers").write_text("pids\n")
    run = RunCgroups("e", mounts=f"cgroup2 {tmp_path}/unified cgroup2 rw 0 0\n", own="0::/\n")
    with pytest.raises(LimitsError) as info:
        run.create("phone", ResourceLimits(memory_bytes=1 << 30))
    text = info.value.render()
    assert "memory limit of participant 'phone'" in text
    assert "offers no 'memory' controller (pids)" in text and "no cgroup v1 hierarchy" in text
    assert "root" in text  # the hint: what would make it possible
