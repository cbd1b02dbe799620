"""``splittracer device ...`` against a real sshd: add, ls, check, setup, rm, and their errors."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from splittracer import __version__
from splittracer.cli import main
from splittracer.devices.registry import Registry
from splittracer.devices.ssh import ensure_pairing_key, public_key_of

from .sshd_fixture import Sshd, free_port, ssh_env_fixture, sshd_fixture  # noqa: F401  (fixtures)
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
    assert code == (0 if "ready" in out.out else 1)

    assert main(["device", "rm", "pi"]) == 0
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
    registry.put(device.model_copy(update={"name": "blackhole", "host": "192.0.2.1", "port": 22}))
    started = time.monotonic()
    assert main(["device", "ls", "--json"]) == 0
    elapsed = time.monotonic() - started
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert len(rows) == 8 and elapsed < 3.0, elapsed
    assert [n for n, r in rows.items() if not r["reachable"]] == ["closed", "blackhole"]
    assert "refused" in rows["closed"]["error"]


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
    assert main(["device", "check", "dev1"]) == 1
    err = capsys.readouterr().err
    assert "Python 3.8.10 is too old" in err and "3.10" in err and "apt install" in err


def test_a_device_without_torch_says_to_run_setup(sshd: Sshd, tmp_path: Path, capsys):
    registry = paired(sshd)
    registry.put(registry.get("dev1").model_copy(update={"python": "/usr/bin/python3"}))  # Debian's: no torch
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no system python3 without torch here")
    assert main(["device", "check", "dev1"]) == 1
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
