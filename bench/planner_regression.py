"""Per-layer latency of held-out models, predicted by the per-kind regression.

Profiles the training models and the held-out ones on this machine (in
process, ``--threads`` torch threads), fits :func:`fit_latency_model` on
the training models only and predicts every layer of each held-out model.
Prints the median relative error per layer (target <= 25 %) beside two
references measured in the same run:

* ``noise``: the median relative difference between two profiles of the
  held-out model itself: no predictor can be expected to beat it;
* ``MACs-only``: one straight line ``a + b * MACs`` over all layers, the
  simplest predictor a regression has to beat.

Each model is profiled ``--rounds`` times, interleaved, and each layer keeps
its lowest median (the machines are shared; load only ever adds time).

    python bench/planner_regression.py [--threads 1] [--rounds 3] [--save DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from splittracer.plan.profiles import DeviceProfile, ModelRecord, ProfileStore, profile_local
from splittracer.plan.regression import fit_latency_model, nnls

TRAIN = "alexnet,vgg11,resnet18,mobilenet_v2"
HELD_OUT = "resnet34,mobilenet_v3_small"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", default=TRAIN)
    parser.add_argument("--held-out", default=HELD_OUT)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--save", type=Path, help="Also store the profile (as bench-<threads>t) in DIR")
    args = parser.parse_args()
    train = [f"torchvision:{m}" for m in args.train.split(",")]
    held_out = [f"torchvision:{m}" for m in args.held_out.split(",")]
    rounds = [
        {
            r.source: r
            for r in profile_local(
                [*train, *held_out], threads=args.threads, repeats=args.repeats, warmup=args.warmup
            )
        }
        for _ in range(args.rounds)
    ]
    best = {source: _lowest([r[source] for r in rounds]) for source in rounds[0]}
    if args.save:
        profile = DeviceProfile(name=f"bench-{args.threads}t", threads=args.threads).with_models(
            list(best.values())
        )
        print(f"# saved {ProfileStore(args.save).save(profile)}")
    _report(args, train, held_out, rounds, best)


def _report(
    args: argparse.Namespace,
    train: list[str],
    held_out: list[str],
    rounds: list[dict[str, ModelRecord]],
    best: dict[str, ModelRecord],
) -> None:
    from _lab import machine

    model = fit_latency_model([best[s] for s in train])
    baseline = _macs_line([best[s] for s in train])
    print(f"# {machine()}, {args.threads} thread(s), repeats={args.repeats}, rounds={args.rounds}")
    print(f"# trained on {', '.join(s.split(':')[1] for s in train)}")
    print(
        f"{'held out':<20} {'layers':>6} {'median err':>10} {'p75 err':>8} {'noise':>6} {'MACs-only':>9} "
        f"{'sum pred ms':>11} {'sum meas ms':>11}"
    )
    for source in held_out:
        record = best[source]
        measured = np.array([layer.median_ms for layer in record.layers])
        predicted = np.array([model.predict_layer(layer.units) for layer in record.layers])
        error = np.abs(predicted - measured) / measured
        line = np.array([baseline(layer.units) for layer in record.layers])
        noise = _noise([r[source] for r in rounds])
        line_error = np.median(np.abs(line - measured) / measured)
        print(
            f"{source.split(':')[1]:<20} {len(measured):>6} {np.median(error):>10.1%} "
            f"{np.percentile(error, 75):>8.1%} {noise:>6.1%} {line_error:>9.1%} "
            f"{predicted.sum():>11.2f} {measured.sum():>11.2f}"
        )
        by_kind: defaultdict[str, list[float]] = defaultdict(list)
        for layer, e in zip(record.layers, error):
            by_kind[max(layer.units, key=lambda u: model.predict_unit(u)).kind].append(float(e))
        print(
            "    by kind: "
            + ", ".join(f"{k} {statistics.median(v):.0%} (n={len(v)})" for k, v in by_kind.items())
        )


def _lowest(records: list[ModelRecord]) -> ModelRecord:
    layers = tuple(min(same, key=lambda layer: layer.median_ms) for same in zip(*(r.layers for r in records)))
    return dataclasses.replace(records[0], layers=layers)


def _noise(records: list[ModelRecord]) -> float:
    """Median relative difference between the first two rounds' per-layer medians."""
    if len(records) < 2:
        return float("nan")
    a = np.array([layer.median_ms for layer in records[0].layers])
    b = np.array([layer.median_ms for layer in records[1].layers])
    return float(np.median(np.abs(a - b) / b))


def _macs_line(records: list[ModelRecord]):  # type: ignore[no-untyped-def]
    layers = [layer for r in records for layer in r.layers]
    x = np.array([[1.0, sum(u.macs for u in layer.units) * 1e-6] for layer in layers])
    y = np.array([layer.median_ms for layer in layers])
    w = 1.0 / np.maximum(y, 0.005)
    a, b = nnls(x * w[:, None], y * w)
    return lambda units: a + b * sum(u.macs for u in units) * 1e-6


if __name__ == "__main__":
    main()
