"""A network partition on the lab: one host's link goes down in the middle of a sweep.

The run must fail within 10 s naming the participant that became unreachable, and once the
link is back nothing of the run is left on that host: no participant process, no run folder.

Builds its own two-host lab under names no other test uses (prefix ``np``, 198.18.5.0/24).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import splittracer
from splittracer.controller.placement import deployer_for_plan
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import RunObserver, RunOutcome, run_experiment
from splittracer.devices.registry import Registry
from splittracer.lab import LabNetwork, Testbed, TestbedState
from splittracer.lab.network import namespace_pids
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import init_workspace

from .conftest import lab_skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NETWORK = LabNetwork(prefix="np", subnet=5)
FAIL_WITHIN_S = 10.0  # the run's verdict reached (the controller begins to stop every participant)
END_WITHIN_S = 15.0  # run_experiment returned: the cut-off host is given 2 s to answer, then dropped
GONE_WITHIN_S = 30.0  # once the link is back: sshd hears of the lost session at its next retransmit

MANIFEST = """
name: partition
model: {source: torchvision:alexnet}
participants:
  phone: {device: np-phone, role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {device: np-cloud, role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [5], next: [cloud], repeats: 100000, warmup: 0}
"""


def test_a_host_cut_off_mid_run_is_named_and_left_clean(
    tmp_path: Path, claim_lab: Callable[[LabNetwork], list[str]]
) -> None:
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(f"no testbed: {reason}")
    claim_lab(NETWORK)
    testbed = Testbed(tmp_path / "state", NETWORK)
    lab = testbed.up(2, ready=False)
    try:
        registry = _paired_as_root(testbed, lab, tmp_path)
        cloud = lab.hosts[1]
        outcome, (failed_s, ended_s), run_dir, pid = _cut_mid_run(registry, cloud.namespace, tmp_path)
        assert outcome.status == "failed"
        assert outcome.error is not None and "'cloud'" in outcome.error, outcome.error
        assert "'phone'" not in outcome.error.splitlines()[0], outcome.error
        assert failed_s < FAIL_WITHIN_S, f"the run took {failed_s:.1f} s to fail"
        assert ended_s < END_WITHIN_S, f"the run took {ended_s:.1f} s to end"
        _set_link(cloud.namespace, "up")
        back = time.monotonic()
        left = _wait_until_gone(run_dir, pid, cloud.namespace)
        print(f"partition: nothing of the run left {time.monotonic() - back:.2f} s after the link returned")
        assert not left, f"left on {cloud.name} {GONE_WITHIN_S:g} s after the link returned: {left}"
    finally:
        testbed.down()
    assert testbed.leftovers() == []


def _cut_mid_run(
    registry: Registry, namespace: str, tmp_path: Path
) -> tuple[RunOutcome, tuple[float, float], Path, int]:
    """Start the sweep, cut ``namespace``'s link once inferences flow.

    Returns the outcome, the seconds from the cut until the run failed and until it ended,
    the run's folder on the hosts and the cloud participant's pid.
    """
    ws = init_workspace(tmp_path / "ws")
    (ws.experiments_dir / "partition.yaml").write_text(textwrap.dedent(MANIFEST))
    plan = resolve_run(ws.load_manifest("partition"), ws.root)
    store = ResultsStore(ws.results_db)
    run_id = "np" + os.urandom(5).hex()
    deployer = deployer_for_plan(plan, ws.root, registry, run_id=run_id)
    result: list[RunOutcome] = []
    observer = _Stopping()
    thread = threading.Thread(
        target=lambda: result.append(
            run_experiment(plan, store, workspace=ws.root, deployer=deployer, observer=observer)
        )
    )
    thread.start()
    try:
        pid = _wait_for_inferences(store, minimum=3)
        run_dir = Path("/root/.splittracer/runs") / run_id
        assert (run_dir / "cloud").is_dir()
        cut = time.monotonic()
        _set_link(namespace, "down")
        thread.join(timeout=60)
        ended = time.monotonic() - cut
    finally:
        if thread.is_alive():  # whatever failed above, the run ends and the lab comes down whole
            _set_link(namespace, "up")
            thread.join()
    failed = observer.at - cut
    print(f"partition: the run failed after {failed:.2f} s, ended after {ended:.2f} s: {result[0].error}")
    return result[0], (failed, ended), run_dir, pid


class _Stopping(RunObserver):
    """When the controller began to stop participants: when it decided the run failed."""

    at = float("inf")

    def phase(self, text: str) -> None:
        if text.startswith("stopping"):
            self.at = time.monotonic()


def _paired_as_root(testbed: Testbed, lab: TestbedState, tmp_path: Path) -> Registry:
    """Both hosts paired as root by key, running this machine's Python with this splittracer."""
    python = tmp_path / "python"
    source = Path(splittracer.__file__).resolve().parents[1]
    python.write_text(f'#!/bin/sh\nPYTHONPATH={source} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return testbed.pair_as_root(tmp_path / "devices.yaml", ["np-phone", "np-cloud"], python=str(python))


def _wait_for_inferences(store: ResultsStore, minimum: int) -> int:
    """The cloud participant's pid once the run recorded ``minimum`` inferences."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = store.list_runs()
        if runs and len(store.spans(runs[-1].id, kind="inference")) >= minimum:
            return store.get_run(runs[-1].id).record.participants["cloud"].pid
        time.sleep(0.2)
    raise AssertionError("no inference recorded in time")


def _set_link(namespace: str, state: str) -> None:
    subprocess.run(["ip", "-n", namespace, "link", "set", "eth0", state], check=True)


def _wait_until_gone(run_dir: Path, pid: int, namespace: str) -> list[str]:
    """What of the run is still on the host after up to GONE_WITHIN_S."""
    deadline = time.monotonic() + GONE_WITHIN_S
    while True:
        left = [f"folder {run_dir}"] if run_dir.exists() else []
        if pid in namespace_pids(namespace) and not _zombie(pid):
            left.append(f"participant process {pid}")
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] == "Z"
