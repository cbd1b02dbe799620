"""The planner's choice against measured sweeps under emulated Neurosurgeon links.

A phone (``--phone-threads``) and a cloud (``--cloud-threads``) on this
machine: both are profiled in process, then each link gets a full sweep
(every split, in ``--rounds`` interleaved rounds so that load changes on a
shared machine hit every split alike) with the phone's uplink emulated,
and :func:`check_run` compares. Prints, per link, the planned
split, the measured best, how much slower the planned split measured
(target <= 5 %), the median per-split prediction error and the rank
correlation of predicted and measured latency.

    python bench/planner_check.py [--model torchvision:alexnet] [--rates 1.1mbit,5.85mbit,18.88mbit]
    python bench/planner_check.py --model torchvision:resnet18 --input-shape 1,3,64,64 --granularity block
"""

from __future__ import annotations

import argparse

from _lab import machine, run, workspace

from splittracer.controller.plancheck import check_run
from splittracer.plan.profiles import DeviceProfile, profile_local

MANIFEST = """
name: {name}
model: {{source: "{model}", input_shape: {shape}, granularity: {granularity}}}
participants:
  phone:
    role: splittracer.builtin:SplitHead
    limits: {{threads: {phone}, uplink: {rate}, latency: 10ms}}
  cloud:
    role: splittracer.builtin:SplitTail
    limits: {{threads: {cloud}}}
playbook:
  phone:
    - task: Sweep
      params: {{splits: {splits}, next: [cloud], repeats: 1, warmup: 0}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="torchvision:alexnet")
    parser.add_argument("--input-shape", default="1,3,224,224")
    parser.add_argument("--granularity", default="leaf")
    parser.add_argument("--rates", default="1.1mbit,5.85mbit,18.88mbit")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--phone-threads", type=int, default=1)
    parser.add_argument("--cloud-threads", type=int, default=2)
    args = parser.parse_args()
    shape = tuple(int(x) for x in args.input_shape.split(","))
    profiles = [
        DeviceProfile(name=f"local-{t}t", threads=t).with_models(
            profile_local(
                [args.model], threads=t, repeats=10, warmup=2, input_shape=shape, granularity=args.granularity
            )
        )
        for t in (args.phone_threads, args.cloud_threads)
    ]
    rates = args.rates.split(",")
    manifests = {
        f"link{i}": MANIFEST.format(
            name=f"link{i}",
            model=args.model,
            shape=list(shape),
            rate=rate,
            granularity=args.granularity,
            phone=args.phone_threads,
            cloud=args.cloud_threads,
            splits=list(range(len(profiles[0].models[0].layers) + 1)) * args.rounds,
        )
        for i, rate in enumerate(rates)
    }
    ws = workspace(manifests)
    print(
        f"# {machine()}; {args.model} {args.input_shape} {args.granularity}; phone {args.phone_threads} "
        f"thread(s), cloud {args.cloud_threads}; rounds={args.rounds}"
    )
    print(
        f"{'link':<10} {'planned':>7} {'best':>5} {'planned ms':>10} {'best ms':>8} {'slower':>7} "
        f"{'median err':>10} {'rank corr':>9}"
    )
    for i, rate in enumerate(rates):
        outcome, store = run(ws, f"link{i}")
        check = check_run(store, outcome.run_id, profiles)
        chosen = check.planned_row or check.predicted_best
        print(
            f"{rate:<10} {check.planned[0]:>7} {check.measured_best.cuts[0]:>5} {chosen.measured_ms:>10.1f} "
            f"{check.measured_best.measured_ms:>8.1f} {check.regret:>7.1%} {check.median_abs_error:>10.1%} "
            f"{check.rank_correlation:>9.2f}"
        )


if __name__ == "__main__":
    main()
