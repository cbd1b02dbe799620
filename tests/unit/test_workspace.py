"""Workspaces: scaffolding, finding, listing experiments and settings."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.errors import ConfigError, SplitTracerError
from splittracer.manifest import build_task, load_manifest
from splittracer.workspace import find_workspace, init_workspace, open_workspace


@pytest.fixture
def clean_user_modules() -> Iterator[None]:
    """Forget the workspace's top-level ``tasks``/``roles`` modules after the test."""
    yield
    for name in ("tasks", "roles"):
        sys.modules.pop(name, None)


def test_init_scaffolds_every_file(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "ws")
    root = tmp_path / "ws"
    assert workspace.root == root.resolve()
    scaffold = ("splittracer.yaml", "roles.py", "tasks.py", "experiments/neurosurgeon.yaml")
    for name in (*scaffold, "experiments/lab-neurosurgeon.yaml", "experiments/neurosurgeon-paper.yaml"):
        assert (root / name).is_file(), name
    assert (root / "results").is_dir()
    assert workspace.name == "ws"
    assert workspace.results_db == root.resolve() / "results" / "splittracer.sqlite"
    assert not list(root.rglob("*.tmp")), "no temporary files left behind"


def test_scaffolded_neurosurgeon_manifest(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path)
    manifest = workspace.load_manifest("neurosurgeon", check_code=False)
    assert manifest.model is not None and manifest.model.source == "torchvision:alexnet"
    phone, cloud = manifest.participants.values()
    assert (phone.name, phone.role, phone.limits.threads) == ("phone", "splittracer.builtin:SplitHead", 1)
    assert phone.limits.uplink_bps == pytest.approx(5.85e6)
    # The slow phone of the paper, on any machine: a cgroup where one can be written, signals otherwise.
    assert (phone.limits.cpu, phone.limits.by) == (0.1, "auto")
    assert (cloud.name, cloud.role, cloud.limits.threads) == ("cloud", "splittracer.builtin:SplitTail", 2)
    assert cloud.limits.cpu is None
    entry = manifest.playbook["phone"][0]
    sweep = {"splits": "all", "next": ["cloud"], "uplinks": ["3g", "lte", "wifi"]}
    assert (entry.task, entry.params) == ("Sweep", sweep)
    assert (manifest.options.repeats, manifest.options.warmup) == (2, 0)


def test_scaffolded_lab_manifest_runs_neurosurgeon_on_the_two_lab_hosts(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path)
    manifest = workspace.load_manifest("lab-neurosurgeon", check_code=False)
    phone, cloud = manifest.participants.values()
    assert (phone.device, phone.role) == ("st-h1", "splittracer.builtin:SplitHead")
    assert (cloud.device, cloud.role) == ("st-h2", "splittracer.builtin:SplitTail")
    text = workspace.manifest_path("lab-neurosurgeon").read_text()
    assert "testbed up --hosts 2" in text and "SPLITTRACER_DEVICES=" in text


def test_scaffolded_paper_manifest_limits_the_phone_and_sweeps_the_papers_uplinks(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path)
    manifest = workspace.load_manifest("neurosurgeon-paper", check_code=False)
    phone, cloud = manifest.participants.values()
    assert phone.limits.cpu is not None and phone.limits.cpu < 0.5
    assert phone.limits.uplink_bps == pytest.approx(5.85e6)
    assert cloud.limits.cpu is None
    entry = manifest.playbook["phone"][0]
    assert entry.params["uplinks"] == ["3g", "lte", "wifi"]


@pytest.mark.usefixtures("clean_user_modules")
def test_scaffolded_user_code_imports_and_runs_through_a_manifest(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path)
    (workspace.experiments_dir / "hello.yaml").write_text(
        "name: hello\nparticipants:\n  a: {role: 'roles:Echo'}\n  b: {role: 'roles:Echo'}\n"
        "playbook:\n  a:\n    - {task: Greeting, params: {text: hi}}\n"
    )
    manifest = workspace.load_manifest("hello")
    task = build_task(manifest.playbook["a"][0])
    assert type(task).__name__ == "Greeting"
    assert (task.text, task.hops) == ("hi", 0)  # type: ignore[attr-defined]


