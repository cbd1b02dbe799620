"""Placements that are not a prefix cut, run by the built-in roles on real participants.

The model is a small Inception-style DAG (``tests.unit.toy_models``): the
placement ``1-3,7-9`` puts the stem, block1's first branch and its third
branch on the phone, so the phone sends three tensors (two branch outputs
and the stem's, which the other branches read) that no cut "after layer k"
sends together.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from splittracer.controller.plancheck import check_run, check_to_dict
from splittracer.controller.resolve import resolve_run
from splittracer.errors import ConfigError
from splittracer.plan.chain import Link
from splittracer.plan.dag import estimate_placement
from splittracer.plan.planner import predict_splits
from splittracer.plan.profiles import DeviceProfile, ProfileStore, default_profile_dir, profile_local
from splittracer.report.summary import summarize

from .helpers import run, workspace_with

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "tests.unit.toy_models:inception_toy"
PLACEMENT = "1-3,7-9"

MANIFEST = """
name: {name}
model: {{source: "{source}", input_shape: [1, 3, 16, 16]}}
participants:
  phone:
    role: {head}
    profile: phone-1t
    limits: {{threads: 1, uplink: 20mbit}}
  cloud:
    role: splittracer.builtin:SplitTail
    profile: cloud-8x
    limits: {{threads: 1}}
playbook:
  phone:
{tasks}
options: {{repeats: 2, warmup: 1}}
"""

PLACED = """\
    - task: Sweep
      params: {next: [cloud], placements: ["1-3,7-9", [stem, block1.b1]], finish: false}
    - task: Infer
      params: {next: [cloud], placement: placement.yaml, count: 2, finish: false}
    - task: CheckOutput
      params: {next: [cloud], placement: "1-3,7-9"}
