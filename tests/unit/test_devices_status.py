"""``device ls``: a device that answered but refused the key (or changed its host key) is reachable,
and says which; only a device that did not answer is unreachable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from splittracer.cli import main
from splittracer.devices import probe
from splittracer.devices.errors import AuthenticationFailed, DeviceError, HostKeyChanged, Unreachable
from splittracer.devices.probe import (
    LOGIN_FAILED,
    LOGIN_HOST_KEY_CHANGED,
    LOGIN_KEY_REFUSED,
    NO_ANSWER,
    check_all,
    failed_status,
)
from splittracer.devices.registry import Registry

from .test_devices_registry import device

FAILURES = {
    "refused": AuthenticationFailed("the SSH server answered but refused the key (/k)", hint="pair again"),
    "changed": HostKeyChanged("the host key differs", hint="--repin"),
    "down": Unreachable("no SSH answer within 2 s"),
    "odd": DeviceError("SSH error: protocol"),
}


@pytest.mark.parametrize(
    "name, login, reachable",
    [
        ("refused", LOGIN_KEY_REFUSED, True),
        ("changed", LOGIN_HOST_KEY_CHANGED, True),
        ("down", NO_ANSWER, False),
        ("odd", LOGIN_FAILED, True),
    ],
)
def test_each_failure_says_whether_the_device_answered(name: str, login: str, reachable: bool) -> None:
    status = failed_status(device(name), FAILURES[name])
    assert (status.login, status.reachable, status.ready) == (login, reachable, False)
    assert status.error == FAILURES[name].message and status.hint == FAILURES[name].hint


@pytest.fixture
def failing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Registry:
    """A registry of four devices whose logins fail each its own way."""

    async def connect(target, **_: object):  # type: ignore[no-untyped-def]
        raise FAILURES[target.name]

    monkeypatch.setattr(probe, "connect", connect)
    registry = Registry(tmp_path / "devices.yaml")
    for name in FAILURES:
        registry.put(device(name))
    return registry


def test_check_all_keeps_the_reason(failing: Registry) -> None:
    found = {s.device.name: s.login for s in check_all(list(failing.devices().values()))}
    assert found == {
        "refused": LOGIN_KEY_REFUSED,
        "changed": LOGIN_HOST_KEY_CHANGED,
        "down": NO_ANSWER,
        "odd": LOGIN_FAILED,
    }


def test_ls_json_and_table_say_which(failing: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["device", "ls", "--json", "--registry", str(failing.path)]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["refused"]["reachable"] and rows["refused"]["login"] == "key refused"
    assert rows["refused"]["hint"] == "pair again"
    assert rows["changed"]["reachable"] and rows["changed"]["login"] == "host key changed"
    assert not rows["down"]["reachable"] and rows["down"]["login"] == "no answer"
    assert main(["device", "ls", "--registry", str(failing.path)]) == 0
    out, err = capsys.readouterr()
    assert "key refused" in out and "host key changed" in out and "login" in out
    assert "refused: the SSH server answered but refused the key (/k)" in err and "--repin" in err