def test_init_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "roles.py").write_text("# mine\n")
    with pytest.raises(SplitTracerError, match=r"already has roles\.py") as info:
        init_workspace(tmp_path)
    assert "force" in (info.value.hint or "")
    assert (tmp_path / "roles.py").read_text() == "# mine\n"
    assert not (tmp_path / "tasks.py").exists(), "nothing is written when refusing"
    init_workspace(tmp_path, force=True)
    assert "class Echo(Role)" in (tmp_path / "roles.py").read_text()


def test_find_workspace_walks_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    init_workspace(tmp_path)
    deep = tmp_path / "experiments" / "sub"
    deep.mkdir()
    assert find_workspace(deep).root == tmp_path.resolve()
    monkeypatch.chdir(deep)
    assert find_workspace().root == tmp_path.resolve()
    assert find_workspace(explicit=tmp_path).root == tmp_path.resolve()


def test_find_workspace_not_found_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(SplitTracerError) as info:
        find_workspace(tmp_path)
    assert "no splittracer.yaml" in info.value.message
    assert "splittracer init DIR" in (info.value.hint or "")
    assert "--workspace" in (info.value.hint or "")
    with pytest.raises(SplitTracerError, match="is not a workspace"):
        find_workspace(explicit=tmp_path)


def test_settings_are_validated(tmp_path: Path) -> None:
    (tmp_path / "splittracer.yaml").write_text("name: lab\nresult: out\n")
    with pytest.raises(ConfigError) as info:
        open_workspace(tmp_path)
    assert (info.value.line, info.value.key) == (2, "result")
    assert "Did you mean 'results'?" in info.value.render()


def test_settings_and_empty_file(tmp_path: Path) -> None:
    (tmp_path / "splittracer.yaml").write_text("name: lab\nresults: out\ndefault_device: pi4\n")
    workspace = open_workspace(tmp_path)
    assert (workspace.name, workspace.settings.default_device) == ("lab", "pi4")
    assert workspace.results_db == tmp_path.resolve() / "out" / "splittracer.sqlite"
    (tmp_path / "splittracer.yaml").write_text("")
    assert open_workspace(tmp_path).settings.default_device == "local"


def test_experiments_lists_broken_manifests_with_their_error(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path)
    (workspace.experiments_dir / "broken.yaml").write_text("name: broken\nparticipant: {}\n")
    infos = {info.name: info for info in workspace.experiments()}
    assert list(infos) == [
        "broken",
        "fleet",
        "lab-neurosurgeon",
        "neurosurgeon",
        "neurosurgeon-paper",
        "stream",
    ]
    good = infos["neurosurgeon"]
    assert (good.participants, good.error) == (("phone", "cloud"), None)
    assert good.description.startswith("AlexNet split after every layer")
    assert good.path == workspace.experiments_dir / "neurosurgeon.yaml"
    assert "unknown key 'participant'" in (infos["broken"].error or "")
    assert "broken.yaml:2" in (infos["broken"].error or "")


def test_manifest_path_unknown_name(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path)
    assert workspace.manifest_path("neurosurgeon").name == "neurosurgeon.yaml"
    with pytest.raises(ConfigError, match="no experiment named 'neurosurgen'") as info:
        workspace.manifest_path("neurosurgen")
    assert "Did you mean 'neurosurgeon'?" in (info.value.hint or "")
    known = "Known experiments: fleet, lab-neurosurgeon, neurosurgeon, neurosurgeon-paper, stream."
    assert known in (info.value.hint or "")


def test_default_workspace_of_a_manifest_is_its_workspace(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path)
    manifest = load_manifest(workspace.manifest_path("neurosurgeon"), check_code=False)
    assert manifest.path == workspace.experiments_dir / "neurosurgeon.yaml"
