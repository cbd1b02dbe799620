"""Fan-in on lab hosts: four cameras, one per lab host (``devices:``), sharing one edge.

The same fan-in as tests/integration/test_fleets.py, with every camera a replica on its own
lab host over SSH and the edge on the controller. Builds its own four-host lab under names no
other test uses (prefix ``fi``, 198.18.6.0/24), unshaped: only the fleet's bookkeeping is tested.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from splittracer.clock import now_ns
from splittracer.controller.placement import deployer_for_plan
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import RunObserver, run_experiment
from splittracer.lab import LabNetwork, Testbed
from splittracer.metrics.spans import client_of
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import init_workspace

from ..manifests import fan_in
from .conftest import lab_skip_reason

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NETWORK = LabNetwork(prefix="fi", subnet=6)
CAMERAS = [f"fi-cam{i}" for i in range(4)]


class _StopTime(RunObserver):
    """When the controller began stopping the participants, on the span clock."""

    stopping_ns = 0

    def phase(self, text: str) -> None:
        if text.startswith("stopping"):
            self.stopping_ns = now_ns()


def test_four_lab_hosts_share_one_edge(tmp_path: Path, claim_lab: Callable[[LabNetwork], list[str]]) -> None:
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(f"no testbed: {reason}")
    claim_lab(NETWORK)
    testbed = Testbed(tmp_path / "state", NETWORK)
    state = testbed.up(len(CAMERAS), ready=False)
    try:
        registry = testbed.pair_as_root(tmp_path / "devices.yaml", CAMERAS)
        ws = init_workspace(tmp_path / "ws")
        manifest = fan_in(f"devices: [{', '.join(CAMERAS)}]", edge="device: local")
        (ws.experiments_dir / "fan-in.yaml").write_text(textwrap.dedent(manifest))
        plan = resolve_run(ws.load_manifest("fan-in"), ws.root)
        store, observer = ResultsStore(ws.results_db), _StopTime()
        deployer = deployer_for_plan(plan, ws.root, registry)
        outcome = run_experiment(plan, store, workspace=ws.root, deployer=deployer, observer=observer)
        assert outcome.status == "succeeded", outcome.error
        spans = store.spans(outcome.run_id)
        placed = {d.name: (d.device.name, d.peer_address) for d in deployer.remote.deployments}
    finally:
        testbed.down()
    assert testbed.leftovers() == []
    inferences = [s for s in spans if s.kind == "inference"]
    assert len(inferences) == 40 and len({s.inference for s in inferences}) == 40
    assert Counter(s.attrs["client"] for s in inferences) == {f"camera-{i}": 10 for i in range(4)}
    assert {client_of(s.inference) for s in inferences} == {0, 1, 2, 3}
    stages = {s.participant: s.stage for s in spans if s.kind == "compute"}
    assert stages == {"camera-0": 0, "camera-1": 0, "camera-2": 0, "camera-3": 0, "edge": 1}
    # Each camera ran on its own lab host, listening for peers at that host's address.
    assert {name: device for name, (device, _) in placed.items()} == {
        f"camera-{i}": CAMERAS[i] for i in range(4)
    }
    addresses = {peer.rsplit(":", 1)[0].strip("[]") for _, peer in placed.values()}
    assert addresses == {h.address for h in state.hosts}, placed
    edge_ids = {s.inference for s in spans if s.participant == "edge" and s.kind == "compute"}
    assert edge_ids == {s.inference for s in inferences}
    # The run ended after the last camera's last answer, not when the first camera was done.
    assert observer.stopping_ns >= max(s.end_ns for s in inferences)
