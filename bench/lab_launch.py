"""Time from starting a run to its first inference: two lab hosts over SSH vs local.

Needs Linux and root: brings up a 2-host testbed (real sshd in network
namespaces, 10 Mbit/s tbf link), pairs both hosts as root by key, then runs
the same short experiment (5 AlexNet inferences at split 13) on the lab
hosts and on local processes, alternately, ``--runs`` times each. Prints
the median time from ``run_experiment`` being called to the first
inference starting (both on the controller's clock), and the ratio.

    sudo python bench/lab_launch.py [--runs 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _lab import machine, median, workspace

from splittracer.controller.placement import deployer_for_plan
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import run_experiment
from splittracer.devices.registry import Registry
from splittracer.lab import Testbed
from splittracer.metrics.store import ResultsStore

MANIFEST = """
name: NAME
model: {source: torchvision:alexnet}
participants:
  phone: {device: PHONE, role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {device: CLOUD, role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Infer
      params: {next: [cloud], split: 13, count: 5, finish: true}
"""


def pair(testbed: Testbed, registry: Registry) -> None:
    """Both hosts paired as root by the lab's key, with this machine's Python."""
    testbed.pair_as_root(registry.path, ["lab-phone", "lab-cloud"])


def launch_s(ws_root: Path, name: str, registry: Registry) -> float:
    from splittracer.workspace import open_workspace

    ws = open_workspace(ws_root)
    plan = resolve_run(ws.load_manifest(name), ws.root)
    store = ResultsStore(ws.results_db)
    started = time.perf_counter_ns()
    outcome = run_experiment(
        plan, store, workspace=ws.root, deployer=deployer_for_plan(plan, ws.root, registry)
    )
    if outcome.status != "succeeded":
        raise SystemExit(f"run failed: {outcome.error}")
    first = min(s.start_ns for s in store.spans(outcome.run_id, kind="inference"))
    return (first - started) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="splittracer-lab-bench-"))
    testbed = Testbed(state_dir)
    testbed.up(2, "10mbit")
    try:
        registry = Registry(state_dir / "bench-devices.yaml")
        pair(testbed, registry)
        ws = workspace(
            {
                "lab": MANIFEST.replace("NAME", "lab")
                .replace("PHONE", "lab-phone")
                .replace("CLOUD", "lab-cloud"),
                "local": MANIFEST.replace("NAME", "local")
                .replace("PHONE", "local")
                .replace("CLOUD", "local"),
            }
        )
        lab, local = [], []
        for _ in range(args.runs):
            lab.append(launch_s(ws.root, "lab", registry))
            local.append(launch_s(ws.root, "local", registry))
    finally:
        testbed.down()
    print(f"# {machine()}; median of {args.runs} runs each")
    print(f"launch to first inference, two lab hosts over SSH: {median(lab):.2f} s")
    print(f"launch to first inference, two local processes:   {median(local):.2f} s")
    print(f"ratio lab / local: {median(lab) / median(local):.2f}")


if __name__ == "__main__":
    main()