"""

CHECK = '''
import torch

from splittracer.builtin import Result, RunPlaced, SplitHead
from splittracer.roles import handles
from splittracer.tasks import Task


class CheckOutput(Task):
    next: list[str]
    placement: str


class CheckingHead(SplitHead):
    """The built-in head, and a check: the placement's output against the whole model's."""

    @handles(CheckOutput)
    def check(self, task, ctx):
        x = ctx.example(0)
        sent = ctx.run_placed(task.placement, 0, x)
        onward = RunPlaced(placement=task.placement, tensors=list(sent), route=task.next[1:])
        reply = ctx.call(task.next[0], onward)
        assert isinstance(reply, Result)
        with torch.no_grad():
            whole = ctx.model.model(x)
        out = reply.outputs[0]
        ctx.record("output_diff", float((out - whole).abs().max()), equal=torch.equal(out, whole))
        ctx.finish()
'''


def manifest(name: str, tasks: str, head: str = "splittracer.builtin:SplitHead") -> str:
    return MANIFEST.format(name=name, source=SOURCE, head=head, tasks=tasks)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    dag = "    - task: Infer\n      params: {next: [cloud], split: auto, dag: true, count: 3, finish: true}\n"
    ws = workspace_with(
        tmp_path_factory.mktemp("placements"),
        {
            "placed": manifest("placed", PLACED, head="checks:CheckingHead"),
            "dag": manifest("dag", dag),
            "top": manifest("top", "    - task: Sweep\n      params: {next: [cloud], top: 3}\n"),
        },
    )
    (ws.root / "checks.py").write_text(CHECK)
    (ws.experiments_dir / "placement.yaml").write_text("first: [stem, block1.b1, block1.b3]\n")
    store = ProfileStore(default_profile_dir(ws.results_dir))
    phone = DeviceProfile(name="phone-1t", threads=1).with_models(
        profile_local([SOURCE], threads=1, repeats=2, warmup=1, input_shape=(1, 3, 16, 16))
    )
    measured = phone.models[0]
    faster = tuple(dataclasses.replace(layer, median_ms=layer.median_ms / 8) for layer in measured.layers)
    cloud = DeviceProfile(name="cloud-8x", threads=1).with_models(
        [dataclasses.replace(measured, layers=faster)]
    )
    store.save(phone)
    store.save(cloud)
    return ws, [phone, cloud]


@pytest.fixture(scope="module")
def placed_run(lab):
    ws, _ = lab
    outcome, store = run(ws, "placed")
    assert outcome.status == "succeeded", outcome.error
    return outcome, store


def test_a_placement_that_is_no_prefix_runs_and_its_spans_say_which(placed_run):
    outcome, store = placed_run
    spans = store.spans(outcome.run_id)
    inferences = [s for s in spans if s.kind == "inference" and not s.attrs.get("warmup")]
    labels = [s.attrs.get("placement") for s in sorted(inferences, key=lambda s: s.inference)]
    # The sweep's two placements (2 repeats each after a warm-up), then the Infer's (from the file).
    assert labels == [PLACEMENT] * 2 + ["1-3"] * 2 + [PLACEMENT] * 2
    placed = next(s for s in inferences if s.attrs["placement"] == PLACEMENT)
    assert placed.split == 6  # six layers on the phone
    assert placed.attrs["placement_layers"] == "1-3 (stem.0..block1.b1), 7-9 (block1.b3.0..block1.b3.2)"
    # The stem's output (8x16x16 floats) and two branches' (4x16x16 each) cross.
    assert placed.attrs["placement_tensors"] == 3
    assert placed.attrs["placement_bytes"] == 4 * (8 + 4 + 4) * 16 * 16
    computes = [s for s in spans if s.kind == "compute" and s.inference == placed.inference]
    assert {s.participant for s in computes} == {"phone", "cloud"}
    assert all(s.attrs["placement"] == PLACEMENT for s in computes)
    forward = [s for s in spans if s.kind == "transfer" and s.inference == placed.inference]
    assert any(s.bytes_raw >= placed.attrs["placement_bytes"] for s in forward)
    (check,) = [m for m in store.metrics(outcome.run_id) if m.name == "output_diff"]
    assert check.attrs["equal"] is True and check.value == 0.0


def test_results_and_plan_check_label_each_placement(lab, placed_run):
    _, profiles = lab
    outcome, store = placed_run
    rows = summarize(store.spans(outcome.run_id))
    assert [(r.placement, r.count) for r in rows] == [("1-3", 2), (PLACEMENT, 4)]
    assert rows[0].split == 3 and rows[0].placement_tensors == 2  # a prefix placement is the split it is
    assert rows[1].placement_layers == "1-3 (stem.0..block1.b1), 7-9 (block1.b3.0..block1.b3.2)"
    assert rows[1].bytes_raw >= 4 * 16 * 16 * 16 and rows[1].placement_tensors == 3
    checked = check_run(store, outcome.run_id, profiles)
    assert [(r.placement, r.count) for r in checked.rows] == [("1-3", 2), (PLACEMENT, 4)]
    graph, costs = checked.plan.graph, [c.ms for c in checked.plan.costs]
    link, reply = checked.plan.links[0], checked.plan.reply_links[0]
    for row in checked.rows:
        first = [1, 2, 3] if row.placement == "1-3" else [1, 2, 3, 7, 8, 9]
        priced = estimate_placement(graph, first, costs[0], costs[1], link, reply=reply)
        assert row.predicted_ms == pytest.approx(priced.total_ms)
    data = check_to_dict(checked)
    assert data["splits"][1]["placement_layers"].startswith("1-3 (stem.0..block1.b1), 7-9")
    assert checked.plan.dag is not None and data["dag"]["placement"] == checked.plan.dag.placement
    assert data["dag"]["measured"] == (checked.dag_row is not None)


def test_dag_auto_runs_the_planners_placement(lab):
    ws, profiles = lab
    outcome, store = run(ws, "dag")
    assert outcome.status == "succeeded", outcome.error
    expected = predict_splits(SOURCE, profiles, [Link(20e6, 0.0)], dag=True, input_shape=(1, 3, 16, 16)).dag
    assert expected is not None
    (plan,) = [m for m in store.metrics(outcome.run_id) if m.name == "split_plan"]
    assert plan.attrs["dag"] is True and plan.attrs["placement"] == expected.placement
    assert plan.value == len(expected.first)
    assert plan.attrs["predicted_ms"] == pytest.approx(expected.total_ms, rel=1e-6)
    used = {s.attrs.get("placement") for s in store.spans(outcome.run_id, kind="inference")}
    assert used == {expected.placement}


@pytest.mark.parametrize(
    ("placement", "says"),
    [
        ("7-9", r"layer 7 \(block1\.b3\.0\) is placed on the first device but reads .* layer 2 \(stem\.1\)"),
        ("stem, block9", r"no layer of that name"),
    ],
)
def test_an_invalid_placement_is_located_and_names_the_layer(lab, placement, says):
    ws, _ = lab
    tasks = f"    - task: Infer\n      params:\n        next: [cloud]\n        placement: '{placement}'\n"
    text = manifest("bad", tasks)
    (ws.experiments_dir / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=says) as caught:
        resolve_run(ws.load_manifest("bad"))
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if "placement:" in row)
    assert caught.value.line == line and caught.value.key == "playbook.phone.0.params.placement"


def test_run_refuses_an_invalid_placement_with_exit_2(lab):
    ws, _ = lab
    tasks = "    - task: Sweep\n      params: {next: [cloud], placements: ['1-3', 'block1.b3']}\n"
    (ws.experiments_dir / "unclosed.yaml").write_text(manifest("unclosed", tasks))
    result = subprocess.run(
        [sys.executable, "-m", "splittracer", "run", "unclosed", "--workspace", str(ws.root)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "playbook.phone.0.params.placements.1" in result.stderr
    assert "layer 7 (block1.b3.0)" in result.stderr and "Add layer 2" in result.stderr


def test_a_sweep_over_the_planners_top_placements(lab):
    ws, profiles = lab
    (_, sweep), *_ = resolve_run(ws.load_manifest("top")).playbook
    plan = predict_splits(SOURCE, profiles, [Link(20e6, 0.0)], dag=True, input_shape=(1, 3, 16, 16))
    assert plan.dag is not None
    assert len(sweep.placements) == 3 and sweep.placements[0] == plan.dag.placement
    costs = [c.ms for c in plan.costs]
    priced = [
        estimate_placement(plan.graph, _layers(label), costs[0], costs[1], Link(20e6, 0.0)).total_ms
        for label in sweep.placements
    ]
    assert priced == sorted(priced)
    best_prefix = min(row.total_ms for row in plan.chain.rows)
    assert priced[0] <= best_prefix + 1e-9  # the min cut is never worse than the best prefix cut
    outcome, store = run(ws, "top")
    assert outcome.status == "succeeded", outcome.error
    rows = summarize(store.spans(outcome.run_id))
    assert sorted(r.placement for r in rows) == sorted(sweep.placements) and all(r.count == 2 for r in rows)


def _layers(label: str) -> list[int]:
    found: list[int] = []
    for part in filter(None, label.split(",")):
        low, _, high = part.partition("-")
        found += range(int(low), int(high or low) + 1)
    return found


def test_plan_check_and_results_show_name_the_placements(lab, placed_run):
    ws, _ = lab
    outcome, _ = placed_run
    check = _cli(
        "plan", "--check", outcome.run_id, "--devices", "phone-1t,cloud-8x", "--workspace", str(ws.root)
    )
    assert check.returncode == 0, check.stderr
    assert "[1-3,7-9]" in check.stdout and "7-9 (block1.b3.0..block1.b3.2)" in check.stdout
    assert "DAG min-cut: [" in check.stdout
    shown = _cli("results", "show", outcome.run_id, cwd=ws.root)
    assert shown.returncode == 0, shown.stderr
    assert "[1-3,7-9]" in shown.stdout and "[1-3]" in shown.stdout


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "250"}  # wide enough that no label wraps
    command = [sys.executable, "-m", "splittracer", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


CHAIN = """
name: chain
model: {source: "tests.unit.toy_models:inception_toy", input_shape: [1, 3, 16, 16]}
participants:
  phone: {role: "checks:CheckingHead", limits: {threads: 1}}
  edge: {role: splittracer.builtin:SplitTail, limits: {threads: 1}}
  cloud: {role: splittracer.builtin:SplitTail, limits: {threads: 1}}
