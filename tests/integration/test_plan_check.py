"""The planner against measurement: AlexNet and ResNet18 sweeps under emulated Neurosurgeon links.

A phone (1 torch thread) and a cloud (2 threads) on this machine; profiles
of both measured in process; each link a real sweep. The splits are swept
in interleaved rounds (every split once, then again) rather than each
split's repeats in a row, so a change of load on a shared machine hits
every split alike. The planner's choice must measure within 5 % of the
fastest measured split. To keep the test short a sweep skips the splits
whose transfer alone takes longer than the case's ``max_transfer_s`` at
the link's rate, several times the best split's total; the planner still
plans over every split.

ResNet18 is swept at block granularity (stem layers, residual blocks,
pooling, classifier: 14 layers; its 60 leaf layers would take four times
as long for cuts inside blocks that are never chosen) on the 224x224 input
Neurosurgeon used.

Why each split's latency is its lower quartile, not its median: on this
shared 2-core machine other work slows a sample by 20-40 % now and then
(never speeds one up), and it comes in bursts, so a split's samples are
bimodal. ResNet18's two best splits (after the pooling, after the
classifier) are predicted 2 % apart and measure as close when undisturbed;
with medians of 3-5 samples the "measured best" of the two went to
whichever drew more disturbed samples, and the planner's choice measured
about 20 % slower than the best in 4 of 7 runs (on a 64x64 input, where
the best splits total ~40 ms, as on 224x224). The lower quartile of 7 samples
moves only when 5 of them are disturbed. What it cannot remove: the cloud's
two threads cost a load-dependent few ms even for the classifier alone,
which separates those two splits by 5-10 % in some runs (BENCHMARKS.md).
When the sweep puts the planner's choice more than 5 % behind its best,
the two are measured again head to head, alone, with three times the
rounds, and the 5 % is checked on that run (see ``_head_to_head``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass

import pytest

from splittracer.controller.plancheck import check_run
from splittracer.plan.profiles import DeviceProfile, ProfileStore, default_profile_dir, profile_local
from splittracer.split.load import load_split_model

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow

LINKS = {"3g": "1.1mbit", "lte": "5.85mbit", "wifi": "18.88mbit"}
MANIFEST = """
name: {name}
model: {{source: "{source}", input_shape: {shape}, granularity: {granularity}}}
participants:
  phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1, uplink: {rate}, latency: 10ms}}}}
  cloud: {{role: "splittracer.builtin:SplitTail", limits: {{threads: 2}}}}
playbook:
  phone:
    - task: Sweep
      params: {{splits: {splits}, next: [cloud], repeats: 1, warmup: 0}}
