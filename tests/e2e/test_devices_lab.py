"""Pairing lab hosts as a user would: by password, by key, and every failure a user must understand."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from splittracer.cli import main
from splittracer.devices.errors import HostKeyChanged
from splittracer.devices.probe import check_device
from splittracer.devices.registry import Registry, fingerprint_of
from splittracer.devices.ssh import pairing_key_path, public_key_of
from splittracer.lab import Testbed, TestbedState

from ..integration.sshd_fixture import keygen, ssh_env_fixture  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


@pytest.fixture
def clean_keys(lab: TestbedState, ssh_env: Path) -> Iterator[TestbedState]:
    """The lab with every host's authorized_keys put back as it was after the test."""
    before = {h.name: h.authorized_keys.read_text() for h in lab.hosts}
    try:
        yield lab
    finally:
        for host in lab.hosts:
            host.authorized_keys.write_text(before[host.name])


def add_args(lab: TestbedState, index: int = 0) -> list[str]:
    host = lab.hosts[index]
    return ["device", "add", host.name, "--host", host.address, "--user", host.user, "--trust"]


def test_pair_by_password_installs_a_key_once(clean_keys: TestbedState, monkeypatch, capsys):
    lab = clean_keys
    host = lab.hosts[0]
    monkeypatch.setattr("sys.stdin", io.StringIO(lab.password + "\n"))
    assert main([*add_args(lab), "--password-stdin"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "pinned now" in out and host.host_key_fingerprint in out and "installed" in out
    device = Registry.locate().get(host.name)
    assert device.fingerprint == host.host_key_fingerprint and device.key == pairing_key_path()
    assert public_key_of(pairing_key_path()) in host.authorized_keys.read_text()
    assert host.authorized_keys.parent.stat().st_mode & 0o777 == 0o700
    assert host.authorized_keys.stat().st_mode & 0o777 == 0o600

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # now the key logs in: no password needed
    assert main(add_args(lab)) == 0
    assert "installed" not in capsys.readouterr().out
    assert host.authorized_keys.read_text().count(public_key_of(pairing_key_path()).split()[1]) == 1


def test_password_from_an_environment_variable(clean_keys: TestbedState, monkeypatch, capsys):
    monkeypatch.setenv("LAB_PASSWORD", clean_keys.password)
    assert main([*add_args(clean_keys, 1), "--password-env", "LAB_PASSWORD"]) == 0, capsys.readouterr().err


def test_a_wrong_password_is_a_clear_error(clean_keys: TestbedState, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("not-the-password\n"))
    assert main([*add_args(clean_keys), "--password-stdin"]) == 2
    err = capsys.readouterr().err
    assert "password was refused" in err and clean_keys.hosts[0].address in err and "--user" in err
    assert Registry.locate().find(clean_keys.hosts[0].name) is None


def test_pair_by_key(clean_keys: TestbedState, lab_testbed: Testbed, tmp_path: Path, capsys):
    host = clean_keys.hosts[1]
    lab_testbed.authorize_key(host.name, keygen(tmp_path / "mine"))
    assert main([*add_args(clean_keys, 1), "--key", str(tmp_path / "mine")]) == 0, capsys.readouterr().err
    assert "installed" not in capsys.readouterr().out
    assert Registry.locate().get(host.name).key == tmp_path / "mine"


def test_a_changed_host_key_is_refused(clean_keys: TestbedState, ssh_env: Path):
    lab = clean_keys
    registry = Registry.locate()
    for device in Registry(lab.registry).devices().values():
        registry.put(device)
    impostor = lab.hosts[1].host_key  # host 0 answering with another key, as a reinstalled device would
    registry.put(
        registry.get(lab.hosts[0].name).model_copy(
            update={"host_key": impostor, "fingerprint": fingerprint_of(impostor)}
        )
    )
    with pytest.raises(HostKeyChanged) as caught:
        check_device(registry, lab.hosts[0].name)
    assert "--repin" in caught.value.render()


def test_an_unreachable_lab_address_is_reported_within_the_timeout(ssh_env: Path, lab: TestbedState, capsys):
    net = lab.network
    absent = net.address(99)  # on the lab's subnet, but no host there
    started = time.monotonic()
    assert main(["device", "add", "ghost", "--host", absent, "--trust", "--timeout", "2"]) == 2
    assert time.monotonic() - started < 4.0
    err = capsys.readouterr().err
    assert absent in err and ("within 2 s" in err or "cannot connect" in err)


def test_a_lab_host_without_torch_says_to_run_setup(clean_keys: TestbedState, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(clean_keys.password + "\n"))
    assert main([*add_args(clean_keys), "--password-stdin", "--python", "/usr/bin/python3"]) == 0
    err = capsys.readouterr().err
    if "torch is not installed" not in err:
        pytest.skip("the system python3 has torch here")
    assert main(["device", "check", clean_keys.hosts[0].name]) == 2
    err = capsys.readouterr().err
    assert "torch is not installed" in err and f"splittracer device setup {clean_keys.hosts[0].name}" in err
    assert main(["device", "ls", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["reachable"] and not row["ready"] and row["torch"] is None


def test_rm_takes_back_the_key_pairing_installed(clean_keys: TestbedState, monkeypatch, capsys):
    host = clean_keys.hosts[0]
    before = host.authorized_keys.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO(clean_keys.password + "\n"))
    assert main([*add_args(clean_keys), "--password-stdin"]) == 0, capsys.readouterr().err
    line = public_key_of(pairing_key_path())
    assert Registry.locate().get(host.name).installed_key == line
    assert host.authorized_keys.read_bytes() != before
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(add_args(clean_keys)) == 0  # pairing again by the key: the record of the line stays
    assert Registry.locate().get(host.name).installed_key == line
    capsys.readouterr()
    assert main(["device", "rm", host.name]) == 0, capsys.readouterr().err
    assert "removed the key SplitTracer installed" in capsys.readouterr().out
    assert host.authorized_keys.read_bytes().rstrip(b"\n") == before.rstrip(b"\n")
    assert line.split()[1] not in host.authorized_keys.read_text()
