"""Experiments end to end: real participant processes on loopback."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections import defaultdict

import pytest
import torch

from splittracer.report.summary import summarize

from .helpers import alive, participant_pids, run, workspace_with

pytestmark = pytest.mark.slow

ALEXNET_SPLITS = [0, 3, 13, 21]

TWO = """
name: two
model: {source: torchvision:alexnet}
participants:
  phone:
    role: splittracer.builtin:SplitHead
    limits: {threads: 1}
  cloud:
    role: {tail}
    limits: {threads: 1}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0, 3, 13, 21], next: [cloud], repeats: {repeats}, warmup: 1}
"""

THREE = """
name: chain
model: {source: torchvision:resnet18, input_shape: [1, 3, 64, 64], granularity: block}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
  cloud: {role: "splittracer.builtin:SplitTail", limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {cuts: [[0, 14], [4, 8], [7, 7], [14, 14]], next: [edge, cloud], repeats: 2, warmup: 0}
"""


def two(tail: str = "splittracer.builtin:SplitTail", repeats: int = 3) -> str:
    return TWO.replace("{tail}", tail).replace("{repeats}", str(repeats))


def test_neurosurgeon_sweep_records_every_split(tmp_path):
    ws = workspace_with(tmp_path, {"two": two()})
    outcome, store = run(ws, "two")
    assert outcome.status == "succeeded", outcome.error
    rows = summarize(store.spans(outcome.run_id))
    assert [r.split for r in rows] == ALEXNET_SPLITS
    assert all(r.count == 3 for r in rows)  # warm-up excluded
    by_split = {r.split: r for r in rows}
    assert by_split[0].head.median < by_split[21].head.median  # more layers on the phone
    assert by_split[21].tail.median < by_split[0].tail.median
    record = store.get_run(outcome.run_id).record
    assert len(record.layers) == 21 and record.split_bytes[13] == 36_864
    assert {"phone", "cloud"} <= set(record.participants)
    assert record.controller.splittracer and record.participants["phone"].pid > 0
    assert set(record.launch) == set(record.clocks) == set(record.participants)
    assert not any(alive(pid) for pid in participant_pids(store, outcome.run_id))


def test_three_participants_chain(tmp_path):
    ws = workspace_with(tmp_path, {"chain": THREE})
    outcome, store = run(ws, "chain")
    assert outcome.status == "succeeded", outcome.error
    spans = store.spans(outcome.run_id)
    computes = defaultdict(set)
    for s in spans:
        if s.kind == "compute":
            computes[s.participant].add((s.start_layer, s.end_layer))
    assert computes["phone"] == {(0, 0), (0, 4), (0, 7), (0, 14)}
    assert computes["edge"] == {(0, 14), (4, 8), (7, 7), (14, 14)}
    assert computes["cloud"] == {(14, 14), (8, 14), (7, 14)}
    hops = {(s.attrs["from"], s.attrs["to"]) for s in spans if s.kind == "transfer" and s.inference >= 0}
    assert hops == {("phone", "edge"), ("edge", "cloud"), ("cloud", "edge"), ("edge", "phone")}
    # Between participants, tasks and replies go over the data plane's sockets, not gRPC.
    assert {s.attrs["via"] for s in spans if s.kind == "transfer" and s.inference >= 0} == {"socket"}
    assert len(participant_pids(store, outcome.run_id)) == 3


def test_handler_exception_fails_the_run_and_keeps_spans(tmp_path):
    ws = workspace_with(tmp_path, {"two": two("tests.integration.run_roles:FailingTail", repeats=5)})
    started = time.monotonic()
    outcome, store = run(ws, "two")
    assert outcome.status == "failed"
    assert "the tail refuses inference 3" in outcome.error
    assert "Traceback" in outcome.error and "run_roles.py" in outcome.error  # the remote traceback
    assert time.monotonic() - started < 60
    run_info = store.get_run(outcome.run_id)
    assert run_info.status == "failed" and "refuses" in run_info.error
    inferences = [s for s in store.spans(outcome.run_id) if s.kind == "inference"]
    # The warm-up and the first measured inference, then the failed one, marked as such.
    assert [s.attrs.get("error") for s in inferences] == [None, None, "PeerError"]  # the tail failed
    assert not any(alive(pid) for pid in participant_pids(store, outcome.run_id))


def test_participant_killed_mid_run(tmp_path):
    ws = workspace_with(tmp_path, {"two": two(repeats=200)})
    result = {}

    def go():
        result["outcome"], result["store"] = run(ws, "two")

    thread = threading.Thread(target=go)
    thread.start()
    store = _wait_for_spans(ws, minimum=20)
    run_id = store.list_runs()[-1].id
    cloud = store.get_run(run_id).record.participants["cloud"].pid
    recorded_before = len(store.spans(run_id))
    killed_at = time.monotonic()
    os.kill(cloud, signal.SIGKILL)
    thread.join(timeout=60)
    ended_in = time.monotonic() - killed_at
    outcome = result["outcome"]
    assert outcome.status == "failed"
    assert ended_in < 10, f"run took {ended_in:.1f} s to notice"
    assert "cloud" in outcome.error and "SIGKILL" in outcome.error
    assert len(store.spans(run_id)) >= recorded_before
    assert not any(alive(pid) for pid in participant_pids(store, run_id))


@pytest.mark.parametrize(("rate", "rate_bps"), [("5.85mbit", 5.85e6), ("18.88mbit", 18.88e6)])
def test_emulated_link_transfer_times(tmp_path, rate, rate_bps):
    # The machine is shared and has two cores: a sweep disturbed by other work is measured once more.
    try:
        _check_emulated_link(tmp_path / "first", rate, rate_bps)
    except AssertionError:
        _check_emulated_link(tmp_path / "second", rate, rate_bps)


def _check_emulated_link(tmp_path, rate, rate_bps):
    tmp_path.mkdir()
    latency_ms = 10.0
    manifest = f"""
    name: link
    model: {{source: torchvision:alexnet}}
    participants:
      phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1, uplink: {rate}, latency: 10ms}}}}
      cloud: {{role: "splittracer.builtin:SplitTail", limits: {{threads: 1}}}}
    playbook:
      phone:
        - task: Sweep
          params: {{next: [cloud], repeats: 4, warmup: 1}}
    """
    ws = workspace_with(tmp_path, {"link": manifest})
    outcome, store = run(ws, "link")
    assert outcome.status == "succeeded", outcome.error
    spans = [s for s in store.spans(outcome.run_id) if not s.attrs.get("warmup")]
    forward = defaultdict(list)
    for s in spans:
        if s.kind == "transfer" and s.attrs.get("direction") == "forward" and s.split >= 0:
            forward[s.split].append((s.duration_ms, s.bytes_raw))
    assert sorted(forward) == list(range(22))
    errors = {}
    for split, samples in forward.items():
        measured = statistics.median(ms for ms, _ in samples)
        expected = 8 * samples[0][1] / rate_bps * 1000 + latency_ms
        errors[split] = (measured, expected, abs(measured - expected) - (0.10 * expected + 2.0))
    # Target: within 10% + 2 ms. On a shared 2-core machine a late scheduler wake-up can delay
    # one split's transfers by up to ~7 ms; allow that for at most two splits, never more.
    missed = {k: v for k, v in errors.items() if v[2] > 0}
    assert len(missed) <= 2, missed
    assert all(excess <= 8.0 for _, _, excess in errors.values()), missed
    # Target: head + transfer + queue + tail within 2% of the end-to-end time (the queue: the time
    # the task waited in the cloud's inbox), inference by inference, the median over the repeats.
    # Thread hand-offs under load can add ~2 ms to a split; allow that for at most two splits,
    # never beyond 5%. (A span kind left out of the accounting is off by far more, at every split.)
    gaps = _unaccounted_fractions(spans)
    assert sorted(gaps) == list(range(22))
    assert sum(gap > 0.02 for gap in gaps.values()) <= 2 and max(gaps.values()) <= 0.05, gaps


def _unaccounted_fractions(spans):
    """Split -> median over its inferences of |total - (compute + transfer + queue)| / total."""
    parts, totals = defaultdict(float), {}
    for s in spans:
        key = (s.split, s.inference)
        if s.kind in ("compute", "transfer", "queue"):
            parts[key] += s.duration_ms
        elif s.kind == "inference" and s.split >= 0:
            totals[key] = s.duration_ms
    by_split = defaultdict(list)
    for (split, inference), total in totals.items():
        by_split[split].append(abs(total - parts[split, inference]) / total)
    return {split: statistics.median(fractions) for split, fractions in by_split.items()}


def _wait_for_spans(ws, minimum):
    from splittracer.metrics.store import ResultsStore

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if ws.results_db.exists():
            store = ResultsStore(ws.results_db)
            runs = store.list_runs()
            if runs and len(store.spans(runs[-1].id, kind="inference")) >= minimum:
                return store
        time.sleep(0.2)
    raise AssertionError("the run recorded no spans in time")


def test_unknown_task_type_is_reported_to_the_run(tmp_path):
    manifest = """
    name: unknown
    participants:
      phone: {role: "tests.integration.run_roles:SendsUnknown"}
      cloud: {role: "splittracer.builtin:SplitTail"}
    playbook:
      phone:
        - task: Start
    """
    ws = workspace_with(tmp_path, {"unknown": manifest})
    outcome, store = run(ws, "unknown")
    assert outcome.status == "failed"
    assert "unknown task type" in outcome.error and "Secret" in outcome.error
    assert not any(alive(pid) for pid in participant_pids(store, outcome.run_id))


def test_compression_shrinks_what_crosses_the_wire(tmp_path):
    manifest = two(repeats=2).replace("splits: [0, 3, 13, 21]", "splits: [2]")
    manifest = manifest.replace("playbook:", "options: {compression: lz4}\nplaybook:")
    ws = workspace_with(tmp_path, {"two": manifest})
    outcome, store = run(ws, "two")
    assert outcome.status == "succeeded", outcome.error
    spans = store.spans(outcome.run_id)
    kinds = {s.kind for s in spans}
    assert {"compress", "decompress"} <= kinds
    forward = [
        s for s in spans if s.kind == "transfer" and s.attrs.get("direction") == "forward" and s.split == 2
    ]
    # After a ReLU about half the activations are zero: lz4 must find that.
    assert all(s.bytes_raw == 774_400 and s.bytes_wire < 0.8 * s.bytes_raw for s in forward)


CUDA_TWO = """
name: gpu
model: {source: torchvision:alexnet}
participants:
  phone: {role: "splittracer.builtin:SplitHead", limits: {threads: 1}}
  cloud: {role: "splittracer.builtin:SplitTail", torch_device: cuda, limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0, 13, 21], next: [cloud], repeats: 3, warmup: 1}
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA: the run would succeed")
def test_torch_device_cuda_without_a_gpu_fails_clearly(tmp_path):
    ws = workspace_with(tmp_path, {"gpu": CUDA_TWO})
    outcome, store = run(ws, "gpu")
    assert outcome.status == "failed"
    assert "participant 'cloud' asks for torch_device 'cuda'" in outcome.error
    assert "sees no CUDA device" in outcome.error and "device ls" in outcome.error
    assert not any(alive(pid) for pid in participant_pids(store, outcome.run_id))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_tail_computes_on_cuda(tmp_path):
    ws = workspace_with(tmp_path, {"gpu": CUDA_TWO})
    outcome, store = run(ws, "gpu")
    assert outcome.status == "succeeded", outcome.error
    participants = store.get_run(outcome.run_id).record.participants
    assert participants["cloud"].torch_device == "cuda"
    assert participants["cloud"].accelerator == torch.cuda.get_device_name(0)
    assert participants["phone"].accelerator == ""
    rows = {r.split: r for r in summarize(store.spans(outcome.run_id))}
    assert sorted(rows) == [0, 13, 21] and all(r.count == 3 for r in rows.values())
    # With the whole model on the GPU (split 0) the tail must beat the phone's CPU head at split 21.
    assert rows[0].tail.median < rows[21].head.median


TWO_INFERS = """
name: twice
model: {source: torchvision:alexnet}
participants:
  phone: {role: splittracer.builtin:SplitHead, limits: {threads: 1}}
  cloud: {role: splittracer.builtin:SplitTail, limits: {threads: 1}}
playbook:
  phone:
    - task: Infer
      params: {next: [cloud], split: 13, count: 2}
    - task: Sweep
      params: {splits: [3, 21], next: [cloud], repeats: 1, warmup: 0, finish: false}
    - task: Infer
      params: {next: [cloud], split: 5, count: 2, finish: true}
"""


def test_inference_ids_run_on_across_the_playbooks_tasks(tmp_path):
    ws = workspace_with(tmp_path, {"twice": TWO_INFERS})
    outcome, store = run(ws, "twice")
    assert outcome.status == "succeeded", outcome.error
    inferences = sorted(store.spans(outcome.run_id, kind="inference"), key=lambda s: s.start_ns)
    got = [(s.inference, s.split) for s in inferences]
    assert got == [(0, 13), (1, 13), (2, 3), (3, 21), (4, 5), (5, 5)], got
