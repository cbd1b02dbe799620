"""Launch to first inference: fresh participant processes vs the warm agent, in the same run.

The AlexNet experiment of ``split_inference.py`` (two local participants,
split 13, 5 inferences, one torch thread each), run alternately with
participants spawned as new processes (``SPLITTRACER_AGENT=off``) and
forked by a warm agent started for this benchmark in a private directory
(stopped at the end). Time from ``run_experiment`` being called to the
first inference starting (target <= 2 s), and its phases: participants
listening (start, Hello, clock sync), configured (role imported, model
built and captured), then the first inference.

    python bench/launch.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _lab import machine, median, workspace

from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import RunObserver, run_experiment
from splittracer.deploy import agent_client as agent
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import Workspace

MANIFEST = """
name: pool5
model: {source: torchvision:alexnet}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Infer
      params: {next: [cloud], split: 13, count: 5, finish: true}
"""


class _Phases(RunObserver):
    """When each phase of the run began (perf_counter_ns)."""

    def __init__(self) -> None:
        self.at: dict[str, int] = {}

    def phase(self, text: str) -> None:
        self.at.setdefault(text.split()[0], time.perf_counter_ns())


def once(ws: Workspace, store: ResultsStore, name: str, mode: str) -> dict[str, float]:
    """One run; seconds from the call to each phase and to the first inference."""
    os.environ[agent.USE_ENV] = "off" if mode == "spawn" else "on"
    phases = _Phases()
    launched = time.perf_counter_ns()
    outcome = run_experiment(resolve_run(ws.load_manifest(name)), store, workspace=ws.root, observer=phases)
    if outcome.status != "succeeded":
        raise SystemExit(f"run failed: {outcome.error}")
    launch = store.get_run(outcome.run_id).record.launch
    if set(launch.values()) != {mode}:
        raise SystemExit(f"expected every participant from {mode}, got {launch}")
    inferences = sorted(
        (s for s in store.spans(outcome.run_id) if s.kind == "inference"), key=lambda s: s.start_ns
    )
    return {
        "listening": (phases.at["configuring"] - launched) / 1e9,
        "configured": (phases.at["running"] - launched) / 1e9,
        "first_inference": (inferences[0].start_ns - launched) / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="st-bench-agent-", dir="/tmp"))
    os.environ[agent.DIR_ENV] = str(directory)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "splittracer", "agent", "start", "--idle-timeout", "10m", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    agent_start_s = time.perf_counter() - started
    agent_pid = int(json.loads(done.stdout)["pid"])
    ws = workspace({"pool5": MANIFEST})
    store = ResultsStore(ws.results_db)
    results: dict[str, list[dict[str, float]]] = {"spawn": [], "agent": []}
    try:
        for _ in range(args.rounds):
            for mode in ("spawn", "agent"):
                results[mode].append(once(ws, store, "pool5", mode))
    finally:
        os.kill(agent_pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while agent.pid_alive(agent_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        shutil.rmtree(directory, ignore_errors=True)
    print(f"# {machine()}; AlexNet split 13, 2 local participants, 1 thread each; {args.rounds} rounds")
    print(f"agent start (imports, once)        {agent_start_s:6.2f} s")
    print(f"{'':34} {'spawn':>8} {'agent':>8}   (medians; seconds from run_experiment)")
    for key, label in (
        ("listening", "participants listening"),
        ("configured", "configured (model built, captured)"),
        ("first_inference", "first inference starts"),
    ):
        spawn = median([r[key] for r in results["spawn"]])
        warm = median([r[key] for r in results["agent"]])
        print(f"{label:34} {spawn:8.2f} {warm:8.2f}")
    for mode in ("spawn", "agent"):
        print(
            f"{mode} first inference, each run: "
            + ", ".join(f"{r['first_inference']:.2f}" for r in results[mode])
        )


if __name__ == "__main__":
    main()
