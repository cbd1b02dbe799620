"""The min-cut placement against the best prefix cut, measured in one run: the predicted ordering.

The model (``tests.unit.toy_models:two_path``) reduces its 600 kB input
twice: once for a heavy stack, once (later in execution order) for the end.
The phone is one torch thread held to a tenth of a core (cgroups), the
cloud one unthrottled thread, the uplink 20 Mbit/s. The cloud's profile is
measured; the phone's is the same ten times slower (a tenth of a core),
which is what decides the plan: sending the input (split 0) beats running
the stack on the phone, and the minimum cut runs both reductions on the
phone and sends 47 kB instead.

What is checked is what physics fixes on a machine shared with other work:
the ordering of the two placements' fastest end-to-end latency (the min cut
is predicted ~2.5x faster), and the part of the gain the emulated link
sets, the forward transfer, within 10 % of its prediction. The total gain
also carries the cloud's heavy stack, which other work slows by half or
more at times; ``bench/placement.py`` measures it (BENCHMARKS.md).
"""

from __future__ import annotations

import dataclasses

import pytest

from splittracer.controller.plancheck import check_run
from splittracer.devices.limits import ResourceLimits, RunCgroups
from splittracer.errors import RunError
from splittracer.plan.chain import Link
from splittracer.plan.planner import predict_splits
from splittracer.plan.profiles import DeviceProfile, ProfileStore, default_profile_dir, profile_local
from splittracer.report.summary import summarize
from splittracer.split.parts import compact

from .helpers import run, workspace_with

SOURCE = "tests.unit.toy_models:two_path"
SHAPE = (1, 3, 224, 224)
PHONE_CPU = 0.1
ROUNDS = 8


def _cgroups_usable() -> bool:
    cgroups = RunCgroups("probe-gain")
    try:
        cgroups.create("probe", ResourceLimits(cpu=1.0)).throttle()
    except RunError:
        return False
    finally:
        cgroups.remove()
    return True


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not _cgroups_usable(), reason="no writable cgroup cpu controller"),
]

MANIFEST = """
name: gain
model: {{source: "{source}", input_shape: [1, 3, 224, 224]}}
participants:
  phone:
    role: splittracer.builtin:SplitHead
    limits: {{threads: 1, cpu: {cpu}, uplink: 20mbit, latency: 10ms}}
  cloud:
    role: splittracer.builtin:SplitTail
    limits: {{threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {{next: [cloud], placements: {placements}, repeats: 1, warmup: 1}}
"""


def test_the_min_cut_measures_the_gain_it_was_predicted(tmp_path):
    ws = workspace_with(tmp_path, {})
    store = ProfileStore(default_profile_dir(ws.results_dir))
    cloud = DeviceProfile(name="cloud", threads=1).with_models(
        profile_local([SOURCE], threads=1, repeats=5, warmup=1, input_shape=SHAPE)
    )
    store.save(cloud)
    (measured,) = cloud.models
    slower = [dataclasses.replace(layer, median_ms=layer.median_ms / PHONE_CPU) for layer in measured.layers]
    phone = DeviceProfile(name="phone", threads=1).with_models([dataclasses.replace(measured, layers=slower)])
    profiles = [phone, cloud]
    plan = predict_splits(SOURCE, profiles, [Link(20e6, 0.010)], dag=True, input_shape=SHAPE)
    dag, prefix = plan.dag, plan.chain.best
    assert dag is not None and not dag.contiguous
    assert dag.total_ms < prefix.total_ms, (dag, prefix)
    prefix_label = compact(range(1, prefix.cuts[0] + 1))
    placements = [dag.placement, prefix_label] * ROUNDS
    text = MANIFEST.format(source=SOURCE, cpu=PHONE_CPU, placements=placements)
    (ws.experiments_dir / "gain.yaml").write_text(text)
    outcome, results = run(ws, "gain")
    assert outcome.status == "succeeded", outcome.error
    checked = check_run(results, outcome.run_id, profiles, quantile=0.0)
    rows = {r.placement or compact(range(1, r.cuts[0] + 1)): r for r in checked.rows}
    placed, cut = rows[dag.placement], rows[prefix_label]
    assert placed.count == cut.count == ROUNDS
    assert placed.measured_ms < cut.measured_ms, (placed, cut)  # the predicted ordering
    summary = {r.placement: r for r in summarize(results.spans(outcome.run_id))}
    sent = summary[prefix_label].transfer.median - summary[dag.placement].transfer.median
    predicted = sum(prefix.transfers_ms) - dag.transfer_ms
    assert abs(sent - predicted) <= 0.10 * predicted, (sent, predicted)
