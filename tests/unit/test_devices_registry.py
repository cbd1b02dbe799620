"""The device registry: where it lives, what it accepts, how it is written."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from pathlib import Path

import asyncssh
import pytest

from splittracer.devices.errors import UnknownDevice
from splittracer.devices.registry import Device, DeviceFacts, Registry, fingerprint_of, registry_path
from splittracer.errors import ConfigError


def host_key() -> str:
    key = asyncssh.generate_private_key("ssh-ed25519")
    return key.export_public_key().decode().strip()


def device(name: str = "pi", **changes: object) -> Device:
    key = host_key()
    fields: dict[str, object] = {
        "name": name,
        "host": "192.0.2.7",
        "host_key": key,
        "fingerprint": fingerprint_of(key),
    }
    return Device.model_validate({**fields, **changes})


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("SPLITTRACER_DEVICES", raising=False)
    return tmp_path


def test_location_order(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    workspace = isolated / "ws"
    workspace.mkdir()
    assert registry_path() == isolated / "home" / ".config" / "splittracer" / "devices.yaml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(isolated / "xdg"))
    assert registry_path(workspace=workspace) == isolated / "xdg" / "splittracer" / "devices.yaml"
    (workspace / "devices.yaml").write_text("devices: {}\n")
    assert registry_path(workspace=workspace) == workspace / "devices.yaml"
    monkeypatch.setenv("SPLITTRACER_DEVICES", str(isolated / "env.yaml"))
    assert registry_path(workspace=workspace) == isolated / "env.yaml"
    assert registry_path(isolated / "explicit.yaml", workspace) == isolated / "explicit.yaml"


def test_round_trip_keeps_everything(isolated: Path):
    registry = Registry(isolated / "reg" / "devices.yaml")
    assert registry.devices() == {}
    facts = DeviceFacts(os="Linux", arch="aarch64", python="3.11.2", torch=None, cpu_cores=4)
    seen = datetime(2025, 1, 31, 10, 12, tzinfo=timezone.utc)
    stored = registry.put(device(tags=("arm", "camera"), port=2222, user="pi", facts=facts, last_seen=seen))
    loaded = registry.get("pi")
    assert loaded == stored and loaded.name == "pi"
    text = registry.path.read_text()
    assert text.startswith("devices:\n  pi:\n    host: 192.0.2.7\n")
    assert "name:" not in text  # the entry's key is its name
    assert [p.name for p in registry.path.parent.iterdir()] == ["devices.yaml"]  # no temp or lock files


def test_put_replaces_and_remove_forgets(isolated: Path):
    registry = Registry(isolated / "devices.yaml")
    registry.put(device("a"))
    registry.put(device("b"))
    registry.put(device("a", host="192.0.2.8"))
    assert list(registry.devices()) == ["a", "b"] and registry.get("a").host == "192.0.2.8"
    assert registry.remove("a").name == "a"
    assert list(registry.devices()) == ["b"]


def test_unknown_device_suggests_a_close_name(isolated: Path):
    registry = Registry(isolated / "devices.yaml")
    registry.put(device("jetson"))
    with pytest.raises(UnknownDevice) as caught:
        registry.get("jetsn")
    text = caught.value.render()
    assert "Did you mean 'jetson'?" in text and "device add jetsn" in text
    assert caught.value.exit_code == 2


def test_touch_updates_last_seen_of_several_at_once(isolated: Path):
    registry = Registry(isolated / "devices.yaml")
    registry.put(device("a"))
    registry.put(device("b"))
    when = datetime(2025, 2, 1, tzinfo=timezone.utc)
    registry.touch({"a": when, "gone": when})
    assert registry.get("a").last_seen == when and registry.get("b").last_seen is None


def test_concurrent_writers_all_keep_their_change(isolated: Path):
    registry = Registry(isolated / "devices.yaml")
    made = [device(f"d{i}") for i in range(12)]
    threads = [threading.Thread(target=registry.put, args=(d,)) for d in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(registry.devices()) == sorted(d.name for d in made)


@pytest.mark.parametrize("name", ["local", "has space", "-dash", ""])
def test_bad_names_are_refused(isolated: Path, name: str):
    with pytest.raises(ConfigError):
        Registry(isolated / "devices.yaml").put(device(name))


def test_errors_point_at_file_and_line(isolated: Path):
    path = isolated / "devices.yaml"
    key = host_key()
    path.write_text(
        f"devices:\n  pi:\n    host: h\n    host_key: {key}\n    fingerprint: {fingerprint_of(key)}\n"
        "    prot: 22\n"
    )
    with pytest.raises(ConfigError) as caught:
        Registry(path).devices()
    text = caught.value.render()
    assert f"{path}:6" in text and "unknown key 'prot'" in text and "Did you mean 'port'?" in text


def test_a_fingerprint_that_does_not_match_the_key_is_refused(isolated: Path):
    path = isolated / "devices.yaml"
    path.write_text(
        f"devices:\n  pi:\n    host: h\n    host_key: {host_key()}\n"
        f"    fingerprint: {fingerprint_of(host_key())}\n"
    )
    with pytest.raises(ConfigError) as caught:
        Registry(path).devices()
    assert "not the fingerprint of host_key" in caught.value.render() and "--repin" in caught.value.render()


def test_the_testbeds_registry_format_loads(isolated: Path):
    key = host_key()
    path = isolated / "devices.yaml"
    path.write_text(
        "devices:\n  st-h1:\n    host: 198.18.0.11\n    port: 22\n    user: splittracer-st-h1\n"
        f"    host_key: {key}\n    fingerprint: {fingerprint_of(key)}\n    tags: [testbed]\n"
    )
    (lab,) = Registry(path).devices().values()
    assert lab.name == "st-h1" and lab.tags == ("testbed",) and lab.key is None


def test_python_version_as_numbers():
    assert DeviceFacts(python="3.10.12").python_tuple == (3, 10, 12)
    assert DeviceFacts(python="3.13.0rc1").python_tuple == (3, 13, 0)
    assert DeviceFacts().python_tuple == (0,)
