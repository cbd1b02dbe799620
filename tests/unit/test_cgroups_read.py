"""Reading the limits the kernel enforces on a process from its cgroups (fake /proc and /sys trees)."""

from __future__ import annotations

from pathlib import Path

from splittracer.metrics.cgroups import EnforcedLimits, enforced_limits

V1_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
"""


def write(root: Path, path: str, text: str) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)


def test_v1_the_tightest_limit_along_the_path_is_in_force(tmp_path: Path):
    write(tmp_path, "proc/self/mountinfo", V1_MOUNTS)
    write(tmp_path, "proc/self/cgroup", "4:memory:/lab/host1\n2:cpu,cpuacct:/lab/host1\n0::/\n")
    cpu = "sys/fs/cgroup/cpu,cpuacct"
    write(tmp_path, f"{cpu}/cpu.cfs_quota_us", "-1\n")  # the root: no limit
    write(tmp_path, f"{cpu}/cpu.cfs_period_us", "100000\n")
    write(tmp_path, f"{cpu}/lab/cpu.cfs_quota_us", "50000\n")  # the lab: half a CPU
    write(tmp_path, f"{cpu}/lab/cpu.cfs_period_us", "100000\n")
    write(tmp_path, f"{cpu}/lab/host1/cpu.cfs_quota_us", "1000\n")  # the host: a tenth
    write(tmp_path, f"{cpu}/lab/host1/cpu.cfs_period_us", "10000\n")
    write(tmp_path, "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n")
    write(tmp_path, "sys/fs/cgroup/memory/lab/memory.limit_in_bytes", f"{2 << 30}\n")
    write(tmp_path, "sys/fs/cgroup/memory/lab/host1/memory.limit_in_bytes", "9223372036854771712\n")
    assert enforced_limits(tmp_path) == EnforcedLimits(cpu=0.1, memory_bytes=2 << 30, cpu_by="cgroup")


def test_v2_cpu_max_and_memory_max(tmp_path: Path):
    write(tmp_path, "proc/self/mountinfo", "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    write(tmp_path, "proc/self/cgroup", "0::/user.slice/run-1\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/cpu.max", "max 100000\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/run-1/cpu.max", "25000 100000\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/run-1/memory.max", "max\n")
    write(tmp_path, "sys/fs/cgroup/user.slice/memory.max", f"{512 << 20}\n")
    assert enforced_limits(tmp_path) == EnforcedLimits(cpu=0.25, memory_bytes=512 << 20, cpu_by="cgroup")


def test_a_cgroup_namespace_mounts_the_process_own_cgroup_at_the_root(tmp_path: Path):
    # Inside a container the mount's root is the container's cgroup, not "/".
    write(tmp_path, "proc/self/mountinfo", "30 23 0:27 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    write(tmp_path, "proc/self/cgroup", "0::/docker/abc\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "200000 100000\n")
    assert enforced_limits(tmp_path) == EnforcedLimits(cpu=2.0, memory_bytes=None, cpu_by="cgroup")


def test_nothing_readable_is_no_limit_not_an_error(tmp_path: Path):
    assert enforced_limits(tmp_path) == EnforcedLimits()
    write(tmp_path, "proc/self/mountinfo", "garbage\n - \n")
    write(tmp_path, "proc/self/cgroup", "not a cgroup line\n")
    assert enforced_limits(tmp_path) == EnforcedLimits()


def test_a_signal_throttle_tighter_than_the_cgroup_is_the_limit_in_force(tmp_path: Path):
    write(tmp_path, "proc/self/mountinfo", "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n")
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "50000 100000\n")
    signals = {"SPLITTRACER_CPU_LIMIT": "0.1", "SPLITTRACER_CPU_LIMIT_BY": "signals"}
    assert enforced_limits(tmp_path, environ=signals) == EnforcedLimits(cpu=0.1, cpu_by="signals")
    looser = {**signals, "SPLITTRACER_CPU_LIMIT": "0.9"}
    assert enforced_limits(tmp_path, environ=looser) == EnforcedLimits(cpu=0.5, cpu_by="cgroup")
