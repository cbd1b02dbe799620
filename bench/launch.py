"""Command line to first inference: fresh participant processes vs the warm agent.

The AlexNet experiment of ``split_inference.py`` (two local participants,
split 13, 5 inferences, one torch thread each), run as a user runs it —
``python -m splittracer run pool5 --workspace WS --json --no-plot`` in a
new process — alternately with participants spawned as new processes
(``SPLITTRACER_AGENT=off``) and forked by a warm agent started for this
benchmark in a private directory (stopped at the end). Measured from the
moment the command is started: when the first inference starts (target
with the warm agent: <= 1.5 s) and when the command exits.

The first inference's start is read from its span in the run's store once
the command has ended: spans are stamped with ``time.perf_counter_ns``,
which on Linux is the machine-wide monotonic clock, so this script's own
``perf_counter_ns`` taken just before starting the command shares it.

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

from _lab import machine, median, pool5, workspace

from splittracer.deploy import agent_client as agent
from splittracer.metrics.store import ResultsStore
from splittracer.workspace import Workspace


def once(ws: Workspace, mode: str, env: dict[str, str]) -> dict[str, float]:
    """One ``splittracer run`` command; seconds from its start to the first inference and to its exit."""
    command = [sys.executable, "-m", "splittracer", "run", "pool5", "--workspace", str(ws.root)]
    env = {**env, agent.USE_ENV: "off" if mode == "spawn" else "on"}
    started = time.perf_counter_ns()
    done = subprocess.run([*command, "--json", "--no-plot"], env=env, capture_output=True, text=True)
    ended = time.perf_counter_ns()
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {done.stderr}")
    result = json.loads(done.stdout)
    if set(result["launch"].values()) != {mode}:
        raise SystemExit(f"expected every participant from {mode}, got {result['launch']}")
    with ResultsStore(ws.results_db) as store:
        first = min(s.start_ns for s in store.spans(result["run"]) if s.kind == "inference")
    return {"first_inference": (first - started) / 1e9, "exit": (ended - started) / 1e9}


def _start_agent(env: dict[str, str]) -> tuple[int, float]:
    """Start the agent with ``splittracer agent start``; its pid and how long the command took."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "splittracer", "agent", "start", "--idle-timeout", "10m", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(json.loads(done.stdout)["pid"]), time.perf_counter() - started


def _stop_agent(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while agent.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="st-bench-agent-", dir="/tmp"))
    env = {**os.environ, agent.DIR_ENV: str(directory)}
    agent_pid, agent_start_s = _start_agent(env)
    ws = workspace({"pool5": pool5(count=5)})
    results: dict[str, list[dict[str, float]]] = {"spawn": [], "agent": []}
    try:
        for _ in range(args.rounds):
            for mode in ("spawn", "agent"):
                results[mode].append(once(ws, mode, env))
    finally:
        _stop_agent(agent_pid)
        shutil.rmtree(directory, ignore_errors=True)
    print(f"# {machine()}; AlexNet split 13, 2 local participants, 1 thread each; {args.rounds} rounds")
    print(f"agent start (imports, once)        {agent_start_s:6.2f} s")
    print(f"{'':34} {'spawn':>8} {'agent':>8}   (medians; seconds from the command's start)")
    for key, label in (("first_inference", "first inference starts"), ("exit", "command exits")):
        spawn = median([r[key] for r in results["spawn"]])
        warm = median([r[key] for r in results["agent"]])
        print(f"{label:34} {spawn:8.2f} {warm:8.2f}")
    for mode in ("spawn", "agent"):
        each = ", ".join(f"{r['first_inference']:.2f}" for r in results[mode])
        print(f"{mode} first inference, each run: {each}")


if __name__ == "__main__":
    main()
