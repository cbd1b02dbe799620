"""``splittracer device ...`` against a real sshd: add, ls, check, setup, rm, and their errors."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

from splittracer import __version__
from splittracer.cli import main
from splittracer.devices.errors import AuthenticationFailed
from splittracer.devices.pairing import install_key_command
from splittracer.devices.registry import Registry
from splittracer.devices.ssh import Target, connect, ensure_pairing_key, pairing_key_path, public_key_of, run

from .sshd_fixture import (  # noqa: F401  (fixtures)
    Sshd,
    free_port,
    keygen,
    silent_port,
    ssh_env_fixture,
    sshd_fixture,
)
from .test_devices_ssh import paired

pytestmark = pytest.mark.slow


def test_add_ls_check_rm(sshd: Sshd, capsys: pytest.CaptureFixture[str]):
    sshd.authorize(public_key_of(ensure_pairing_key()))
    args = ["device", "add", "pi", "--host", sshd.host, "--port", str(sshd.port), "--user", "root"]
    assert main([*args, "--tag", "arm", "--trust"]) == 0
    out = capsys.readouterr().out
    assert "paired pi" in out and "pinned now" in out and "SHA256:" in out
    assert main(args) == 0  # already pinned: no --trust needed
    assert "already pinned" in capsys.readouterr().out

    assert main(["device", "ls", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "pi" and row["reachable"] and row["tags"] == ["arm"] and row["last_seen"]
    assert row["python"].startswith("3.") and row["torch"]

    assert main(["device", "ls"]) == 0
    assert "pi" in capsys.readouterr().out

    code = main(["device", "check", "pi"])  # no runtime yet: splittracer is there but not as a wheel
    out = capsys.readouterr()
    assert "python" in out.out and "torch" in out.out
    assert code == (0 if "ready" in out.out else 2)

    assert main(["device", "rm", "pi"]) == 0
    assert "installed no key" in capsys.readouterr().out  # paired by a key it already accepted
    assert Registry.locate().find("pi") is None
    assert main(["device", "check", "pi"]) == 2
    assert "no device named 'pi'" in capsys.readouterr().err


def test_first_contact_without_a_terminal_needs_trust(sshd: Sshd, capsys: pytest.CaptureFixture[str]):
    code = main(["device", "add", "pi", "--host", sshd.host, "--port", str(sshd.port), "--user", "root"])
    assert code == 2
    err = capsys.readouterr().err
    assert "SHA256:" in err and "--trust" in err


def test_ls_of_eight_devices_with_two_unreachable_takes_under_3_s(sshd: Sshd, capsys):
    registry = paired(sshd)
    device = registry.get("dev1")
    for i in range(2, 7):
        registry.put(device.model_copy(update={"name": f"dev{i}"}))
    registry.put(device.model_copy(update={"name": "closed", "port": free_port()}))
    with silent_port() as port:  # accepts TCP, never says a word of SSH: a hung device
        registry.put(device.model_copy(update={"name": "blackhole", "port": port}))
        started = time.monotonic()
        assert main(["device", "ls", "--json"]) == 0
        elapsed = time.monotonic() - started
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 8 and elapsed < 3.0, elapsed
    assert [n for n, r in rows.items() if not r["reachable"]] == ["closed", "blackhole"]
    assert "refused" in rows["closed"]["error"] and "no SSH answer within 2 s" in rows["blackhole"]["error"]
    assert all(r["reachable"] for n, r in rows.items() if n.startswith("dev"))


def test_a_device_with_an_old_python_is_not_ready(sshd: Sshd, tmp_path: Path, capsys):
    registry = paired(sshd)
    old = tmp_path / "python3.8"  # stands in for a device whose only interpreter is 3.8
    old.write_text(
        "#!/bin/sh\ncat >/dev/null\n"
        'echo \'SPLITTRACER_FACTS={"os": "Linux", "arch": "aarch64", "python": "3.8.10", '
        '"python_path": "/usr/bin/python3.8", "torch": null}\'\n'
    )
    old.chmod(0o755)
    registry.put(registry.get("dev1").model_copy(update={"python": str(old)}))
    assert main(["device", "check", "dev1"]) == 2
    err = capsys.readouterr().err
    assert "Python 3.8.10 is too old" in err and "3.10" in err and "apt install" in err


def test_a_device_without_torch_says_to_run_setup(sshd: Sshd, tmp_path: Path, capsys):
    registry = paired(sshd)
    registry.put(registry.get("dev1").model_copy(update={"python": "/usr/bin/python3"}))  # Debian's: no torch
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no system python3 without torch here")
    assert main(["device", "check", "dev1"]) == 2
    err = capsys.readouterr().err
    assert "torch is not installed" in err and "splittracer device setup dev1" in err


def test_setup_makes_the_runtime_once(sshd: Sshd, capsys):
    paired(sshd)
    assert main(["device", "setup", "dev1", "--no-torch"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "created" in out and f"installed splittracer {__version__}" in out
    venv_python = sshd.home / ".splittracer" / "venv" / "bin" / "python"
    assert venv_python.exists()
    facts = Registry.locate().get("dev1").facts
    assert facts is not None and facts.runtime and facts.splittracer == __version__
    assert facts.python_path.startswith(str(sshd.home))
    assert not (sshd.home / ".splittracer" / "wheels").exists()

    assert main(["device", "setup", "dev1", "--no-torch"]) == 0  # idempotent: nothing to do
    out = capsys.readouterr().out
    assert "changed" not in out and "up to date" in out
    assert main(["device", "check", "dev1"]) == 0
    assert sys.executable not in capsys.readouterr().out  # participants use the runtime now


BEFORE = b"# the device's own keys\nssh-rsa AAAAB3NzaOther alice@desk\n\n"


def installed_by_password(sshd: Sshd, tmp_path: Path) -> tuple[Registry, str]:
    """dev1 paired as a password pairing leaves it: SplitTracer's key appended to the device's
    ~/.ssh/authorized_keys by install_key_command, the line recorded, and no other way in.

    (This sshd takes no passwords, so an admin key stands in for the password login.)
    """
    admin = tmp_path / "admin"
    sshd.authorize(keygen(admin))
    registry = Registry.locate()
    args = ["device", "add", "dev1", "--host", sshd.host, "--port", str(sshd.port), "--user", "root"]
    assert main([*args, "--key", str(admin), "--trust"]) == 0
    (sshd.home / ".ssh").mkdir(mode=0o700)
    keys = sshd.home / ".ssh" / "authorized_keys"
    keys.write_bytes(BEFORE)
    line = public_key_of(ensure_pairing_key())

    async def install() -> str:
        device = registry.get("dev1")
        target = Target.of(device)
        async with await connect(target, keys=[admin]) as conn:
            return (await run(conn, target, install_key_command(line))).stdout

    assert "SPLITTRACER_KEY_ADDED" in asyncio.run(install())
    registry.put(registry.get("dev1").model_copy(update={"key": pairing_key_path(), "installed_key": line}))
    sshd.authorized_keys.write_text("")  # the admin key is gone: the installed line is the way in
    assert keys.read_bytes() == BEFORE + line.encode() + b"\n"
    return registry, line


def test_rm_takes_back_only_the_installed_line(sshd: Sshd, tmp_path: Path, capsys):
    registry, _ = installed_by_password(sshd, tmp_path)
    device = registry.get("dev1")
    keys = sshd.home / ".ssh" / "authorized_keys"
    keys.chmod(0o640)
    assert main(["device", "rm", "dev1"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "removed dev1" in out and "removed the key SplitTracer installed" in out
    assert keys.read_bytes() == BEFORE  # byte for byte
    assert keys.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in keys.parent.iterdir()) == ["authorized_keys"]  # no temporary file left
    assert Registry.locate().find("dev1") is None
    with pytest.raises(AuthenticationFailed):  # the key no longer logs in
        asyncio.run(connect(Target.of(device), keys=[pairing_key_path()], timeout=5))


def test_rm_keep_key_leaves_the_line(sshd: Sshd, tmp_path: Path, capsys):
    installed_by_password(sshd, tmp_path)
    before = (sshd.home / ".ssh" / "authorized_keys").read_bytes()
    capsys.readouterr()
    assert main(["device", "rm", "dev1", "--keep-key", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["name"] == "dev1" and row["removed"] and row["key"] == "kept" and row["manual"] is None
    assert (sshd.home / ".ssh" / "authorized_keys").read_bytes() == before
    assert Registry.locate().find("dev1") is None


def test_rm_of_an_unreachable_device_forgets_it_and_says_how_to_remove_the_key(
    sshd: Sshd, tmp_path: Path, capsys
):
    _, line = installed_by_password(sshd, tmp_path)
    before = (sshd.home / ".ssh" / "authorized_keys").read_bytes()
    sshd.stop()
    started = time.monotonic()
    assert main(["device", "rm", "dev1", "--timeout", "2"]) == 0
    assert time.monotonic() - started < 4.0
    out, err = capsys.readouterr()
    assert "removed dev1" in out and Registry.locate().find("dev1") is None
    assert "refused" in err and "stays in ~/.ssh/authorized_keys" in err
    assert f"grep -vxF '{line}' ~/.ssh/authorized_keys" in err
    assert (sshd.home / ".ssh" / "authorized_keys").read_bytes() == before
    assert main(["device", "rm", "dev1"]) == 2  # gone: a second rm is a user's mistake
