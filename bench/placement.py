"""The min-cut placement against the best prefix cut, both measured in one run.

A two-path model (``two_path`` below): the input is reduced twice, once by
an average pool that feeds a heavy stack of convolutions and once, later in
execution order, by a max pool that only the last layers read. Every prefix
cut either sends the 600 kB input (the second reducer still needs it) or
runs the heavy stack on the phone; the minimum cut (DADS) runs both cheap
reducers on the phone and sends their two 9 kB outputs.

The phone is one torch thread under a CPU quota (``--phone-cpu``, cgroups;
1.0 runs it unthrottled), the cloud ``--cloud-threads`` unthrottled threads,
the phone's uplink emulated. Both devices are profiled first, the phone inside the same
quota (``splittracer profile`` in a cgroup), then the planner predicts the
min-cut placement and the best prefix cut, and one run measures both,
interleaved (``--rounds``, one warm-up before each timed inference).
Prints predicted and measured latency of each, the gain (prefix / min cut)
and how far the measured gain is from the predicted one.

    python bench/placement.py [--rate 20mbit] [--phone-cpu 0.1] [--cloud-threads 1] [--rounds 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from _lab import machine, run, workspace

from splittracer.controller.plancheck import check_run
from splittracer.devices.limits import ResourceLimits, RunCgroups
from splittracer.plan.chain import Link
from splittracer.plan.planner import predict_splits
from splittracer.plan.profiles import DeviceProfile, ProfileStore, default_profile_dir, profile_local
from splittracer.report.summary import summarize
from splittracer.split.parts import compact
from splittracer.units import parse_rate

NETS = """
import torch
from torch import nn


class Join(nn.Module):
    # The concatenation as a layer of its own, so the side path's pool stays one too.

    def forward(self, a, b):
        return torch.cat([a, b], 1)


class TwoPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.reduce = nn.AvgPool2d(4)
        self.heavy = nn.Sequential(
            nn.Conv2d(3, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.side = nn.MaxPool2d(8)
        self.join = Join()
        self.merge = nn.Conv2d(131, 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        h = self.heavy(self.reduce(x))
        s = self.side(x)
        return self.fc(torch.flatten(self.pool(self.merge(self.join(h, s))), 1))


def two_path():
    return TwoPath()
"""

SOURCE = "nets:two_path"
SHAPE = (1, 3, 224, 224)

MANIFEST = """
name: placed
model: {{source: "{source}", input_shape: {shape}}}
participants:
  phone:
    role: splittracer.builtin:SplitHead
    profile: phone
    limits: {{threads: 1, {cpu}uplink: {rate}, latency: 10ms}}
  cloud:
    role: splittracer.builtin:SplitTail
    profile: cloud
    limits: {{threads: {cloud}}}
playbook:
  phone:
    - task: Sweep
      params: {{next: [cloud], placements: {placements}, repeats: 1, warmup: 1}}
"""


def profile_phone(ws_root: str, cpu: float) -> None:
    """``splittracer profile phone`` with one thread, inside a cgroup holding it to ``cpu`` cores."""
    command = [sys.executable, "-m", "splittracer", "profile", "phone", SOURCE, "--threads", "1"]
    command += ["--input-shape", ",".join(map(str, SHAPE)), "--workspace", ws_root, "--repeats", "10"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ws_root, os.environ.get("PYTHONPATH", "")])}
    if cpu >= 1.0:
        subprocess.run(command, check=True, env=env, cwd=ws_root, stdout=subprocess.DEVNULL)
        return
    cgroups = RunCgroups("bench-placement")
    try:
        group = cgroups.create("phone", ResourceLimits(cpu=cpu))
        process = subprocess.Popen(group.wrap(command), env=env, cwd=ws_root, stdout=subprocess.DEVNULL)
        group.throttle()
        if process.wait() != 0:
            raise SystemExit("profiling the phone failed")
    finally:
        cgroups.remove()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", default="20mbit")
    parser.add_argument("--phone-cpu", type=float, default=0.1)
    parser.add_argument("--cloud-threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--quantile", type=float, default=0.25)
    args = parser.parse_args()
    ws = workspace({}, {"nets.py": NETS})
    sys.path.insert(0, str(ws.root))
    store = ProfileStore(default_profile_dir(ws.results_dir))
    store.save(
        DeviceProfile(name="cloud", threads=args.cloud_threads).with_models(
            profile_local([SOURCE], threads=args.cloud_threads, repeats=10, warmup=2, input_shape=SHAPE)
        )
    )
    profile_phone(str(ws.root), args.phone_cpu)
    profiles = [store.load("phone"), store.load("cloud")]
    link = Link(parse_rate(args.rate), 0.010)
    plan = predict_splits(SOURCE, profiles, [link], dag=True, input_shape=SHAPE)
    dag, prefix = plan.dag, plan.chain.best
    assert dag is not None
    prefix_label = compact(range(1, prefix.cuts[0] + 1))
    cpu = f"cpu: {args.phone_cpu}, " if args.phone_cpu < 1.0 else ""
    placements = [dag.placement, prefix_label] * args.rounds
    text = MANIFEST.format(
        source=SOURCE,
        shape=list(SHAPE),
        cpu=cpu,
        rate=args.rate,
        placements=placements,
        cloud=args.cloud_threads,
    )
    (ws.experiments_dir / "placed.yaml").write_text(text)
    load = os.getloadavg()[0]
    outcome, results = run(ws, "placed")
    checked = check_run(results, outcome.run_id, profiles, quantile=args.quantile)
    rows = {row.placement or compact(range(1, row.cuts[0] + 1)): row for row in checked.rows}
    measured_dag, measured_prefix = rows[dag.placement], rows[prefix_label]
    print(f"# {machine()}; load {load:.1f} -> {os.getloadavg()[0]:.1f}; run {outcome.run_id}")
    print(
        f"# two_path {SHAPE}; phone 1 thread, cpu {args.phone_cpu}; cloud {args.cloud_threads} thread(s); "
        f"uplink {args.rate} + 10 ms; "
        f"{args.rounds} interleaved rounds; statistic: quantile {args.quantile}"
    )
    print(f"min cut     [{dag.placement}] sends {dag.bytes:,} B in {len(dag.sent)} tensors")
    print(f"best prefix [{prefix_label}] (split {prefix.cuts[0]}) sends {sum(prefix.bytes):,} B")
    parts = {
        r.placement or compact(range(1, r.split + 1)): r for r in summarize(results.spans(outcome.run_id))
    }
    print("             predicted ms   measured ms   error   measured head / transfer / tail (medians)")
    for name, row, label in (
        ("min cut", measured_dag, dag.placement),
        ("best prefix", measured_prefix, prefix_label),
    ):
        r = parts[label]
        print(
            f"{name:12} {row.predicted_ms:12.1f} {row.measured_ms:13.1f} {row.error:+7.1%}   "
            f"{r.head.median:.1f} / {r.transfer.median:.1f} / {r.tail.median:.1f}"
        )
    if dag.placement == prefix_label:
        raise SystemExit("the min cut is the best prefix cut here: no gain to measure")
    predicted = measured_prefix.predicted_ms / measured_dag.predicted_ms
    measured = measured_prefix.measured_ms / measured_dag.measured_ms
    gain_p = measured_prefix.predicted_ms - measured_dag.predicted_ms
    gain_m = measured_prefix.measured_ms - measured_dag.measured_ms
    print(f"gain (prefix / min cut): predicted {predicted:.2f}x, measured {measured:.2f}x")
    print(
        f"gain in ms: predicted {gain_p:.1f}, measured {gain_m:.1f} "
        f"({(gain_m - gain_p) / gain_p:+.1%} of the predicted gain)"
    )


if __name__ == "__main__":
    main()
