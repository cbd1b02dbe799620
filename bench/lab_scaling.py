"""How one controller scales with a fleet of lab-host clients: launch time, memory and CPU.

Needs Linux and root: brings up an 8-host testbed of its own (names ``sc-*``,
198.18.8.0/24, unshaped links), pairs every host as root by key, and runs a
fan-in experiment: N cameras (``devices:``, one replica per lab host; 16
cameras are two per host) each sending 10 AlexNet inferences (64x64 input,
split 13) to one edge on this machine.

1. Launch to first inference, 8 device clients vs 1, alternately ``--runs``
   times each: from ``run_experiment`` being called to the first inference of
   any camera, and to the last camera's first inference (the whole fleet going);
   and how far the 8 device starts (upload, launch, the participant listening)
   overlapped: the controller starts them in parallel, but the lab's hosts
   share this machine's cores, so importing torch 8 times is CPU-bound here.
2. The controller's cost at 1, 4, 8 and 16 clients, each run in a fresh
   process: its resident memory before the run (imports, the resolved plan)
   and at its peak during the run, and the CPU time (user + system) it spent in the run.

Everything it made (the lab, its users and keys, the workspace, the runs'
folders on the hosts) is removed at the end, and checked removed.

    sudo python bench/lab_scaling.py [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _lab import fan_in, machine, median, workspace

from splittracer.controller.placement import deployer_for_plan
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import run_experiment
from splittracer.devices.registry import Registry
from splittracer.lab import LabNetwork, Testbed
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import open_workspace

NETWORK = LabNetwork(prefix="sc", subnet=8)
HOSTS = 8
CLIENTS = (1, 4, 8, 16)
RUNS_ON_HOSTS = Path("/root/.splittracer/runs")  # root's home is shared by the lab's hosts
DEPLOYED: list[str] = []  # the per-run folders' names the launches' deployers used on the hosts


def pair(testbed: Testbed, registry: Registry) -> list[str]:
    """Pair every host as root by the lab's key, with this machine's Python; their device names."""
    state = testbed.read_state()
    assert state is not None
    names = [f"{host.name}-root" for host in state.hosts]
    testbed.pair_as_root(registry.path, names)
    return names


def manifests(devices: list[str]) -> dict[str, str]:
    """One fan-in manifest per client count, ``clients-N``, cameras spread over the hosts."""
    out = {}
    for n in CLIENTS:
        placed = [devices[i % len(devices)] for i in range(n)]
        out[f"clients-{n}"] = fan_in(
            f"devices: [{', '.join(placed)}]", name=f"clients-{n}", edge="device: local"
        )
    return out


def launch_s(ws_root: Path, name: str, registry: Registry) -> tuple[float, float, float]:
    """Seconds from starting the run to the first inference of any client and of the last
    client, and how many device starts (upload, launch, the participant listening) overlapped
    on average: the sum of their durations over the time from the first's begin to the last's end.
    """
    ws = open_workspace(ws_root)
    plan = resolve_run(ws.load_manifest(name), ws.root)
    store = ResultsStore(ws.results_db)
    deployer = deployer_for_plan(plan, ws.root, registry)
    ssh = deployer.remote  # type: ignore[attr-defined]
    DEPLOYED.append(ssh.run_id)
    starts: list[tuple[float, float]] = []
    start_one = ssh.start

    def timed_start(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return start_one(*args, **kwargs)
        finally:
            starts.append((begun, time.perf_counter()))

    ssh.start = timed_start
    started = time.perf_counter_ns()
    outcome = run_experiment(plan, store, workspace=ws.root, deployer=deployer)
    if outcome.status != "succeeded":
        raise SystemExit(f"run failed: {outcome.error}")
    first: dict[str, int] = {}
    for s in store.spans(outcome.run_id, kind="inference"):
        first[s.participant] = min(s.start_ns, first.get(s.participant, s.start_ns))
    window = max(end for _, end in starts) - min(begin for begin, _ in starts)
    overlap = sum(end - begin for begin, end in starts) / window
    return (min(first.values()) - started) / 1e9, (max(first.values()) - started) / 1e9, overlap


def controller_cost(ws_root: Path, name: str, registry: Path) -> dict[str, Any]:
    """Run ``name`` in a fresh controller process; what it used (see :func:`_child`)."""
    done = subprocess.run(
        [sys.executable, __file__, "--controller", str(ws_root), name, str(registry)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"controller for {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(ws_root: str, name: str, registry: str) -> None:
    """The controller process: resolve, then run; print its memory and the run's CPU time as JSON."""
    ws = open_workspace(Path(ws_root))
    plan = resolve_run(ws.load_manifest(name), ws.root)
    store = ResultsStore(ws.results_db)
    deployer = deployer_for_plan(plan, ws.root, Registry(Path(registry)))
    rss_before = _rss_mb()
    peak, done = [rss_before], threading.Event()

    def sample() -> None:  # the resident memory while the run goes on, every 20 ms
        while not done.wait(0.02):
            peak.append(_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    outcome = run_experiment(plan, store, workspace=ws.root, deployer=deployer)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    done.set()
    sampler.join()
    if outcome.status != "succeeded":
        raise SystemExit(f"run failed: {outcome.error}")
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    run_dir = deployer.remote.run_id  # type: ignore[attr-defined]
    cost = {"rss_before_mb": rss_before, "rss_peak_mb": max(peak), "cpu_s": cpu, "wall_s": wall}
    print(json.dumps({**cost, "run_dir": run_dir}))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


Measured = tuple[dict[int, list[tuple[float, float, float]]], dict[int, dict[str, Any]], list[str]]


def measure(testbed: Testbed, state_dir: Path, runs: int) -> Measured:
    """Launch times, controller costs, and the deployments' run folders' names on the hosts."""
    registry = Registry(state_dir / "bench-devices.yaml")
    devices = pair(testbed, registry)
    ws = workspace(manifests(devices))
    launches: dict[int, list[tuple[float, float, float]]] = {1: [], 8: []}
    for _ in range(runs):
        for n in (1, 8):
            launches[n].append(launch_s(ws.root, f"clients-{n}", registry))
    costs = {n: controller_cost(ws.root, f"clients-{n}", registry.path) for n in CLIENTS}
    runs_made = [str(c.pop("run_dir")) for c in costs.values()] + DEPLOYED
    shutil.rmtree(ws.root.parent, ignore_errors=True)
    return launches, costs, runs_made


def report(launches: dict[int, list], costs: dict[int, dict], runs: int) -> None:
    print(f"# {machine()}; {HOSTS} lab hosts, median of {runs} launches each")
    any1, all1 = (median([r[i] for r in launches[1]]) for i in (0, 1))
    any8, all8 = (median([r[i] for r in launches[8]]) for i in (0, 1))
    print(f"launch to first inference, 1 device client:  {any1:.2f} s")
    print(f"launch to first inference, 8 device clients: {any8:.2f} s (the last one's first: {all8:.2f} s)")
    print(f"ratio 8 / 1: {any8 / any1:.2f} (last client's first: {all8 / all1:.2f})")
    overlap = median([r[2] for r in launches[8]])
    print(f"the 8 device starts overlapped {overlap:.1f}-fold (1: one after another, 8: all at once)")
    print("clients  rss before MB  rss peak in run MB  run CPU s  run wall s")
    for n, c in costs.items():
        memory = f"{c['rss_before_mb']:12.0f}  {c['rss_peak_mb']:18.0f}"
        print(f"{n:7d}  {memory}  {c['cpu_s']:9.2f}  {c['wall_s']:10.1f}")
    lo, hi = costs[CLIENTS[0]], costs[CLIENTS[-1]]
    span = CLIENTS[-1] - CLIENTS[0]
    print(
        f"per extra client: {(hi['rss_peak_mb'] - lo['rss_peak_mb']) / span:.1f} MB peak memory, "
        f"{(hi['cpu_s'] - lo['cpu_s']) / span:.3f} s CPU (10 inferences each)"
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--controller":
        _child(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="splittracer-lab-scaling-"))
    testbed = Testbed(state_dir, NETWORK)
    try:
        testbed.up(HOSTS, ready=False)
        launches, costs, runs_made = measure(testbed, state_dir, args.runs)
    finally:
        testbed.down()
        shutil.rmtree(state_dir, ignore_errors=True)
    report(launches, costs, args.runs)
    left = testbed.leftovers() + [str(d) for d in map(RUNS_ON_HOSTS.joinpath, runs_made) if d.exists()]
    if left:
        raise SystemExit(f"left behind: {left}")


if __name__ == "__main__":
    main()
