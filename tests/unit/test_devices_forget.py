"""Taking back the key pairing installed: exact-line removal, the by-hand command, what rm decides alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from splittracer.devices.forget import KeyOutcome, forget_device, manual_removal, remove_line
from splittracer.devices.pairing import KEY_ADDED, install_key_command
from splittracer.devices.registry import Registry

from .test_devices_pairing import sh
from .test_devices_registry import device

OURS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOurs splittracer@laptop"
OTHERS = (
    b"# keys of this Pi\r\n"
    b"ssh-rsa AAAAB3NzaOther alice@desk\n"
    b'from="10.0.0.0/8" ' + OURS.encode() + b"\n"  # the same key with options: someone else's line
    b"\n" + OURS.encode() + b" and more\n"  # a longer line that only starts like ours
)


def test_only_the_exact_line_is_removed_and_every_other_byte_kept():
    data = OTHERS + OURS.encode() + b"\n" + b"ssh-ed25519 AAAAlast bob"  # no final newline
    kept, removed = remove_line(data, OURS)
    assert removed == 1
    assert kept == OTHERS + b"ssh-ed25519 AAAAlast bob"


def test_every_copy_of_the_line_goes_including_one_without_a_newline():
    kept, removed = remove_line(OURS.encode() + b"\n" + OTHERS + OURS.encode(), OURS)
    assert (kept, removed) == (OTHERS, 2)
    assert remove_line(OTHERS, OURS) == (OTHERS, 0)
    assert remove_line(b"", OURS) == (b"", 0)


def test_the_by_hand_command_removes_exactly_the_line(tmp_path: Path):
    home = tmp_path / "remote"
    (home / ".ssh").mkdir(parents=True)
    keys = home / ".ssh" / "authorized_keys"
    keys.write_bytes(OTHERS + OURS.encode() + b"\n" + b"ssh-ed25519 AAAAlast bob\n")
    result = sh(manual_removal(OURS), home)
    assert result.returncode == 0, result.stderr
    assert keys.read_bytes() == OTHERS + b"ssh-ed25519 AAAAlast bob\n"
    assert keys.stat().st_mode & 0o777 == 0o600


def test_install_says_whether_it_appended(tmp_path: Path):
    home = tmp_path / "remote"
    home.mkdir()
    first = sh(install_key_command(OURS), home)
    again = sh(install_key_command(OURS), home)
    assert KEY_ADDED in first.stdout.split() and KEY_ADDED not in again.stdout
    assert remove_line((home / ".ssh" / "authorized_keys").read_bytes(), OURS) == (b"", 1)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path / "devices.yaml")
    registry.put(device("pi", host="127.0.0.1", port=1, user="pi").model_copy(update={"installed_key": OURS}))
    return registry


def test_keep_key_forgets_without_connecting(registry: Registry):
    result = forget_device(registry, "pi", keep_key=True)  # port 1: connecting would fail
    assert result.key is KeyOutcome.KEPT and result.manual is None and result.error is None
    assert registry.find("pi") is None


def test_a_key_another_device_logs_in_with_stays(registry: Registry):
    registry.put(registry.get("pi").model_copy(update={"name": "pi-again"}))
    result = forget_device(registry, "pi")
    assert result.key is KeyOutcome.SHARED and result.shared_with == ("pi-again",)
    assert list(registry.devices()) == ["pi-again"]


def test_a_device_paired_by_its_own_key_has_nothing_to_take_back(registry: Registry):
    registry.put(registry.get("pi").model_copy(update={"name": "mine", "installed_key": None}))
    assert forget_device(registry, "mine").key is KeyOutcome.NONE_INSTALLED
    assert list(registry.devices()) == ["pi"]


def test_the_installed_line_survives_a_registry_round_trip(registry: Registry):
    assert Registry(registry.path).get("pi").installed_key == OURS
    assert f"installed_key: {OURS}" in registry.path.read_text()
