"""Pairing, pinning, probing and checking devices against a real sshd on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from splittracer.devices.errors import AuthenticationFailed, HostKeyChanged, HostKeyNotTrusted, Unreachable
from splittracer.devices.pairing import PairingOptions, pair
from splittracer.devices.probe import check_device
from splittracer.devices.registry import Registry
from splittracer.devices.ssh import ensure_pairing_key, public_key_of

from .sshd_fixture import (  # noqa: F401  (fixtures)
    Sshd,
    free_port,
    keygen,
    silent_port,
    ssh_env_fixture,
    sshd_fixture,
)

pytestmark = pytest.mark.slow


def paired(server: Sshd, name: str = "dev1", **options: object) -> Registry:
    """A registry with ``name`` paired to ``server`` by SplitTracer's own key."""
    server.authorize(public_key_of(ensure_pairing_key()))
    registry = Registry.locate()
    pair(registry, name, server.host, port=server.port, user="root", options=PairingOptions(trust=True))
    return registry


def test_pair_by_key_pins_the_host_key_and_probes(sshd: Sshd):
    registry = paired(sshd)
    device = registry.get("dev1")
    assert device.host_key == sshd.host_key
    assert device.fingerprint.startswith("SHA256:")
    assert device.key is not None and device.key.name == "id_ed25519"
    facts = device.facts
    assert facts is not None
    assert facts.python.startswith("3.") and facts.python_tuple >= (3, 10)
    assert facts.torch is not None and facts.cpu_cores > 0 and facts.memory_bytes > 0
    assert facts.disk_free_bytes > 0 and facts.arch and facts.os == "Linux"
    assert not (Path.home() / ".ssh").exists()  # the controller's ~/.ssh stays untouched


def test_pair_with_an_explicit_key(sshd: Sshd, tmp_path: Path):
    sshd.authorize(keygen(tmp_path / "mine"))
    registry = Registry.locate()
    result = pair(
        registry,
        "dev2",
        sshd.host,
        port=sshd.port,
        user="root",
        key=tmp_path / "mine",
        options=PairingOptions(trust=True),
    )
    assert result.pinned and result.installed_key is None
    assert registry.get("dev2").key == tmp_path / "mine"


def test_first_contact_needs_trust_or_confirmation(sshd: Sshd):
    sshd.authorize(public_key_of(ensure_pairing_key()))
    registry = Registry.locate()
    seen: list[tuple[str, str]] = []

    def refuse(who: str, fingerprint: str) -> bool:
        seen.append((who, fingerprint))
        return False

    with pytest.raises(HostKeyNotTrusted):
        pair(registry, "dev1", sshd.host, port=sshd.port, user="root", options=PairingOptions(confirm=refuse))
    assert seen and seen[0][1].startswith("SHA256:")
    assert registry.find("dev1") is None


def test_changed_host_key_is_refused_until_repinned(sshd: Sshd):
    registry = paired(sshd)
    old = registry.get("dev1").fingerprint
    sshd.restart(new_host_key=True)
    with pytest.raises(HostKeyChanged) as caught:
        check_device(registry, "dev1")
    assert "--repin" in caught.value.render() and old in caught.value.render()
    with pytest.raises(HostKeyChanged):  # pairing again without --repin refuses too
        pair(registry, "dev1", sshd.host, port=sshd.port, user="root", options=PairingOptions(trust=True))
    pair(
        registry,
        "dev1",
        sshd.host,
        port=sshd.port,
        user="root",
        options=PairingOptions(repin=True, trust=True),
    )
    assert registry.get("dev1").host_key == sshd.host_key != old
    check_device(registry, "dev1")


def test_no_accepted_key_and_no_password_says_what_to_do(sshd: Sshd):
    registry = Registry.locate()
    with pytest.raises(AuthenticationFailed) as caught:
        pair(registry, "dev1", sshd.host, port=sshd.port, user="root", options=PairingOptions(trust=True))
    assert "--password-stdin" in caught.value.render()


def test_unreachable_host_is_reported_within_its_timeout(ssh_env: Path):
    registry = Registry.locate()
    with silent_port() as hung:
        for port, why in ((free_port(), "connection refused"), (hung, "no SSH answer within 1 s")):
            started = time.monotonic()
            with pytest.raises(Unreachable) as caught:
                pair(
                    registry, "gone", "127.0.0.1", port=port, options=PairingOptions(trust=True, timeout=1.0)
                )
            assert time.monotonic() - started < 2.5
            text = caught.value.render()
            assert f"127.0.0.1:{port}" in text and why in text and "--port" in text
            assert caught.value.exit_code == 2
    assert registry.find("gone") is None
