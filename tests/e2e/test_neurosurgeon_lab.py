"""The Neurosurgeon manifest across two lab hosts, over a real 10 Mbit/s shaped link."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from splittracer.controller.placement import deployer_for_plan
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import run_experiment
from splittracer.devices.registry import Registry
from splittracer.lab import Testbed, TestbedState
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import init_workspace

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RATE_BPS = 10e6

MANIFEST = """
name: lab
model: {source: torchvision:alexnet}
participants:
  phone: {device: lab-phone, role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {device: lab-cloud, role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {next: [cloud], repeats: 4, warmup: 1}
"""


@pytest.fixture
def registry(lab_testbed: Testbed, lab: TestbedState, tmp_path: Path) -> Registry:
    """Both lab hosts paired as root by key (this machine's Python, with torch, is root's)."""
    return lab_testbed.pair_as_root(tmp_path / "devices.yaml", ["lab-phone", "lab-cloud"])


def test_neurosurgeon_across_two_lab_hosts(registry: Registry, tmp_path: Path):
    before = _run_dirs()
    ws = init_workspace(tmp_path / "ws")
    (ws.experiments_dir / "lab.yaml").write_text(textwrap.dedent(MANIFEST))
    plan = resolve_run(ws.load_manifest("lab"), ws.root)
    store = ResultsStore(ws.results_db)
    # Target: within 10% + 2 ms. The shared 2-core host's late wake-ups only ever add time to a
    # split, and not to the same split in every sweep: a split counts as measured right when one
    # of up to three sweeps got it within target (a wrong link or clock is off in every sweep).
    # At most two splits may still miss, by no more than 8 ms.
    best: dict[int, float] = {}
    for _ in range(3):
        excess, record = _sweep_on_the_lab(plan, store, ws.root, registry)
        best = {k: min(v, best.get(k, v)) for k, v in excess.items()}
        missed = {k: v for k, v in best.items() if v > 0}
        if len(missed) <= 2 and all(v <= 8.0 for v in best.values()):
            missed = {}
            break
    assert not missed, missed
    # Nothing is left on the hosts: no participant process, no per-run directory.
    for participant in record.participants.values():
        assert not Path(f"/proc/{participant.pid}").exists() or _zombie(participant.pid)
    assert _run_dirs() <= before


def _sweep_on_the_lab(plan, store: ResultsStore, root: Path, registry: Registry):
    """Run the sweep: per split, by how many ms its forward transfer missed the target around
    8 x bytes / rate (negative: within it), and the run's metadata."""
    outcome = run_experiment(plan, store, workspace=root, deployer=deployer_for_plan(plan, root, registry))
    assert outcome.status == "succeeded", outcome.error
    record = store.get_run(outcome.run_id).record
    assert {p.hostname for p in record.participants.values()}  # probed on the hosts
    forward: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for s in store.spans(outcome.run_id, kind="transfer"):
        if s.attrs.get("direction") == "forward" and s.split >= 0 and not s.attrs.get("warmup"):
            forward[s.split].append((s.duration_ms, s.bytes_raw))
    assert sorted(forward) == list(range(22))
    excess = {}
    for split, samples in forward.items():
        measured = statistics.median(ms for ms, _ in samples)
        expected = 8 * samples[0][1] / RATE_BPS * 1000
        excess[split] = abs(measured - expected) - (0.10 * expected + 2.0)
    return excess, record


def test_participant_killed_on_a_lab_host(registry: Registry, tmp_path: Path):
    before = _run_dirs()
    ws = init_workspace(tmp_path / "ws")
    (ws.experiments_dir / "lab.yaml").write_text(
        textwrap.dedent(MANIFEST).replace("repeats: 4", "repeats: 50")
    )
    plan = resolve_run(ws.load_manifest("lab"), ws.root)
    store = ResultsStore(ws.results_db)
    result: dict[str, object] = {}

    def go() -> None:
        result["outcome"] = run_experiment(
            plan, store, workspace=ws.root, deployer=deployer_for_plan(plan, ws.root, registry)
        )

    thread = threading.Thread(target=go)
    thread.start()
    run_id, cloud = _wait_for_inferences(store, minimum=5)
    recorded = len(store.spans(run_id))
    killed_at = time.monotonic()
    os.kill(cloud, signal.SIGKILL)
    thread.join(timeout=60)
    outcome = result["outcome"]
    assert outcome.status == "failed"  # type: ignore[attr-defined]
    assert time.monotonic() - killed_at < 10
    assert "cloud" in outcome.error  # type: ignore[attr-defined]
    assert len(store.spans(run_id)) >= recorded
    assert _run_dirs() <= before


def test_controller_killed_while_its_participants_run_on_lab_hosts(registry: Registry, tmp_path: Path):
    """SIGKILL of `splittracer run`: the lab hosts' participants end with their SSH sessions, and
    each device's wrapper removes the run's folder (RELIABILITY.md, controller killed)."""
    before = _run_dirs()
    ws = init_workspace(tmp_path / "ws")
    (ws.experiments_dir / "lab.yaml").write_text(
        textwrap.dedent(MANIFEST).replace("repeats: 4", "repeats: 50")  # never ends by itself in time
    )
    env = {**os.environ, "SPLITTRACER_DEVICES": str(registry.path)}
    command = [sys.executable, "-m", "splittracer", "run", "lab", "--workspace", str(ws.root), "--no-plot"]
    controller = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = ResultsStore(ws.results_db)
        run_id, _ = _wait_for_inferences(store, minimum=3)
        pids = [p.pid for p in store.get_run(run_id).record.participants.values()]
        assert all(_alive(pid) for pid in pids)  # the lab hosts share this machine's process table
        controller.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        controller.wait(timeout=10)
        while any(_alive(pid) for pid in pids) and time.monotonic() - killed_at < 30:
            time.sleep(0.1)
        gone_s = time.monotonic() - killed_at
    finally:
        if controller.poll() is None:
            controller.kill()
            controller.wait(timeout=10)
    print(f"lab participants gone {gone_s:.1f} s after the controller's SIGKILL")
    assert gone_s < 5.0, f"lab participants still running {gone_s:.1f} s after the kill"
    deadline = time.monotonic() + 10
    while _run_dirs() - before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _run_dirs() <= before  # nothing of the run is left on the hosts


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _zombie(pid)


MIXED = """
name: mixed
model: {source: torchvision:alexnet}
participants:
  phone: {device: lab-phone, role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {device: local, role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0, 13, 21], next: [cloud], repeats: 2, warmup: 0}
"""


def test_a_lab_host_sends_to_a_participant_on_the_controller(registry: Registry, lab: TestbedState, tmp_path):
    """The phone on a device, the cloud on this machine: the phone's tasks reach the cloud directly."""
    ws = init_workspace(tmp_path / "ws")
    (ws.experiments_dir / "mixed.yaml").write_text(textwrap.dedent(MIXED))
    plan = resolve_run(ws.load_manifest("mixed"), ws.root)
    deployer = deployer_for_plan(plan, ws.root, registry)
    assert deployer.local.advertise == lab.bridge_address  # the address the lab hosts reach us at
    store = ResultsStore(ws.results_db)
    outcome = run_experiment(plan, store, workspace=ws.root, deployer=deployer)
    assert outcome.status == "succeeded", outcome.error
    forward = [
        s
        for s in store.spans(outcome.run_id)
        if s.kind == "transfer" and s.attrs.get("from") == "phone" and s.attrs.get("to") == "cloud"
    ]
    assert len(forward) == 6 and {s.split for s in forward} == {0, 13, 21}


def _wait_for_inferences(store: ResultsStore, minimum: int) -> tuple[str, int]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if runs and len(store.spans(runs[-1].id, kind="inference")) >= minimum:
            return runs[-1].id, store.get_run(runs[-1].id).record.participants["cloud"].pid
        time.sleep(0.2)
    raise AssertionError("no inference recorded in time")


def _run_dirs() -> set[Path]:
    """Per-run directories on the lab hosts (root's home is shared by the namespaces)."""
    runs = Path("/root/.splittracer/runs")
    return set(runs.iterdir()) if runs.exists() else set()


def _zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] == "Z"
