"""Dynamic batching on the built-in tail: 8 clients at a saturating load, with and without it.

AlexNet split after pool5 (split 13): 8 cameras (replicas, one torch thread
each, 2 frames in flight each, so the edge always has work waiting) send to
one edge on one thread, once with ``batch: {max: 8, wait: 5ms}`` and once
without, alternating ``--rounds`` times in one invocation. Reported per
setting (medians over rounds):

* the aggregate achieved frames/s (limited by every process sharing the
  machine's cores, so it moves less than the tail does);
* the tail's capacity: frames per second of the edge's compute time (each
  batch counted once), which is what batching changes (the FC layers read
  their weights once for the whole batch);
* the batch sizes the edge formed.

    python bench/batching.py [--clients 8] [--frames 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics

from _lab import machine, median, run, workspace

from splittracer.report.streams import summarize_streams

MANIFEST = """
name: NAME
model: {source: torchvision:alexnet}
participants:
  camera: {role: "splittracer.builtin:SplitHead", replicas: CLIENTS, limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", BATCH limits: {threads: 1}}
options: {warmup: 2}
playbook:
  camera:
    - task: Stream
      params: {split: 13, next: [edge], count: FRAMES, inflight: 2}
"""


def one(clients: int, frames: int, batched: bool) -> tuple[float, float, list[float]]:
    name = "batched" if batched else "plain"
    text = MANIFEST.replace("NAME", name).replace("CLIENTS", str(clients)).replace("FRAMES", str(frames))
    text = text.replace("BATCH", "batch: {max: 8, wait: 5ms}," if batched else "")
    ws = workspace({name: text})
    outcome, store = run(ws, name)
    spans, metrics = store.spans(outcome.run_id), store.metrics(outcome.run_id)
    total = next(r for r in summarize_streams(spans, metrics) if r.client == "*")
    measured = {s.inference for s in spans if s.kind == "inference" and not s.attrs.get("warmup")}
    at_edge = [
        s for s in spans if s.participant == "edge" and s.kind == "compute" and s.inference in measured
    ]
    busy_s = sum(s.duration_ms for s in at_edge if not s.attrs.get("batched")) / 1000  # each batch once
    sizes = [m.value for m in metrics if m.name == "batch_size"] or [1.0]
    return total.achieved_fps, len(at_edge) / busy_s, sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(machine())
    results: dict[bool, list[tuple[float, float, list[float]]]] = {False: [], True: []}
    for _ in range(args.rounds):
        for batched in (False, True):
            results[batched].append(one(args.clients, args.frames, batched))
    for batched, label in ((False, "no batching"), (True, "batch max 8, 5 ms")):
        rows = results[batched]
        sizes = [s for _, _, group in rows for s in group]
        print(
            f"{label:>18}: aggregate {median([r[0] for r in rows]):6.2f} fps, "
            f"tail capacity {median([r[1] for r in rows]):7.2f} frames/s of compute, "
            f"batch size mean {statistics.fmean(sizes):.2f} (max {max(sizes):.0f})"
        )
    plain, batched = results[False], results[True]
    print(
        f"batched / plain: aggregate {median([r[0] for r in batched]) / median([r[0] for r in plain]):.2f}x, "
        f"tail capacity {median([r[1] for r in batched]) / median([r[1] for r in plain]):.2f}x"
    )


if __name__ == "__main__":
    main()
