"""``split: auto`` on a Stream: planned for frames per second, for every client of the server."""

from __future__ import annotations

import textwrap

import pytest

from splittracer.builtin import Stream
from splittracer.controller.autosplit import planned_costs
from splittracer.controller.resolve import resolve_run
from splittracer.controller.streams import read_trace
from splittracer.errors import ConfigError
from splittracer.plan.chain import Link, plan_chain
from splittracer.workspace import init_workspace

from .toy_models import profile_toy_devices

TOY = "tests.unit.toy_models:chain_of_opaque"

MANIFEST = """
name: m
model: {{source: "{toy}", input_shape: [2, 8]}}
participants:
  camera: {{role: splittracer.builtin:SplitHead, profile: toy-a, replicas: {replicas}, limits: {limits}}}
  edge: {{role: splittracer.builtin:SplitTail, profile: toy-b, limits: {{uplink: 100mbit}}}}
playbook:
  camera:
    - task: Stream
      params: {params}
"""


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = init_workspace(tmp_path_factory.mktemp("streamauto") / "ws")
    profile_toy_devices(ws.results_dir)
    return ws


def resolved(ws, params: str, *, replicas: int = 1, limits: str = "{uplink: 5mbit, latency: 5ms}") -> Stream:
    text = MANIFEST.format(toy=TOY, replicas=replicas, limits=limits, params=params)
    (ws.experiments_dir / "m.yaml").write_text(textwrap.dedent(text))
    (_, task), *_ = resolve_run(ws.load_manifest("m"), ws.root).playbook
    assert isinstance(task, Stream)
    return task


@pytest.mark.parametrize("replicas", [1, 3])
def test_auto_takes_the_split_with_the_most_frames_per_second_for_every_client(ws, replicas):
    task = resolved(ws, "{split: auto, next: [edge], count: 5, inflight: 2}", replicas=replicas)
    graph, costs = planned_costs(ws.load_manifest("m"), ws.root, ("playbook",), ["camera", "edge"])
    plan = plan_chain(
        ["camera", "edge"],
        [c.ms for c in costs],
        graph.split_bytes,
        [Link(5e6, 0.005)],
        allowed=graph.allowed,
        reply_links=[Link(100e6, 0.0)],
        objective="throughput",
        clients=replicas,
    )
    assert task.split == plan.best.cuts[0] and task.bandwidth is None
    assert task.planned["clients"] == replicas and task.planned["objective"] == "throughput"
    assert task.planned["predicted_fps"] == pytest.approx(plan.best.frames_per_s(replicas))
    assert str(task.planned["reason"]).startswith("throughput: ")


def test_auto_takes_the_bandwidth_where_no_uplink_is_emulated(ws):
    task = resolved(ws, "{split: auto, next: [edge], bandwidth: 2mbit}", limits="{threads: 1}")
    assert task.planned["bandwidth_bps"] == 2e6


def test_auto_without_a_rate_for_the_hop_names_the_split_and_the_way_out(ws):
    with pytest.raises(ConfigError) as caught:
        resolved(ws, "{split: auto, next: [edge]}", limits="{threads: 1}")
    assert caught.value.key == "playbook.camera.0.params.split"
    assert "limits.uplink" in caught.value.render() and "bandwidth" in caught.value.render()


def test_a_trace_file_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "frames.csv"
    path.write_text("# seconds\n0\n0.033 # first gap\n\n0.07\n")
    assert read_trace(path) == [0.0, 0.033, 0.07]
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="at least one arrival time"):
        read_trace(path)
