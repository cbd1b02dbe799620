"""End-to-end latency of int8 against none on the cut, AlexNet over emulated LTE, one run.

One Sweep over every AlexNet split with ``codecs: [none, int8]`` and the
phone's uplink emulated at LTE (5.85 Mbit/s): both codecs are measured in
the same run, split by split, so the ratio compares like with like. Prints
per split the median bytes on the wire, the median end-to-end latency of
each codec, their ratio and int8's agreement with the uncompressed model.

    python bench/codecs_lte.py [--repeats 3] [--splits 0,3,6,13,16]
"""

from __future__ import annotations

import argparse

from _lab import machine, run, workspace

from splittracer.report.runs import run_summary

MANIFEST = """
name: codecs-lte
model: {{source: torchvision:alexnet}}
participants:
  phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1, uplink: lte}}}}
  cloud: {{role: "splittracer.builtin:SplitTail", limits: {{threads: 1}}}}
playbook:
  phone:
    - task: Sweep
      params: {{splits: {splits}, codecs: [none, int8], next: [cloud], repeats: {repeats}, warmup: 1}}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--splits", default="all", help="all, or split points such as 0,3,6,13")
    args = parser.parse_args()
    splits = "all" if args.splits == "all" else f"[{args.splits}]"
    ws = workspace({"codecs-lte": MANIFEST.format(splits=splits, repeats=args.repeats)})
    outcome, store = run(ws, "codecs-lte")
    rows = {(r.split, r.codec): r for r in run_summary(store, outcome.run_id).accuracy}
    print(f"machine: {machine()}; AlexNet, LTE uplink, {args.repeats} inferences per split and codec")
    print("| split | none bytes | int8 bytes | none ms | int8 ms | int8 / none | int8 agreement |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for split in sorted({k for k, _ in rows}):
        none, int8 = rows[split, "none"], rows[split, "int8"]
        agreement = f"{100 * int8.agreement:.0f}%" if int8.agreement is not None else "—"
        print(
            f"| {split} | {none.bytes_wire:,} | {int8.bytes_wire:,} | {none.total_ms:,.1f} "
            f"| {int8.total_ms:,.1f} | {int8.total_ms / none.total_ms:.2f} | {agreement} |"
        )


if __name__ == "__main__":
    main()
