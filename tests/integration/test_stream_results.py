"""Stream results from a real run: throughput and latency over time, the trade-off and its front."""

from __future__ import annotations

import json

import pytest

from splittracer.report.html import write_html_report
from splittracer.report.runs import run_summary, summary_to_dict, write_plots

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow  # about 20 s on a quiet 2-core machine, most of it starting participants

TWO_SPLITS = """
name: twosplits
model: {source: torchvision:alexnet, input_shape: [1, 3, 64, 64]}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - {task: Stream, params: {split: 5, next: [edge], count: 8, inflight: 2, warmup: 1, finish: false}}
    - {task: Stream, params: {split: 13, next: [edge], count: 8, inflight: 2, warmup: 1}}
"""


def test_a_stream_at_two_splits_reports_time_series_and_its_front(tmp_path):
    ws = workspace_with(tmp_path, {"twosplits": TWO_SPLITS})
    outcome, store = run(ws, "twosplits")
    assert outcome.status == "succeeded", outcome.error
    streams = json.loads(json.dumps(summary_to_dict(run_summary(store, outcome.run_id))))["streams"]
    assert [(s["split"], s["frames"]) for s in streams] == [(5, 8), (13, 8)]
    for s in streams:
        series = s["over_time"]
        assert sum(series["frames"]) == 8 and len(series["fps"]) == len(series["end_s"]) >= 1
        # The windows tile the stream: their frames over their time is the stream's whole rate.
        assert series["end_s"][-1] == round(len(series["end_s"]) * series["window_s"], 4)
    front = [s for s in streams if s["pareto_p95"]]
    assert front, "one of two points is always on the front"
    for s in streams:  # a point is off the front only when the other beats it on both
        other = next(o for o in streams if o is not s)
        beaten = (
            other["achieved_fps"] >= s["achieved_fps"]
            and other["latency_ms"]["p95"] <= s["latency_ms"]["p95"]
        )
        assert s["pareto_p95"] == (not beaten)
    report = write_html_report(store, outcome.run_id, tmp_path / "report.html")
    page = report.html.read_text()
    assert 'data-figure="over-time"' in page and 'data-figure="tradeoff"' in page and "Pareto" in page
    written = {p.name.removeprefix(outcome.run_id) for p in write_plots(store, outcome.run_id, tmp_path)}
    assert {"-over-time.png", "-over-time.svg", "-tradeoff.png", "-tradeoff.svg"} <= written
