"""Streams: frames pipelined through phone -> link -> edge, on loopback with an emulated uplink."""

from __future__ import annotations

import pytest
import torch
import torchvision

from splittracer.report.streams import summarize_streams

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow

POOL5 = 13  # AlexNet's split after features.12, the last max-pool (checked against the model below)

PIPELINE = """
name: pipeline
model: {source: torchvision:alexnet}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1, uplink: lte}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
options: {warmup: 2}
playbook:
  phone:
"""
STREAM = "    - {task: Stream, params: {split: 13, next: [edge], count: COUNT, inflight: K, finish: false}}\n"
ORDER = [(1, 12), (4, 24), (1, 12), (4, 24), (4, 24)]  # (inflight, frames); best of repeats is kept


def _manifest() -> str:
    streams = "".join(STREAM.replace("COUNT", str(n)).replace("K", str(k)) for k, n in ORDER)
    return PIPELINE + streams + "    - {task: Finish}\n"


def test_split_13_is_after_pool5() -> None:
    features = torchvision.models.alexnet().features
    assert len(features) == POOL5 and isinstance(features[POOL5 - 1], torch.nn.MaxPool2d)


def test_frames_in_flight_reach_the_pipeline_bound(tmp_path):
    ws = workspace_with(tmp_path, {"pipeline": _manifest()})
    outcome, store = run(ws, "pipeline")
    assert outcome.status == "succeeded", outcome.error
    record = store.get_run(outcome.run_id).record
    assert record.layers[POOL5 - 1] == "features.12"
    uplinks = {name: p.uplink_bps for name, p in record.participants.items()}
    rows = summarize_streams(store.spans(outcome.run_id), store.metrics(outcome.run_id), uplinks)
    assert [(r.inflight, r.frames) for r in rows] == ORDER
    # The LTE link carries 36,864 bytes a frame: 50 ms, one of the three stages of the bound.
    assert all(r.stage_ms["phone->edge"] == pytest.approx(8000 * 36_864 / 5.85e6, rel=0.02) for r in rows)
    one = max(r.achieved_fps for r in rows if r.inflight == 1)
    best = max((r for r in rows if r.inflight == 4), key=lambda r: r.ratio)
    # Physics: no stream beats its slowest stage by more than the spread of the medians allows.
    assert all(r.achieved_fps <= 1.1 * r.bound_fps for r in rows)
    assert best.ratio >= 0.9, f"achieved {best.achieved_fps:.2f} of a bound of {best.bound_fps:.2f} frames/s"
    # One at a time, a frame's head, link and tail add up; pipelined, only the slowest counts.
    assert best.achieved_fps >= 1.5 * one


SWEEP = """
name: sweep
model: {source: torchvision:alexnet, input_shape: [1, 3, 64, 64]}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Stream
      params: {split: 13, next: [edge], count: 6, warmup: 1, rates: [10, 40], arrivals: poisson,
               deadline: 1ms}
"""


def test_a_sweep_over_offered_load_and_its_charts(tmp_path):
    from splittracer.report.runs import run_summary, write_plots

    ws = workspace_with(tmp_path, {"sweep": SWEEP})
    outcome, store = run(ws, "sweep")
    assert outcome.status == "succeeded", outcome.error
    summary = run_summary(store, outcome.run_id)
    assert [(r.offered_fps, r.loop, r.frames) for r in summary.streams] == [
        (10, "poisson", 6),
        (40, "poisson", 6),
    ]
    assert all(r.deadline_misses == 6 for r in summary.streams)  # no frame crosses two processes in 1 ms
    written = {p.name.removeprefix(outcome.run_id) for p in write_plots(store, outcome.run_id, tmp_path)}
    assert {"-latency-cdf.png", "-throughput.svg"} <= written
