"""One split inference between two local participants vs a plain forward.

Measured in the same run, all on one torch thread per process, no link
emulation, AlexNet split after pool5 (split 13):

* end-to-end latency of a split inference vs a plain ``model(x)`` forward
  (target: no more than the plain forward + 3 ms);
* per-inference overhead beyond head and tail compute (target <= 2 ms);
* launch-to-first-inference time: from ``run_experiment`` being called to
  the first inference starting (target <= 2 s), with participants spawned
  or forked by a warm agent if one runs (``bench/launch.py`` compares both).

    python bench/split_inference.py [--count 50]
"""

from __future__ import annotations

import argparse
import time

import torch
from _lab import machine, median, pool5, run, workspace

from splittracer.models import example_input, load_model


def plain_forward_ms(count: int) -> list[float]:
    torch.set_num_threads(1)
    spec = load_model("torchvision:alexnet")
    x = example_input(spec.input_shape)
    times = []
    with torch.no_grad():
        for i in range(count + 5):
            start = time.perf_counter_ns()
            spec.module(x)
            if i >= 5:
                times.append((time.perf_counter_ns() - start) / 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    ws = workspace({"pool5": pool5(args.count)})
    # The shared VM's speed drifts by tens of percent within minutes: the plain forward is
    # measured just before and just after the run, and the two pooled.
    before = plain_forward_ms(args.count // 2)
    launched = time.perf_counter_ns()
    outcome, store = run(ws, "pool5")
    spans = store.spans(outcome.run_id)
    inferences = sorted((s for s in spans if s.kind == "inference"), key=lambda s: s.start_ns)
    launch_s = (inferences[0].start_ns - launched) / 1e9
    measured = inferences[5:]  # the first few warm caches up
    ids = {s.inference for s in measured}
    compute: dict[int, float] = {i: 0.0 for i in ids}
    for s in spans:
        if s.kind == "compute" and s.inference in ids:
            compute[s.inference] += s.duration_ms
    totals = [s.duration_ms for s in measured]
    overhead = [s.duration_ms - compute[s.inference] for s in measured]
    plain = median(before + plain_forward_ms(args.count // 2))
    print(f"# {machine()}; {len(measured)} inferences at split 13 (pool5), 1 thread per process")
    print(f"plain forward median          {plain:8.2f} ms")
    extra = median(totals) - plain
    print(f"split inference median        {median(totals):8.2f} ms  (+{extra:.2f} ms, target <= +3)")
    print(f"head+tail compute median      {median(list(compute[i] for i in ids)):8.2f} ms")
    print(f"overhead beyond compute       {median(overhead):8.2f} ms  (target <= 2)")
    print(f"launch to first inference     {launch_s:8.2f} s   (target <= 2)")


if __name__ == "__main__":
    main()
