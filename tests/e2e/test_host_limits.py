"""Lab hosts with different CPU and memory limits: each host's sshd, and so every participant it
starts, runs inside the host's cgroups; ``testbed status`` shows the limits and a sweep across
the two hosts measures the limited one slower.

Builds its own two-host lab under names no other test uses (prefix ``hl``, 198.18.16.0/24).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from splittracer.devices.limits import ResourceLimits, RunCgroups
from splittracer.errors import RunError
from splittracer.lab import LabNetwork, Testbed, parse_host_limits
from splittracer.metrics.record import RunRecord
from splittracer.metrics.store import ResultsStore
from splittracer.report.limits import limits_lines
from splittracer.report.runs import run_summary
from splittracer.workspace import init_workspace

from .conftest import lab_skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NETWORK = LabNetwork(prefix="hl", subnet=16)


def _cgroups_usable() -> bool:
    cgroups = RunCgroups("probe")
    try:
        cgroups.create("probe", ResourceLimits(cpu=1.0, memory_bytes=1 << 30)).throttle()
    except RunError:
        return False
    finally:
        cgroups.remove()
    return True


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "splittracer", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=500)


def test_limited_lab_hosts_shown_in_status_and_measured_slower(
    tmp_path: Path, claim_lab: Callable[[LabNetwork], list[str]]
) -> None:
    no_cgroups = None if _cgroups_usable() else "no writable cgroup cpu and memory controllers"
    reason = lab_skip_reason() or no_cgroups
    if reason is not None:
        pytest.skip(f"no limited testbed: {reason}")
    claim_lab(NETWORK)
    state_dir = tmp_path / "state"
    testbed = Testbed(state_dir, NETWORK)
    state = testbed.up(2, limits=parse_host_limits("0.25,1.0", "3GiB,8GiB", 2))
    try:
        shown = cli("testbed", "status", "--json", "--state-dir", str(state_dir), cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        hosts = {h["name"]: h for h in json.loads(shown.stdout)["hosts"]}
        assert {n: (h["cpu_limit"], h["memory_limit_bytes"]) for n, h in hosts.items()} == {
            "hl-h1": (0.25, 3 << 30),
            "hl-h2": (1.0, 8 << 30),
        }
        table = cli("testbed", "status", "--state-dir", str(state_dir), cwd=tmp_path)
        assert "cpu 0.25, memory 3 GiB" in table.stdout, table.stdout
        first = state.hosts[0]
        assert any("splittracer-lab-hl/hl-h1" in line for line in _cgroups_of(first.sshd_pid))
        ratio, record = _sweep_across(state.registry, tmp_path)
        # Each participant read the limits its host enforced: they are in the run's record.
        enforced = {n: (f.enforced_cpu, f.enforced_memory_bytes) for n, f in record.participants.items()}
        assert enforced == {"phone": (0.25, 3 << 30), "cloud": (1.0, 8 << 30)}, enforced
        shown = "phone: cpu 0.25 (enforced on its host), memory 3 GiB (enforced on its host)"
        assert any(line.startswith(shown) for line in limits_lines(record)), limits_lines(record)
        assert ratio > 1.5, f"the 0.25-CPU host computed the whole model only {ratio:.2f}x slower"
    finally:
        testbed.down()
    assert testbed.leftovers() == []
    assert not any(Path(d).exists() for h in state.hosts for d in h.cgroup_dirs)
    assert not any(Path(d).exists() for d in state.cgroup_parents)


def _cgroups_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cgroup").read_text().splitlines()


def _sweep_across(registry: Path, cwd: Path) -> tuple[float, RunRecord]:
    """Run the workspace's lab experiment (split 0 and 21) on the two hosts: phone over cloud."""
    ws = init_workspace(cwd / "ws")
    manifest = ws.experiments_dir / "lab-neurosurgeon.yaml"
    text = manifest.read_text().replace("st-h", "hl-h").replace("splits: all", "splits: [0, 21]")
    manifest.write_text(text.replace("repeats: 5", "repeats: 3"))
    env = {**os.environ, "SPLITTRACER_DEVICES": str(registry)}
    done = cli("run", "lab-neurosurgeon", "--workspace", str(ws.root), "--no-plot", cwd=cwd, env=env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    store = ResultsStore(ws.results_db)
    run = store.list_runs()[-1]
    rows = {row.split: row for row in run_summary(store, run.id).rows}
    return rows[21].head.median / rows[0].tail.median, store.get_run(run.id).record
