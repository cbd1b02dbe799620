"""Fleets: several clients (replicas of one participant) sharing one server, on loopback."""

from __future__ import annotations

from collections import Counter

import pytest

from splittracer.clock import now_ns
from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import RunObserver, run_experiment
from splittracer.metrics.spans import client_of
from splittracer.metrics.store import ResultsStore
from splittracer.report.summary import summarize

from ..manifests import fan_in
from .helpers import workspace_with

pytestmark = pytest.mark.slow


class _StopTime(RunObserver):
    """When the controller began stopping the participants, on the span clock."""

    stopping_ns = 0

    def phase(self, text: str) -> None:
        if text.startswith("stopping"):
            self.stopping_ns = now_ns()


def _run_fan_in(tmp_path, role: str):
    ws = workspace_with(tmp_path, {"fan-in": fan_in("replicas: 4", role=role)})
    store, observer = ResultsStore(ws.results_db), _StopTime()
    outcome = run_experiment(
        resolve_run(ws.load_manifest("fan-in")), store, workspace=ws.root, observer=observer
    )
    return outcome, store.spans(outcome.run_id), observer.stopping_ns


def test_four_clients_share_one_server(tmp_path):
    outcome, spans, stopping_ns = _run_fan_in(tmp_path, "splittracer.builtin:SplitHead")
    assert outcome.status == "succeeded", outcome.error
    inferences = [s for s in spans if s.kind == "inference"]
    assert len(inferences) == 40 and len({s.inference for s in inferences}) == 40
    by_client = Counter(s.attrs["client"] for s in inferences)
    assert by_client == {f"camera-{i}": 10 for i in range(4)}
    assert {client_of(s.inference) for s in inferences} == {0, 1, 2, 3}
    stages = {s.participant: s.stage for s in spans if s.kind == "compute"}
    assert stages == {"camera-0": 0, "camera-1": 0, "camera-2": 0, "camera-3": 0, "edge": 1}
    [row] = summarize(spans)
    assert row.split == 13 and row.count == 40
    # The edge served every inference of every camera, each under the camera's own id.
    edge_ids = {s.inference for s in spans if s.participant == "edge" and s.kind == "compute"}
    assert edge_ids == {s.inference for s in inferences}
    # The run ended after the last camera's last answer, not when the first camera was done.
    assert stopping_ns >= max(s.end_ns for s in inferences)
    # One worker: the edge handled one task at a time; every task's wait in its inbox is a span.
    queued = [s for s in spans if s.participant == "edge" and s.kind == "queue" and s.inference >= 0]
    assert {s.inference for s in queued} == edge_ids
    assert _most_at_once(spans, "edge") == 1
    assert row.queue.median > 0


def _most_at_once(spans, participant: str) -> int:
    """The most handlers of ``participant`` that ran at the same time."""
    edges = sorted(
        (t, step)
        for s in spans
        if s.participant == participant and s.kind == "handle"
        for t, step in ((s.start_ns, 1), (s.end_ns, -1))
    )
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_workers_serve_several_clients_at_once(tmp_path):
    ws = workspace_with(tmp_path, {"fan-in": fan_in("replicas: 4", edge="workers: 2")})
    store = ResultsStore(ws.results_db)
    outcome = run_experiment(resolve_run(ws.load_manifest("fan-in")), store, workspace=ws.root)
    assert outcome.status == "succeeded", outcome.error
    assert _most_at_once(store.spans(outcome.run_id), "edge") == 2


def test_a_failing_client_is_named_and_the_others_finish(tmp_path):
    outcome, spans, _ = _run_fan_in(tmp_path, "tests.integration.run_roles:FailingCamera")
    assert outcome.status == "failed"
    assert outcome.error is not None and "1 of 4 clients failed (camera-2)" in outcome.error
    assert "sensor is broken" in outcome.error
    done = Counter(s.participant for s in spans if s.kind == "inference")
    assert done == {"camera-0": 10, "camera-1": 10, "camera-3": 10}


BATCHED = """
name: batched
model: {source: torchvision:alexnet, input_shape: [1, 3, 64, 64]}
participants:
  camera: {role: "splittracer.builtin:SplitHead", replicas: 4, limits: {threads: 1}}
  edge: {role: "splittracer.builtin:SplitTail", batch: {max: 4, wait: 20ms}, limits: {threads: 1}}
playbook:
  camera:
    - task: Stream
      params: {split: 13, next: [edge], count: 10, inflight: 2, warmup: 0}
"""


def test_the_edge_batches_what_its_clients_send_within_the_window(tmp_path):
    ws = workspace_with(tmp_path, {"batched": BATCHED})
    store = ResultsStore(ws.results_db)
    outcome = run_experiment(resolve_run(ws.load_manifest("batched")), store, workspace=ws.root)
    assert outcome.status == "succeeded", outcome.error
    spans = store.spans(outcome.run_id)
    frames = {s.inference for s in spans if s.kind == "inference"}
    assert len(frames) == 40
    # Every frame has its tail compute (its own, or its share of a batch); a batch was computed once.
    at_edge = [s for s in spans if s.participant == "edge" and s.kind == "compute"]
    assert {s.inference for s in at_edge} == frames
    sizes = [m.value for m in store.metrics(outcome.run_id) if m.name == "batch_size"]
    assert sum(sizes) == 40 and max(sizes) > 1
    assert len([s for s in at_edge if not s.attrs.get("batched")]) == len(sizes)
    [row] = summarize(spans)
    assert row.count == 40
