"""Run-to-run repeatability and the cost of a full sweep.

1. Two identical runs of the built-in Neurosurgeon experiment on LTE alone
   and without its CPU limit (AlexNet, every split, emulated LTE, `repeats`
   inferences per split): per split the
   median total of each run, and the coefficient of variation of the two
   (target: median CV < 5%), as `splittracer results compare` reports it.
2. A full sweep with no link emulation, 22 splits x 20 inputs, wall time
   from the first inference's start to the last one's end, against the same
   number of plain `model(x)` forwards measured in the same run, one torch
   thread everywhere (target: <= 1.3x).

    python bench/repeatability.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _lab import alexnet_pair, machine, median, run, workspace

from splittracer.models import example_input, load_model
from splittracer.report.summary import summarize

SWEEP = alexnet_pair("sweep", "Sweep", "{next: [cloud], repeats: 20, warmup: 0}")


def repeatability(repeats: int) -> tuple[list[float], list[tuple[int, float, float]]]:
    ws = workspace({})
    text = (ws.experiments_dir / "neurosurgeon.yaml").read_text().replace("repeats: 2", f"repeats: {repeats}")
    text = text.replace(", uplinks: [3g, lte, wifi]", "").replace("warmup: 0", "warmup: 1")
    text = "\n".join(line for line in text.splitlines() if not line.strip().startswith(("cpu:", "by:")))
    (ws.experiments_dir / "neurosurgeon.yaml").write_text(text)
    totals = []
    for _ in range(2):
        outcome, store = run(ws, "neurosurgeon")
        totals.append({r.split: r.total.median for r in summarize(store.spans(outcome.run_id))})
    rows = [(k, totals[0][k], totals[1][k]) for k in sorted(totals[0])]
    cvs = [statistics.pstdev([a, b]) / statistics.fmean([a, b]) * 100 for _, a, b in rows]
    return cvs, rows


def sweep_vs_plain() -> tuple[float, float]:
    ws = workspace({"sweep": SWEEP})
    outcome, store = run(ws, "sweep")
    inferences = store.spans(outcome.run_id, kind="inference")
    wall = (max(s.end_ns for s in inferences) - min(s.start_ns for s in inferences)) / 1e9
    torch.set_num_threads(1)
    spec = load_model("torchvision:alexnet")
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(len(inferences)):
            spec.module(example_input(spec.input_shape, seed=i))
    return wall, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cvs, rows = repeatability(args.repeats)
    wall, plain = sweep_vs_plain()
    print(f"# {machine()}")
    print(
        f"two Neurosurgeon runs (LTE, {args.repeats} repeats): per-split CV median {median(cvs):.2f}%, "
        f"max {max(cvs):.2f}% over {len(rows)} splits"
    )
    print(
        f"full sweep 22 x 20 inputs: {wall:.2f} s; 440 plain forwards: {plain:.2f} s; "
        f"ratio {wall / plain:.2f}x (target <= 1.3)"
    )


if __name__ == "__main__":
    main()
