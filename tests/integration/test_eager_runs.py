"""A detector no tracer captures, split across two real participants: its parts travel as tensors."""

from __future__ import annotations

import pytest

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow

DETECTOR = """
name: detector
model: {source: "tests.unit.toy_models:small_detector", granularity: block}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {next: [edge], splits: [2, 3], repeats: 1, warmup: 0}
"""


def test_detector_split_run_sends_what_each_cut_needs(tmp_path):
    ws = workspace_with(tmp_path, {"detector": DETECTOR})
    outcome, store = run(ws, "detector")
    assert outcome.status == "succeeded", outcome.error
    record = store.get_run(outcome.run_id).record
    assert list(record.layers) == ["transform", "backbone", "rpn", "roi_heads"]
    assert record.split_bytes[2] > record.split_bytes[3] > 0  # features, then proposals and features
    inferences = [s for s in store.spans(outcome.run_id, "inference")]
    assert sorted(s.split for s in inferences) == [2, 3]