playbook:
  phone:
    - task: Sweep
      params: {next: [edge, cloud], placements: ["1-3,7-9|4-6,10-11"], repeats: 2, warmup: 0, finish: false}
    - task: CheckOutput
      params: {next: [edge, cloud], placement: "1-3,7-9|4-6,10-11"}
"""


def test_a_chain_of_placements_runs_on_three_participants(lab):
    ws, _ = lab
    (ws.experiments_dir / "chain.yaml").write_text(CHAIN)
    outcome, store = run(ws, "chain")
    assert outcome.status == "succeeded", outcome.error
    spans = store.spans(outcome.run_id)
    label = "1-3,7-9|4-6,10-11"
    inferences = [s for s in spans if s.kind == "inference"]
    assert [s.attrs["placement"] for s in inferences] == [label] * 2
    assert inferences[0].attrs["placement_layers"].count(" | ") == 1
    computes = [s for s in spans if s.kind == "compute" and s.inference == inferences[0].inference]
    assert {s.participant for s in computes} == {"phone", "edge", "cloud"}
    (row,) = summarize(spans)
    assert row.placement == label and len(row.stages) == 3 and len(row.hops) == 2
    (check,) = [m for m in store.metrics(outcome.run_id) if m.name == "output_diff"]
    assert check.attrs["equal"] is True


def test_a_chain_needs_a_participant_per_device(lab):
    ws, _ = lab
    (ws.experiments_dir / "short.yaml").write_text(
        CHAIN.replace("name: chain", "name: short").replace("[edge, cloud], placements", "[edge], placements")
    )
    with pytest.raises(ConfigError, match=r"runs on 3 participants, but next names 2") as caught:
        resolve_run(ws.load_manifest("short"))
    assert caught.value.key == "playbook.phone.0.params.next"
