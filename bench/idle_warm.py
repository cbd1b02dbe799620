"""Idle vs warm: how much slower a participant computes after waiting, and what keep_warm does.

The "cloud" (two torch threads) runs the whole AlexNet (split 0) of every
inference. Three runs, alternated ``--rounds`` times so that all see the
same load of a shared machine:

- ``back-to-back``: the phone sends at once, so the cloud waits only for the
  input's transfer;
- ``idle``: the phone's link adds ``--latency`` (default 800 ms, as an
  emulated LTE upload of the input would), so the cloud is idle that long
  before each inference;
- ``idle, keep_warm``: the same, the cloud with ``keep_warm: true``.

It prints each run's median compute time of the cloud, its median
``idle_ms`` and CPU MHz (where readable), and the ratios to back-to-back.

    python bench/idle_warm.py [--repeats 15] [--rounds 2] [--latency 800ms]
"""

from __future__ import annotations

import argparse
import statistics

from _lab import machine, median, run, workspace

MANIFEST = """
name: {name}
model: {{source: torchvision:alexnet}}
participants:
  phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1, latency: {latency}}}}}
  cloud: {{role: "splittracer.builtin:SplitTail", limits: {{threads: 2}}, keep_warm: {warm}}}
playbook:
  phone:
    - task: Sweep
      params: {{splits: [0], next: [cloud], repeats: {repeats}, warmup: 2}}
"""

CASES = {"back-to-back": ("0s", "false"), "idle": (None, "false"), "idle, keep_warm": (None, "true")}


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency", default="800ms")
    args = parser.parse_args()
    manifests = {
        _slug(case): MANIFEST.format(
            name=_slug(case), latency=latency or args.latency, warm=warm, repeats=args.repeats
        )
        for case, (latency, warm) in CASES.items()
    }
    ws = workspace(manifests)
    found: dict[str, dict[str, list[float]]] = {c: {"ms": [], "idle": [], "mhz": []} for c in CASES}
    for _ in range(args.rounds):
        for case in CASES:
            _, store = run(ws, _slug(case))
            run_id = store.list_runs()[-1].id
            for span in store.spans(run_id, kind="compute"):
                if span.participant == "cloud" and span.attrs.get("warmup") is not True:
                    found[case]["ms"].append(span.duration_ms)
                    found[case]["idle"].append(float(span.attrs.get("idle_ms", 0.0)))
                    if "cpu_mhz" in span.attrs:
                        found[case]["mhz"].append(float(span.attrs["cpu_mhz"]))
    _report(found, args)


def _slug(case: str) -> str:
    return case.replace(", ", "-").replace(" ", "-")


def _report(found: dict[str, dict[str, list[float]]], args: argparse.Namespace) -> None:
    print(machine())
    print(f"cloud: AlexNet whole model, 2 threads; {args.rounds} rounds x {args.repeats} inferences per case")
    base = median(found["back-to-back"]["ms"])
    print(f"{'case':<18} {'compute ms':>10} {'IQR':>15} {'idle ms':>9} {'MHz':>7} {'x back-to-back':>15}")
    for case, values in found.items():
        ms = values["ms"]
        q1, _, q3 = statistics.quantiles(ms, n=4)
        mhz = f"{median(values['mhz']):.0f}" if values["mhz"] else "-"
        line = f"{case:<18} {median(ms):>10.1f} {f'{q1:.1f}-{q3:.1f}':>15} {median(values['idle']):>9.0f}"
        print(f"{line} {mhz:>7} {median(ms) / base:>15.2f}")


if __name__ == "__main__":
    main()
