"""A participant with a shifted clock: its offset is recovered and its spans come out right."""

from __future__ import annotations

import statistics

import pytest

from splittracer.clock import SHIFT_ENV
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import run_experiment
from splittracer.deploy.local import LocalDeployer
from splittracer.metrics.store import ResultsStore

from .helpers import workspace_with

SHIFT_NS = 250_000_000

MANIFEST = """
name: shifted
model: {source: torchvision:alexnet}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1, uplink: 18.88mbit}}
  cloud: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [3, 13], next: [cloud], repeats: 3, warmup: 0}
"""


@pytest.mark.slow
def test_shifted_clock_is_recovered_within_1ms(tmp_path):
    ws = workspace_with(tmp_path, {"shifted": MANIFEST})
    store = ResultsStore(ws.results_db)
    deployer = LocalDeployer(extra_env={"cloud": {SHIFT_ENV: str(SHIFT_NS)}})
    outcome = run_experiment(
        resolve_run(ws.load_manifest("shifted")), store, workspace=ws.root, deployer=deployer
    )
    assert outcome.status == "succeeded", outcome.error
    clocks = store.get_run(outcome.run_id).record.clocks
    assert abs(clocks["cloud"].offset_ns - SHIFT_NS) < 1_000_000
    assert abs(clocks["phone"].offset_ns) < 1_000_000
    assert clocks["cloud"].uncertainty_ns < 1_000_000
    spans = store.spans(outcome.run_id)
    forward = [
        s for s in spans if s.kind == "transfer" and s.attrs.get("direction") == "forward" and s.split == 3
    ]
    expected_ms = 8 * 186_624 / 18.88e6 * 1000
    measured = statistics.median(s.duration_ms for s in forward)
    assert abs(measured - expected_ms) <= 0.10 * expected_ms + 2.0
    assert all("clock_uncertainty_ns" in s.attrs for s in forward)
    # Every stored span is on the controller's clock: the cloud's compute sits inside the phone's inference.
    inference = {s.inference: s for s in spans if s.kind == "inference"}
    for s in spans:
        if s.kind == "compute" and s.participant == "cloud":
            outer = inference[s.inference]
            assert outer.start_ns <= s.start_ns <= s.end_ns <= outer.end_ns
