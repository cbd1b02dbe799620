"""Stream sweeps over splits and rates, durations, traces from a file, drops, and split: auto,
with real participants on loopback."""

from __future__ import annotations

import pytest

from splittracer.report.runs import run_summary, split_decisions
from splittracer.report.streams import summarize_streams

from ..unit.toy_models import profile_toy_devices
from .helpers import run, workspace_with

SWEEP = """
name: sweep
model: {source: torchvision:alexnet, input_shape: [1, 3, 64, 64]}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
options: {warmup: 1}
playbook:
  phone:
    - task: Stream
      params: {splits: [0, 5, 13], rates: [20, 40], count: 3, next: [edge], finish: false}
    - task: Stream
      params: {split: 13, next: [edge], arrivals: trace, trace: burst.txt, warmup: 0,
               drop: {max_queue: 1, policy: oldest}, finish: false}
    - task: Stream
      params: {split: 5, next: [edge], inflight: 2, duration: 600ms}
"""
BURST = "# six frames at once, then one late\n0\n0\n0\n0\n0\n0\n\n0.5\n"


@pytest.mark.slow
def test_a_sweep_of_splits_and_rates_a_trace_and_a_duration_in_one_run(tmp_path):
    ws = workspace_with(tmp_path, {"sweep": SWEEP})
    (ws.root / "burst.txt").write_text(BURST)
    outcome, store = run(ws, "sweep")
    assert outcome.status == "succeeded", outcome.error
    rows = summarize_streams(store.spans(outcome.run_id), store.metrics(outcome.run_id))
    swept, traced, timed = rows[:6], rows[6], rows[7]
    # Every rate at every split, splits outermost: one row each, labelled by its split and rate.
    assert [(r.split, r.offered_fps, r.frames) for r in swept] == [
        (k, fps, 3) for k in (0, 5, 13) for fps in (20.0, 40.0)
    ]
    assert len({r.stream for r in rows}) == 8  # every stream its own, ids never reused
    # The burst: seven arrivals, the queue holds one, the oldest waiting is dropped for the newest.
    assert traced.loop == "trace" and traced.dropped >= 1
    assert traced.frames + traced.dropped == 7
    [dropped] = [m for m in store.metrics(outcome.run_id) if m.name == "stream_dropped"]
    assert dropped.attrs["policy"] == "oldest" and dropped.attrs["max_queue"] == 1
    # Frames until 600 ms had passed, closed loop: the last one started before then.
    assert timed.loop == "closed" and timed.split == 5 and timed.frames >= 2
    inferences = [
        s
        for s in store.spans(outcome.run_id)
        if s.kind == "inference" and s.attrs.get("stream") == timed.stream
    ]
    starts = sorted(s.start_ns for s in inferences)
    assert (starts[-1] - starts[0]) / 1e9 < 0.6


TOY = "tests.unit.toy_models:chain_of_opaque"
AUTO = f"""
name: auto
model: {{source: "{TOY}", input_shape: [2, 8]}}
participants:
  camera: {{role: "splittracer.builtin:SplitHead", profile: toy-a, replicas: 2, limits: {{uplink: 50mbit}}}}
  edge: {{role: "splittracer.builtin:SplitTail", profile: toy-b}}
options: {{warmup: 0}}
playbook:
  camera:
    - {{task: Stream, params: {{split: auto, next: [edge], count: 3, inflight: 2}}}}
"""


@pytest.mark.slow
def test_split_auto_streams_at_the_split_planned_for_frames_per_second(tmp_path):
    ws = workspace_with(tmp_path, {"auto": AUTO})
    profile_toy_devices(ws.results_dir)
    outcome, store = run(ws, "auto")
    assert outcome.status == "succeeded", outcome.error
    metrics = store.metrics(outcome.run_id)
    plans = [m for m in metrics if m.name == "split_plan"]
    assert len(plans) == 2 and {m.attrs["clients"] for m in plans} == {2.0}  # both cameras share the edge
    [decision, _] = split_decisions(metrics)
    assert decision.reason.startswith("throughput: ") and "2 clients" in decision.reason
    chosen = int(plans[0].value)
    assert {r.split for r in run_summary(store, outcome.run_id).streams} == {chosen}
    assert float(plans[0].attrs["predicted_fps"]) > 0


@pytest.mark.parametrize(
    ("trace", "line", "phrase"),
    [("0\n0.1\nsoon\n", 3, "'soon' is not a time"), ("0\n\n0.5\n0.2\n", 4, "comes before 0.5 s")],
)
def test_a_bad_trace_file_is_refused_at_its_line(tmp_path, trace, line, phrase):
    from splittracer.controller.resolve import resolve_run
    from splittracer.errors import ConfigError

    ws = workspace_with(tmp_path, {"sweep": SWEEP})
    (ws.root / "burst.txt").write_text(trace)
    with pytest.raises(ConfigError) as caught:
        resolve_run(ws.load_manifest("sweep"), ws.root)
    assert caught.value.path == str(ws.root / "burst.txt") and caught.value.line == line
    assert phrase in caught.value.render() and caught.value.exit_code == 2
