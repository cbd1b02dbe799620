"""Soak: 10,000 inferences in one run, and whether anything grows.

A small MLP split between two local participants (the head's three layers,
then the tail's two), so the run measures SplitTracer's own per-inference
costs, not a model's. While the run goes on, this process samples the
resident memory and open file descriptors of the controller (this process)
and of each participant. "start" is the first sample once 1,000 inferences
are stored (caches warm, pools full), "end" the last sample before the run
ends. Per-inference overhead: the median inference time of the first
1,000 measured inferences against the last 1,000, from the same run's spans.

    python bench/soak.py [--count 10000]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import threading
import time
from dataclasses import dataclass

import psutil
from _lab import machine, run, workspace

MODEL = """
import torch


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
"""

SOAK = """
name: soak
model: {{source: "tiny:build", input_shape: [1, 64]}}
participants:
  phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1}}}}
  cloud: {{role: "splittracer.builtin:SplitTail", limits: {{threads: 1}}}}
playbook:
  phone:
    - task: Sweep
      params: {{splits: [3], next: [cloud], repeats: {count}, warmup: 0}}
options: {{sample_interval: 1s}}
"""

WARM_AFTER = 1000


@dataclass
class Sample:
    """One reading of every process: name -> (resident bytes, open descriptors)."""

    stored: int
    procs: dict[str, tuple[int, int]]


def _stored(db: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM spans WHERE kind = 'inference'").fetchone()[0])
    except sqlite3.Error:
        return 0


def _reading() -> dict[str, tuple[int, int]]:
    me = psutil.Process()
    procs = {"controller": me}
    for child in me.children(recursive=True):
        cmdline = " ".join(child.cmdline())
        if "splittracer.participant" in cmdline:
            procs["phone" if "phone" in cmdline else "cloud"] = child
    found = {}
    for name, proc in procs.items():
        try:
            found[name] = (proc.memory_info().rss, proc.num_fds())
        except psutil.Error:
            continue
    return found


def _sampler(db: str, samples: list[Sample], done: threading.Event) -> None:
    while not done.wait(1.0):
        stored = _stored(db)
        if stored >= WARM_AFTER:
            samples.append(Sample(stored, _reading()))


def _medians(durations: list[float]) -> tuple[float, float]:
    return statistics.median(durations[:WARM_AFTER]), statistics.median(durations[-WARM_AFTER:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    ws = workspace({"soak": SOAK.format(count=args.count)}, {"tiny.py": MODEL})
    samples: list[Sample] = []
    done = threading.Event()
    thread = threading.Thread(target=_sampler, args=(str(ws.results_db), samples, done), daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        outcome, store = run(ws, "soak")
    finally:
        done.set()
        thread.join()
    wall = time.monotonic() - started
    spans = sorted(store.spans(outcome.run_id, kind="inference"), key=lambda s: s.start_ns)
    durations = [(s.end_ns - s.start_ns) / 1e6 for s in spans]
    first, last = _medians(durations)
    print(f"# {machine()}")
    print(f"{len(spans)} inferences in {wall:.0f} s (run wall time, start-up included)")
    print(
        f"per inference: median {first:.3f} ms (first {WARM_AFTER}) -> {last:.3f} ms (last {WARM_AFTER}): "
        f"{last / first:.2f}x"
    )
    if len(samples) < 2:
        raise SystemExit("too few samples after warm-up: run with a larger --count")
    start, end = samples[0], samples[-1]
    for name in sorted(start.procs.keys() & end.procs.keys()):
        (rss0, fds0), (rss1, fds1) = start.procs[name], end.procs[name]
        print(
            f"{name:>10}: rss {rss0 / 2**20:.1f} -> {rss1 / 2**20:.1f} MiB ({(rss1 - rss0) / 2**20:+.1f}), "
            f"fds {fds0} -> {fds1} ({fds1 - fds0:+d}), between inference {start.stored} and {end.stored}"
        )


if __name__ == "__main__":
    main()