"""


@dataclass(frozen=True)
class Case:
    """A model swept under every link, ``rounds`` times every split whose transfer takes at most
    ``max_transfer_s``."""

    source: str
    shape: tuple[int, ...]
    granularity: str
    rounds: int
    max_transfer_s: float


CASES = {
    # 1.5 s: AlexNet's splits up to 206 kB at 1.1 Mbit/s (the best: 4 kB, ~0.1 s in all).
    "alexnet": Case("torchvision:alexnet", (1, 3, 224, 224), "leaf", 3, 1.5),
    # 1.0 s: ResNet18's best splits send 2-4 kB and total ~0.1 s; its stem sends 3.2 MB.
    "resnet18": Case("torchvision:resnet18", (1, 3, 224, 224), "block", 7, 1.0),
}
RATES = {"3g": 1.1e6, "lte": 5.85e6, "wifi": 18.88e6}
QUANTILE = 0.25  # each split's lower quartile: see above


@pytest.fixture(scope="module", params=list(CASES))
def measured(request, tmp_path_factory):
    case = CASES[request.param]
    points = load_split_model(case.source, input_shape=case.shape, granularity=case.granularity).split.points
    swept = {
        name: [p.index for p in points if 8 * p.bytes / rate <= case.max_transfer_s]
        for name, rate in RATES.items()
    }
    manifests = {
        name: MANIFEST.format(
            name=name,
            source=case.source,
            shape=list(case.shape),
            granularity=case.granularity,
            rate=rate,
            splits=swept[name] * case.rounds,
        )
        for name, rate in LINKS.items()
    }
    ws = workspace_with(tmp_path_factory.mktemp(f"check-{request.param}"), manifests)
    store = ProfileStore(default_profile_dir(ws.results_dir))
    profiles = [
        store.load(
            store.save(
                DeviceProfile(name=f"local-{t}t", threads=t).with_models(
                    profile_local(
                        [case.source],
                        threads=t,
                        repeats=5,
                        warmup=2,
                        input_shape=case.shape,
                        granularity=case.granularity,
                        energy=False,
                    )
                )
            ).stem
        )
        for t in (1, 2)
    ]
    runs = {}
    for name in LINKS:
        outcome, results = run(ws, name)
        assert outcome.status == "succeeded", outcome.error
        runs[name] = outcome.run_id
    return ws, results, profiles, runs, len(swept["wifi"]), case


@pytest.mark.parametrize("link", list(LINKS))
def test_planned_split_measures_within_5_percent_of_the_best(measured, link):
    ws, store, profiles, runs, _count, case = measured
    check = check_run(store, runs[link], profiles, quantile=QUANTILE)
    assert check.planned_row is not None, f"the planner chose {check.planned}, which the sweep skipped"
    if check.regret > 0.05:
        check = _head_to_head(ws, case, link, check, profiles)
    assert check.regret <= 0.05, (
        f"{check.plan.source} {link}: planned {check.planned} "
        f"measured {check.planned_row.measured_ms:.1f} ms, "
        f"best {check.measured_best.cuts} {check.measured_best.measured_ms:.1f} ms; "
        + ", ".join(f"{r.cuts[0]}: {r.measured_ms:.0f}/{r.predicted_ms:.0f}" for r in check.rows)
    )
    if len(check.rows) >= 8:  # over 4 splits one swap of two near-equal ones makes it 0.8
        assert check.rank_correlation > 0.8


def _head_to_head(ws, case, link, check, profiles):
    """Measure the planner's choice against the sweep's best again, alone and for longer.

    A sweep gives each split a few samples; when the planner's choice and
    the measured best are near-equal, which of them "wins" can be down to
    which drew more samples disturbed by other work. The two are then
    measured again in a run of their own, interleaved, three times as many
    rounds, and that run is what the 5 % is checked on.
    """
    pair = [check.planned[0], check.measured_best.cuts[0]]
    name = f"{link}-pair"
    (ws.experiments_dir / f"{name}.yaml").write_text(
        MANIFEST.format(
            name=name,
            source=case.source,
            shape=list(case.shape),
            granularity=case.granularity,
            rate=LINKS[link],
            splits=pair * (3 * case.rounds),
        )
    )
    outcome, store = run(ws, name)
    assert outcome.status == "succeeded", outcome.error
    again = check_run(store, outcome.run_id, profiles, quantile=QUANTILE)
    assert again.planned == check.planned
    return again


def test_check_command(measured):
    ws, _store, _profiles, runs, count, _case = measured
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "splittracer",
            "plan",
            "--check",
            runs["wifi"],  # not "latest": a head-to-head run may have come after it
            "--devices",
            "local-1t,local-2t",
            "--quantile",
            str(QUANTILE),
            "--json",
            "-w",
            str(ws.root),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["experiment"] == "wifi" and len(data["splits"]) == count
    assert data["methods"] == ["measured", "measured"]
    assert data["regret"] >= 0 and data["measured_best_ms"] <= data["chosen_measured_ms"]


CHAIN = """
name: chain
model: {source: torchvision:resnet18, input_shape: [1, 3, 64, 64], granularity: block}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1, uplink: 5.85mbit, latency: 10ms}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1, uplink: 18.88mbit}}
  cloud: {role: "splittracer.builtin:SplitTail", limits: {threads: 2}}
playbook:
  phone:
    - task: Sweep
      params: {cuts: [[0, 0], [0, 14], [4, 8], [7, 14], [14, 14]], next: [edge, cloud], repeats: 2, warmup: 1}
"""


def test_three_device_chain_is_checked_cut_by_cut(tmp_path):
    ws = workspace_with(tmp_path, {"chain": CHAIN})
    shape = (1, 3, 64, 64)
    profiles = [
        DeviceProfile(name=f"p{t}", threads=t).with_models(
            profile_local(
                ["torchvision:resnet18"],
                threads=t,
                repeats=3,
                warmup=1,
                input_shape=shape,
                granularity="block",
            )
        )
        for t in (1, 1, 2)
    ]
    outcome, store = run(ws, "chain")
    assert outcome.status == "succeeded", outcome.error
    check = check_run(store, outcome.run_id, profiles)
    assert [r.cuts for r in check.rows] == [(0, 0), (0, 14), (4, 8), (7, 14), (14, 14)]
    assert [link.bandwidth_bps for link in check.plan.links] == [5.85e6, 18.88e6]
    assert len(check.planned) == 2 and check.predicted_best in check.rows
    assert all(r.count == 2 and r.measured_ms > 0 and r.predicted_ms > 0 for r in check.rows)
    # Everything on the phone sends 4 kB instead of 32-64 kB over 5.85 Mbit/s: ~25 ms ahead of the rest.
    assert check.measured_best.cuts == check.predicted_best.cuts == (14, 14)
