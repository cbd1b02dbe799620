"""Pinning decisions, key installation, probe parsing, readiness and error translation, with fakes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import asyncssh
import pytest

from splittracer import __version__
from splittracer.deploy.ssh import _exit_status, participant_command, user_code
from splittracer.devices.errors import (
    AuthenticationFailed,
    DeviceNotReady,
    HostKeyChanged,
    HostKeyNotTrusted,
    Unreachable,
)
from splittracer.devices.pairing import PairingOptions, install_key_command, pin_decision
from splittracer.devices.probe import parse_facts, problems, require_ready, select_python
from splittracer.devices.registry import DeviceFacts
from splittracer.devices.setup import wheel_requirements
from splittracer.devices.ssh import (
    Completed,
    Target,
    ensure_pairing_key,
    public_key_of,
    repin_command,
    translate,
)

from .test_devices_registry import device, host_key

TARGET = Target("192.0.2.7", 2222, "pi", name="pi")


def sh(script: str, home: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])}
    return subprocess.run(["sh", "-c", script], env=env, input=stdin, capture_output=True, text=True)


# -- pinning ---------------------------------------------------------------------------


def test_first_contact_pins_with_trust_or_a_yes():
    key = host_key()
    assert pin_decision(None, key, TARGET, PairingOptions(trust=True)) is True
    asked: list[str] = []
    yes = PairingOptions(confirm=lambda who, fp: asked.append(fp) or True)
    assert pin_decision(None, key, TARGET, yes) is True and asked[0].startswith("SHA256:")


def test_first_contact_without_trust_or_confirmation_is_refused():
    with pytest.raises(HostKeyNotTrusted) as caught:
        pin_decision(None, host_key(), TARGET, PairingOptions())
    assert "--trust" in caught.value.render()
    with pytest.raises(HostKeyNotTrusted):
        pin_decision(None, host_key(), TARGET, PairingOptions(confirm=lambda who, fp: False))


def test_the_same_key_needs_no_confirmation():
    known = device()
    assert pin_decision(known, known.host_key, TARGET, PairingOptions()) is False


def test_a_changed_key_is_refused_even_with_trust_until_repin():
    known = device()
    with pytest.raises(HostKeyChanged) as caught:
        pin_decision(known, host_key(), TARGET, PairingOptions(trust=True))
    text = caught.value.render()
    assert known.fingerprint in text and "--repin" in text and "--port 2222" in text
    assert pin_decision(known, host_key(), TARGET, PairingOptions(repin=True, trust=True)) is True
    with pytest.raises(HostKeyNotTrusted):  # repin still shows the new key to confirm
        pin_decision(known, host_key(), TARGET, PairingOptions(repin=True))


def test_repin_command_names_every_flag_needed():
    assert repin_command(TARGET) == "splittracer device add pi --host 192.0.2.7 --port 2222 --user pi --repin"


# -- keys --------------------------------------------------------------------------------


def test_install_key_like_ssh_copy_id(tmp_path: Path):
    home = tmp_path / "remote"
    home.mkdir()
    (home / ".ssh").mkdir(mode=0o755)
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAAother someone")  # no final newline
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTest splittracer@laptop"
    for _ in range(2):
        result = sh(install_key_command(key), home)
        assert result.returncode == 0, result.stderr
    lines = (home / ".ssh" / "authorized_keys").read_text().splitlines()
    assert lines == ["ssh-ed25519 AAAAother someone", key]  # appended once, on its own line
    assert (home / ".ssh").stat().st_mode & 0o777 == 0o700
    assert (home / ".ssh" / "authorized_keys").stat().st_mode & 0o777 == 0o600


def test_install_key_creates_what_is_missing(tmp_path: Path):
    home = tmp_path / "remote"
    home.mkdir()
    assert sh(install_key_command("ssh-ed25519 AAAAkey c"), home).returncode == 0
    assert (home / ".ssh" / "authorized_keys").read_text() == "ssh-ed25519 AAAAkey c\n"


def test_pairing_key_is_made_once_private_and_outside_dot_ssh(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path = ensure_pairing_key()
    assert path == tmp_path / "cfg" / "splittracer" / "id_ed25519"
    assert path.stat().st_mode & 0o777 == 0o600
    first = public_key_of(path)
    assert first.startswith("ssh-ed25519 ") and ensure_pairing_key() == path and public_key_of(path) == first


def test_a_bad_key_file_says_so(tmp_path: Path):
    bad = tmp_path / "key"
    bad.write_text("not a key")
    with pytest.raises(AuthenticationFailed) as caught:
        public_key_of(bad)
    assert str(bad) in caught.value.render()


# -- probe and readiness -----------------------------------------------------------------

FACTS = (
    'motd noise\nSPLITTRACER_FACTS={"os": "Linux", "arch": "aarch64", "python": "3.11.2", '
    '"python_path": "/usr/bin/python3", "torch": "2.4.1", "cuda": false, "splittracer": "%s", '
    '"cpu_cores": 4, "memory_bytes": 8000000000, "disk_free_bytes": 1, "cpu_model": "Cortex-A76"}\n'
)


def test_parse_facts_finds_its_line():
    facts = parse_facts(Completed(FACTS % __version__, "", 0), TARGET)
    assert facts.arch == "aarch64" and facts.torch == "2.4.1" and facts.probed_at is not None
    assert problems(facts) == []


def test_no_facts_line_is_an_error_with_the_output():
    with pytest.raises(DeviceNotReady) as caught:
        parse_facts(Completed("", "Traceback: SyntaxError", 1), TARGET)
    assert "SyntaxError" in caught.value.render() and "192.0.2.7" in caught.value.render()


@pytest.mark.slow  # imports torch
def test_the_probe_script_runs_here(tmp_path: Path):
    from splittracer.devices.probe import PROBE_SCRIPT

    result = sh(f'{select_python()}; exec "$py" -', tmp_path, PROBE_SCRIPT)
    facts = parse_facts(Completed(result.stdout, result.stderr, result.returncode), TARGET)
    assert facts.cpu_cores == os.cpu_count() and facts.python_tuple >= (3, 10)


def test_select_python_prefers_the_runtime(tmp_path: Path):
    venv = tmp_path / ".splittracer" / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to("/bin/true")
    assert sh(f'{select_python()}; echo "$py"', tmp_path).stdout.strip() == str(venv / "python")
    system = sh(f'{select_python(runtime=False)}; echo "$py"', tmp_path).stdout.strip()
    assert system and system != str(venv / "python")
    assert sh(f"{select_python('/nonexistent/python')}; echo x", tmp_path / "none").returncode == 127


def test_old_python_missing_torch_and_missing_runtime_each_say_what_to_do():
    old = DeviceFacts(python="3.8.10", torch=None)
    (only,) = problems(old)  # nothing else matters until Python is new enough
    assert "3.8.10 is too old" in only.message and "apt install" in only.hint
    bare = DeviceFacts(python="3.11.2", python_path="/usr/bin/python3", torch=None, splittracer=None)
    found = problems(bare, "pi")
    assert "torch is not installed" in found[0].message and "device setup pi" in found[0].hint
    assert "splittracer" in found[1].message
    assert [p.message for p in problems(bare, need_torch=False)] == [found[1].message]
    with pytest.raises(DeviceNotReady) as caught:
        require_ready(device(), bare)
    assert "torch is not installed" in caught.value.render() and "also:" in caught.value.render()


# -- errors ------------------------------------------------------------------------------


def test_foreign_errors_become_ours():
    assert isinstance(
        translate(asyncssh.HostKeyNotVerifiable("x"), Target("h", host_key=host_key())), HostKeyChanged
    )
    denied = translate(asyncssh.PermissionDenied("no"), TARGET, password=True)
    assert isinstance(denied, AuthenticationFailed) and "password was refused" in denied.render()
    assert "refused the key (~/.ssh/" in translate(asyncssh.PermissionDenied("no"), TARGET).render()
    named = translate(asyncssh.PermissionDenied("no"), TARGET, keys=[Path("/k/id_lab")]).render()
    assert "answered but refused the key (/k/id_lab)" in named
    slow = translate(asyncio.TimeoutError(), TARGET, timeout=2)
    assert isinstance(slow, Unreachable) and "within 2 s" in slow.render() and "2222" in slow.render()
    assert "refused on port 2222" in translate(ConnectionRefusedError(), TARGET).render()
    assert "resolve" in translate(socket.gaierror(-2, "Name or service not known"), TARGET).render()
    with pytest.raises(KeyboardInterrupt):
        translate(KeyboardInterrupt(), TARGET)


# -- deploy helpers ----------------------------------------------------------------------


class FakeProcess:
    def __init__(self, status: int | None, sig: tuple[str, bool, str, str] | None = None) -> None:
        self.exit_status, self.exit_signal = status, sig


def test_exit_status_follows_the_local_convention():
    assert _exit_status(FakeProcess(0)) == 0  # type: ignore[arg-type]
    assert _exit_status(FakeProcess(3)) == 3  # type: ignore[arg-type]
    assert _exit_status(FakeProcess(143)) == -15  # type: ignore[arg-type]
    assert _exit_status(FakeProcess(-1, ("KILL", False, "", ""))) == -9  # type: ignore[arg-type]
    assert _exit_status(FakeProcess(None)) == 255  # type: ignore[arg-type]


def test_participant_command_is_valid_shell_and_quotes_paths():
    command = participant_command("/home/a b/run", "198.18.0.11", "/opt/py 3/python", tls_dir="tls")
    assert "'/home/a b/run'" in command and "--tls-dir tls" in command
    assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0
    assert "--insecure" in participant_command("/r", "127.0.0.1")


def test_user_code_is_python_at_the_root_and_packages(tmp_path: Path):
    (tmp_path / "roles.py").write_text("")
    (tmp_path / "notes.md").write_text("")
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "__pycache__" / "x.py").write_text("")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "plot.py").write_text("")
    assert [rel for _, rel in user_code(tmp_path)] == ["roles.py", "pkg/__init__.py"]


def test_wheel_requirements_leave_out_extras_and_optionally_torch(tmp_path: Path):
    wheel = tmp_path / "splittracer-0.1.0-py3-none-any.whl"
    metadata = (
        "Metadata-Version: 2.1\nName: splittracer\n"
        "Requires-Dist: torch>=2.4\nRequires-Dist: torchvision>=0.19\n"
        'Requires-Dist: grpcio>=1.60\nRequires-Dist: typing_extensions>=4.6; python_version < "3.11"\n'
        'Requires-Dist: timm>=0.9; extra == "timm"\n'
    )
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("splittracer-0.1.0.dist-info/METADATA", metadata)
    assert wheel_requirements(wheel) == [
        "torch>=2.4",
        "torchvision>=0.19",
        "grpcio>=1.60",
        'typing_extensions>=4.6; python_version < "3.11"',
    ]
    assert wheel_requirements(wheel, torch=False)[0] == "grpcio>=1.60"
