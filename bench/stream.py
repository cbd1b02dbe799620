"""Streams: achieved throughput against the pipeline bound, measured in one run.

AlexNet split after pool5 (split 13), a phone on one torch thread behind an
emulated LTE uplink (5.85 Mbit/s: 50 ms for the 36,864-byte cut), an edge on
one thread. Every figure comes from the run it reports on:

* closed loop: for ``inflight`` 1, 2, 4 and 8 (each ``--repeats`` times,
  interleaved), achieved frames/s against ``1 / max(head, link, tail)``
  from the same stream's per-stage medians (the best and the median ratio);
* open loop, Poisson arrivals at ``--load`` of the bound: how much of each
  frame's latency its queue, compute and transfer spans account for;
* fan-in: ``--clients`` phones (replicas) streaming to one edge, the
  aggregate against the bound the shared edge allows.

    python bench/stream.py [--frames 24] [--repeats 2] [--load 0.6] [--clients 4]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from _lab import machine, median, run, workspace

from splittracer.report.streams import StreamRow, summarize_streams, uplinks_of

HEADER = """
name: NAME
model: {source: torchvision:alexnet}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1, uplink: lte}REPLICAS}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
options: {warmup: 2}
playbook:
  phone:
"""
STREAM = "    - {task: Stream, params: {split: 13, next: [edge], finish: false, PARAMS}}\n"
FINISH = "    - {task: Finish}\n"


def stream_run(name: str, streams: list[str], replicas: int = 1) -> tuple[list[StreamRow], list]:
    header = HEADER.replace("NAME", name).replace(
        "REPLICAS", f", replicas: {replicas}" if replicas > 1 else ""
    )
    text = header + "".join(STREAM.replace("PARAMS", p) for p in streams) + FINISH
    ws = workspace({name: text})
    outcome, store = run(ws, name)
    spans, metrics = store.spans(outcome.run_id), store.metrics(outcome.run_id)
    record = store.get_run(outcome.run_id).record
    return summarize_streams(spans, metrics, uplinks_of(record)), spans


def closed_loop(frames: int, repeats: int) -> float:
    inflights = [1, 2, 4, 8]
    params = [f"count: {frames}, inflight: {k}" for _ in range(repeats) for k in inflights]
    rows, _ = stream_run("closed", params)
    print("\nClosed loop: achieved vs pipeline bound (same stream's stage medians)")
    columns = ("inflight", "achieved fps", "bound fps", "best ratio", "median ratio")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (8, 13, 10, 11, 13))) + "  stages ms")
    by_k: defaultdict[int, list[StreamRow]] = defaultdict(list)
    for row in rows:
        by_k[row.inflight].append(row)
    for k, group in sorted(by_k.items()):
        best = max(group, key=lambda r: r.ratio)
        stages = ", ".join(f"{name} {ms:.1f}" for name, ms in best.stage_ms.items())
        ratios = [r.ratio for r in group]
        print(
            f"{k:>8} {best.achieved_fps:>13.2f} {best.bound_fps:>10.2f} "
            f"{best.ratio:>11.2f} {median(ratios):>13.2f}  {stages}"
        )
    one = max(r.achieved_fps for r in by_k[1])
    four = max(r.achieved_fps for r in by_k[4])
    print(f"inflight 4 over inflight 1: {four / one:.2f}x")
    return min(r.bound_fps for r in rows)


def open_loop(frames: int, bound_fps: float, load: float) -> None:
    rate = load * bound_fps
    rows, spans = stream_run("poisson", [f"count: {frames}, rate: {rate:.3f}, arrivals: poisson"])
    [row] = rows
    parts: defaultdict[int, float] = defaultdict(float)
    totals: dict[int, float] = {}
    for s in spans:
        if s.kind == "inference" and "stream" in s.attrs and not s.attrs.get("warmup"):
            totals[s.inference] = s.duration_ms
        elif s.kind in ("queue", "compute", "transfer"):
            parts[s.inference] += s.duration_ms
    shares = sorted(parts[i] / total for i, total in totals.items() if total > 0)
    print(f"\nOpen loop, Poisson arrivals at {rate:.2f}/s ({load:.0%} of the closed loop's bound)")
    print(
        f"this run's bound {row.bound_fps:.2f} fps (offered {rate / row.bound_fps:.0%} of it); "
        f"achieved {row.achieved_fps:.2f} fps; latency p50 {row.latency_ms['p50']:.1f} ms, "
        f"p99 {row.latency_ms['p99']:.1f} ms"
    )
    print(f"queue per stage (median ms): {', '.join(f'{s}: {ms:.2f}' for s, ms in row.queue_ms.items())}")
    print(
        "queue + compute + transfer over latency per frame: "
        f"median {median(shares):.3f}, p5 {shares[len(shares) // 20]:.3f}, min {shares[0]:.3f}"
    )
    print(f"what they leave (dispatch between spans), median per frame: {row.other_ms:.2f} ms")


def fan_in(frames: int, clients: int) -> None:
    rows, _ = stream_run("fan-in", [f"count: {frames}, inflight: 2"], replicas=clients)
    total = next(r for r in rows if r.client == "*")
    print(f"\nFan-in: {clients} phones, 2 frames in flight each, one edge")
    print(
        f"aggregate {total.achieved_fps:.2f} fps of a bound of {total.bound_fps:.2f} "
        f"(ratio {total.ratio:.2f}); edge queue median {total.queue_ms.get(1, 0.0):.2f} ms, "
        f"latency p50 {total.latency_ms['p50']:.1f} ms, p99 {total.latency_ms['p99']:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--load", type=float, default=0.6)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    print(machine())
    bound = closed_loop(args.frames, args.repeats)
    open_loop(2 * args.frames, bound, args.load)
    fan_in(args.frames, args.clients)


if __name__ == "__main__":
    main()
