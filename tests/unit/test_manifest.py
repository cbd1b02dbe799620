"""Manifests: one valid file, and one file per way of getting it wrong."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from splittracer.errors import ConfigError, UserCodeError
from splittracer.manifest import Manifest, build_task, check_user_code, load_manifest
from tests.unit.manifest_roles import Head, Probe, Relay, Tail

FIXTURES = Path(__file__).parent / "fixtures" / "manifests"


def test_valid_manifest_is_typed_and_ordered() -> None:
    manifest = load_manifest(FIXTURES / "good.yaml")
    assert manifest.name == "split-test"
    assert list(manifest.participants) == ["phone", "cloud"]
    phone, cloud = manifest.participants.values()
    assert (phone.name, phone.stage, cloud.name, cloud.stage) == ("phone", 0, "cloud", 1)
    assert manifest.stage_of("cloud") == 1
    assert phone.limits.threads == 1
    assert phone.limits.uplink == "lte"
    assert phone.limits.uplink_bps == pytest.approx(5.85e6)
    assert phone.limits.latency_s == pytest.approx(0.02)
    assert cloud.limits.uplink_bps == pytest.approx(80e6)
    assert cloud.limits.latency_s == 0.0
    assert cloud.device == "local"
    assert phone.params == {"note": "first", "sizes": [1, 2]}


def test_valid_manifest_model_options_and_text() -> None:
    manifest = load_manifest(FIXTURES / "good.yaml")
    assert manifest.model is not None
    assert manifest.model.input_shape == (1, 3, 64, 64)
    assert manifest.model.granularity == "depth=2"
    assert manifest.model.override == FIXTURES / "overrides" / "alexnet.yaml"
    assert manifest.options.compression == "lz4"
    assert manifest.options.timeout_s == 90.0
    assert (manifest.options.repeats, manifest.options.warmup, manifest.options.seed) == (5, 0, 7)
    assert manifest.manifest_text == (FIXTURES / "good.yaml").read_text()
    assert manifest.path == FIXTURES / "good.yaml"
    assert manifest.line_of(("participants", "cloud", "role")) == 19


def test_defaults_when_sections_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "tiny.yaml"
    path.write_text("name: tiny\nparticipants:\n  solo: {role: 'x.y:Z'}\nplaybook: {}\n")
    manifest = load_manifest(path, check_code=False)
    solo = manifest.participants["solo"]
    assert manifest.model is None
    assert (solo.device, solo.limits.threads, solo.limits.uplink_bps) == ("local", None, math.inf)
    assert (manifest.options.repeats, manifest.options.warmup) == (10, 2)
    assert manifest.options.compression == "none"
    assert manifest.options.timeout_s == math.inf


def test_cpu_and_memory_limits(tmp_path: Path) -> None:
    path = tmp_path / "limited.yaml"
    limits = "{cpu: 0.1, memory: 2GiB}"
    path.write_text(f"name: l\nparticipants:\n  p: {{role: 'x.y:Z', limits: {limits}}}\nplaybook: {{}}\n")
    p = load_manifest(path, check_code=False).participants["p"]
    assert (p.limits.cpu, p.limits.memory, p.limits.memory_bytes) == (0.1, "2GiB", 2 << 30)
    assert p.limits.by == "auto"  # a cgroup where one can be written, signals otherwise
    bare = Manifest.model_validate({"name": "u", "participants": {"q": {"role": "a:B"}}, "playbook": {}})
    assert (bare.participants["q"].limits.cpu, bare.participants["q"].limits.memory_bytes) == (None, None)


def test_manifest_is_frozen() -> None:
    manifest = load_manifest(FIXTURES / "good.yaml")
    with pytest.raises(ValueError, match="frozen"):
        manifest.name = "other"  # type: ignore[misc]


def test_check_user_code_returns_role_classes() -> None:
    manifest = load_manifest(FIXTURES / "good.yaml", check_code=False)
    assert check_user_code(manifest, FIXTURES) == {"phone": Head, "cloud": Tail}


def test_build_task_converts_params() -> None:
    manifest = load_manifest(FIXTURES / "good.yaml")
    probe = build_task(manifest.playbook["phone"][0])
    assert isinstance(probe, Probe)
    assert (probe.splits, probe.repeats, probe.warmup, probe.next) == ("all", 3, 2, ["cloud"])
    relay = build_task(manifest.playbook["cloud"][0])
    assert isinstance(relay, Relay) and relay.hops == 0


def _error_from(text: str, tmp_path: Path, exc: type[Exception] = ConfigError) -> Exception:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    manifest = load_manifest(path, check_code=False)
    with pytest.raises(exc) as info:
        build_task(manifest.playbook["phone"][0])
    return info.value


def test_build_task_wrong_value_type_points_at_the_param(tmp_path: Path) -> None:
    error = _error_from(
        "name: x\nparticipants:\n  phone: {role: 'a:B'}\nplaybook:\n  phone:\n"
        "    - task: test_manifest.Probe\n      params:\n        splits: all\n        repeats: many\n",
        tmp_path,
    )
    assert isinstance(error, ConfigError)
    assert (error.line, error.key) == (9, "playbook.phone.0.params.repeats")
    assert "Expected `int`" in error.message


def test_build_task_rejected_by_the_task_itself(tmp_path: Path) -> None:
    error = _error_from(
        "name: x\nparticipants:\n  phone: {role: 'a:B'}\nplaybook:\n  phone:\n"
        "    - task: test_manifest.Relay\n      params: {hops: -1}\n",
        tmp_path,
    )
    assert isinstance(error, ConfigError)
    assert (error.line, error.key) == (7, "playbook.phone.0.params")
    assert "hops must be >= 0" in error.message


# --- one fixture per failure mode: file, line, key path and the key phrase ---------------------

CONFIG_ERRORS = [
    ("bad_syntax.yaml", 5, None, "YAML syntax error: mapping values are not allowed"),
    ("missing_participants.yaml", 1, "participants", "missing required key 'participants'"),
    ("wrong_type.yaml", 6, "participants.phone.limits.threads", "valid integer"),
    ("unknown_key_top.yaml", 2, "participant", "unknown key 'participant'"),
    ("unknown_key_limits.yaml", 7, "participants.cloud.limts", "unknown key 'limts'"),
    ("unknown_participant.yaml", 11, "playbook.clod", "names participant 'clod'"),
    ("bad_units.yaml", 7, "participants.phone.limits.uplink", "unknown rate unit 'parsecs'"),
    ("unknown_task.yaml", 9, "playbook.phone.1.task", "unknown task 'test_manifest.Prob'"),
    ("unknown_task_param.yaml", 10, "playbook.phone.0.params.repeat", "has no field 'repeat'"),
    ("missing_task_param.yaml", 8, "playbook.phone.0.params", "needs field 'splits'"),
]
HINTS = {
    "unknown_key_top.yaml": "Did you mean 'participants'?",
    "unknown_key_limits.yaml": "Did you mean 'limits'?",
    "unknown_participant.yaml": "Did you mean 'cloud'?",
    "bad_units.yaml": "lte",
    "unknown_task.yaml": "Did you mean 'test_manifest.Probe'?",
    "unknown_task_param.yaml": "Did you mean 'repeats'?",
}


@pytest.mark.parametrize(("name", "line", "key", "phrase"), CONFIG_ERRORS)
def test_config_errors_point_at_file_line_and_key(name: str, line: int, key: str | None, phrase: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_manifest(FIXTURES / name)
    error = info.value
    assert error.path == str(FIXTURES / name)
    assert error.line == line
    assert error.key == key
    assert phrase in error.message
    assert f"{name}:{line}" in error.render()
    assert HINTS.get(name, "") in (error.render())


ROLE_ERRORS = [
    ("unknown_role_class.yaml", 6, "participants.cloud.role", "no attribute 'Tial'", "Tail"),
    ("role_not_role.yaml", 4, "participants.phone.role", "not a subclass of splittracer.roles.Role", "class"),
]


@pytest.mark.parametrize(("name", "line", "key", "phrase", "hint"), ROLE_ERRORS)
def test_role_errors_name_participant_file_and_line(
    name: str, line: int, key: str, phrase: str, hint: str
) -> None:
    with pytest.raises(UserCodeError) as info:
        load_manifest(FIXTURES / name)
    message = info.value.message
    assert f"{FIXTURES / name}:{line}, key '{key}'" in message
    assert f"participant '{key.split('.')[1]}'" in message
    assert phrase in message
    assert hint in info.value.render()


def test_role_errors_are_skipped_without_check_code() -> None:
    manifest = load_manifest(FIXTURES / "role_not_role.yaml", check_code=False)
    assert isinstance(manifest, Manifest)


def test_missing_role_module_says_where_it_looked(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: x\nparticipants:\n  phone:\n    role: no_such_roles:Head\nplaybook: {}\n")
    with pytest.raises(UserCodeError, match="cannot import module 'no_such_roles'") as info:
        load_manifest(path)
    assert "m.yaml:4, key 'participants.phone.role'" in info.value.message
    assert str(tmp_path.resolve()) in (info.value.hint or "")


@pytest.mark.parametrize(
    ("snippet", "key", "phrase"),
    [
        ("name: Bad Name\n", "name", "lower-case"),
        ("name: x\nparticipants: {}\n", "participants", "at least 1"),
        ("name: x\nparticipants:\n  9lives: {role: 'a:B'}\n", "participants.9lives", "not an identifier"),
        ("name: x\nparticipants:\n  p: {role: NoColon}\n", "participants.p.role", "module:Class"),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', limits: {latency: 20}}\n",
            "participants.p.limits.latency",
            "no unit",
        ),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', limits: {memory: 2}}\n",
            "participants.p.limits.memory",
            "no unit",
        ),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', limits: {memory: 2Gbytes}}\n",
            "participants.p.limits.memory",
            "unknown size unit",
        ),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', limits: {cpu: 0}}\n",
            "participants.p.limits.cpu",
            "greater than or equal to 0.001",
        ),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', limits: {cpu: half}}\n",
            "participants.p.limits.cpu",
            "valid number",
        ),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', limits: {cpu: 0.1, by: sigstop}}\n",
            "participants.p.limits.by",
            "'auto', 'cgroup' or 'signals'",
        ),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', limits: {by: signals}}\n",
            "participants.p.limits",
            "no cpu is set",
        ),
        ("name: x\noptions: {compression: zstandard}\n", "options.compression", "Did you mean 'zstd'"),
        ("name: x\noptions: {compression: 'jpeg:0'}\n", "options.compression", "jpeg:Q"),
        ("name: x\nmodel: {source: 'a:b', labels: nowhere.txt}\n", "model.labels", "does not exist"),
        (
            "name: x\nmodel: {source: 'a:b', labels: {cat: -1}}\n",
            "model.labels.cat",
            "greater than or equal to 0",
        ),
        ("name: x\nmodel: {source: alexnet}\n", "model.source", "SOURCE:NAME"),
        ("name: x\nmodel: {source: 'a:b', granularity: deep}\n", "model.granularity", "depth=N"),
        (
            "name: x\nparticipants:\n  p: {role: 'a:B', torch_device: gpu}\n",
            "participants.p.torch_device",
            "'cuda:N'",
        ),
    ],
)
def test_schema_checks(tmp_path: Path, snippet: str, key: str, phrase: str) -> None:
    path = tmp_path / "m.yaml"
    rest = "" if "participants" in snippet else "participants:\n  p: {role: 'a:B'}\n"
    path.write_text(snippet + rest + "playbook: {}\n")
    with pytest.raises(ConfigError) as info:
        load_manifest(path, check_code=False)
    assert info.value.key == key
    assert phrase in info.value.render()


def test_workspace_tasks_register_before_playbook_checks(tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text(
        "from splittracer.tasks import Task\n\n\nclass WsPing(Task, name='test_manifest.WsPing'):\n"
        "    n: int\n"
    )
    (tmp_path / "myroles.py").write_text(
        "from splittracer.roles import Role, handles\nfrom tasks import WsPing\n\n\n"
        "class Pinger(Role):\n    @handles(WsPing)\n    def ping(self, task, ctx):\n        pass\n"
    )
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: x\nparticipants:\n  p: {role: 'myroles:Pinger'}\nplaybook:\n"
        "  p:\n    - {task: test_manifest.WsPing, params: {n: 3}}\n"
    )
    try:
        manifest = load_manifest(path, workspace=tmp_path)
        task = build_task(manifest.playbook["p"][0])
        assert type(task).__name__ == "WsPing" and task.n == 3  # type: ignore[attr-defined]
    finally:
        import sys

        for module in ("tasks", "myroles"):
            sys.modules.pop(module, None)


def test_torch_device_reaches_the_plan(tmp_path: Path) -> None:
    from splittracer.controller.resolve import resolve_run

    path = tmp_path / "m.yaml"
    path.write_text(
        "name: x\nparticipants:\n  p: {role: 'a:B', torch_device: 'cuda:1'}\n"
        "  q: {role: 'a:B'}\nplaybook: {}\n"
    )
    plan = resolve_run(load_manifest(path, check_code=False))
    assert [p.torch_device for p in plan.participants] == ["cuda:1", "cpu"]


def test_lossy_codecs_and_a_labels_file_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("cat\ndog\n\n")
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: x\nmodel: {source: 'a:b', labels: classes.txt}\noptions: {compression: 'jpeg:90'}\n"
        "participants:\n  p: {role: 'a:B'}\nplaybook: {}\n"
    )
    manifest = load_manifest(path, check_code=False)
    assert manifest.options.compression == "jpeg:90"
    assert manifest.model is not None and manifest.model.label_indices() == {"cat": 0, "dog": 1}
