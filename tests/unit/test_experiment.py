"""``Experiment``: loading by workspace and name, and overrides checked before anything runs."""

from __future__ import annotations

import pytest

from splittracer import ConfigError, Experiment, SplitTracerError, Sweep, init_workspace
from splittracer.experiment import with_overrides
from splittracer.manifest import build_task

EXTRA = """
name: extra
participants:
  phone: {role: "splittracer.builtin:SplitHead"}
  cloud: {role: "splittracer.builtin:SplitTail"}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0, 3], next: [cloud], repeats: 4}
    - task: Infer
      params: {split: 3, next: [cloud], count: 2, finish: true}
"""


@pytest.fixture
def workspace(tmp_path):
    ws = init_workspace(tmp_path / "lab")
    (ws.experiments_dir / "extra.yaml").write_text(EXTRA)
    return ws


def _tasks(experiment: Experiment, **overrides: object) -> list[object]:
    manifest = with_overrides(experiment.manifest, overrides)
    return [build_task(entry) for entries in manifest.playbook.values() for entry in entries]


def test_load_by_path_and_by_workspace(workspace, monkeypatch):
    monkeypatch.chdir(workspace.root.parent)
    by_name = Experiment.load("lab", "neurosurgeon")
    assert by_name.name == "neurosurgeon" and by_name.workspace.root == workspace.root
    assert Experiment.load(workspace, "extra").name == "extra"
    monkeypatch.chdir(workspace.root)
    assert Experiment.load(None, "extra").workspace.root == workspace.root  # found from the cwd


def test_load_errors_are_the_cli_ones(workspace, tmp_path):
    with pytest.raises(ConfigError, match="no experiment named 'neurosurgeoon'") as caught:
        Experiment.load(workspace.root, "neurosurgeoon")
    assert "neurosurgeon" in (caught.value.hint or "")
    with pytest.raises(SplitTracerError, match="not a workspace"):
        Experiment.load(tmp_path, "neurosurgeon")


def test_an_override_reaches_every_task_that_has_the_field(workspace):
    experiment = Experiment.load(workspace.root, "extra")
    sweep, infer = _tasks(experiment, repeats=1, finish=False)
    assert isinstance(sweep, Sweep) and sweep.repeats == 1 and sweep.splits == [0, 3]
    assert sweep.finish is False and infer.finish is False  # type: ignore[attr-defined]
    assert infer.count == 2  # type: ignore[attr-defined]  # untouched: only named fields change
    unchanged = _tasks(experiment)
    assert unchanged[0].repeats == 4 and unchanged[1].finish is True  # type: ignore[attr-defined]


def test_overridable_lists_the_fields_and_their_tasks(workspace):
    names = Experiment.load(workspace.root, "extra").overridable()
    assert names["repeats"] == ("Sweep",) and names["count"] == ("Infer",)
    assert names["next"] == ("Sweep", "Infer")


def test_an_override_no_task_takes_is_refused_with_the_known_names(workspace):
    experiment = Experiment.load(workspace.root, "extra")
    with pytest.raises(ConfigError, match="takes the override 'repeat'") as caught:
        experiment.plan(repeat=1)
    hint = caught.value.hint or ""
    assert "Did you mean 'repeats'?" in hint and "count" in hint and "warmup" in hint
    with pytest.raises(ConfigError, match="'compression'"):
        experiment.run(compression="lz4")  # an option, not a task field: refused before starting


def test_a_value_of_the_wrong_type_is_refused(workspace):
    experiment = Experiment.load(workspace.root, "extra")
    with pytest.raises(ConfigError, match=r"override repeats='many' does not fit task 'Sweep'"):
        experiment.plan(repeats="many")
    with pytest.raises(ConfigError, match=r"count=2\.5 does not fit task 'Infer'"):
        experiment.plan(count=2.5)


def test_the_plan_carries_the_overrides(workspace):
    experiment = Experiment.load(workspace.root, "extra")
    plan = experiment.plan(repeats=2, next=["cloud"])
    assert plan.playbook[0][1].repeats == 2  # type: ignore[attr-defined]
    assert plan.provenance.overrides == {"repeats": 2, "next": ["cloud"]}
    assert experiment.plan().provenance.overrides == {}
    assert experiment.manifest.playbook["phone"][0].params["repeats"] == 4  # the manifest is unchanged
