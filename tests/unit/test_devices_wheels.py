"""``device setup --offline``: what the device lacks, and the wheels the controller brings for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from splittracer import __version__
from splittracer.devices import wheels
from splittracer.devices.errors import DeviceError
from splittracer.devices.wheels import (
    INSTALLED_SCRIPT,
    TAGS_SCRIPT,
    download_command,
    find_wheel,
    missing_requirements,
    parse_installed,
    wheels_for,
)

TAGS = ["cp311-cp311-manylinux_2_17_aarch64", "cp311-abi3-manylinux_2_17_aarch64", "py3-none-linux_aarch64"]


def test_only_unsatisfied_requirements_are_missing() -> None:
    installed = {"torch": "2.4.1", "numpy": "1.23.0", "pyyaml": "6.0.1", "typing-extensions": "4.1"}
    requirements = [
        "torch>=2.4",
        "numpy>=1.24",  # too old there
        "PyYAML>=6",  # another spelling of an installed name
        "lz4>=4",  # not there at all
        "typing_extensions>=4.6; python_version<'3.11'",  # not for this Python
    ]
    assert missing_requirements(requirements, installed, "3.11.2") == ["numpy>=1.24", "lz4>=4"]
    assert "typing_extensions>=4.6; python_version<'3.11'" in missing_requirements(
        requirements, installed, "3.10.12"
    )


def test_the_device_scripts_run_here() -> None:
    shown = subprocess.run(
        [sys.executable, "-c", INSTALLED_SCRIPT], capture_output=True, text=True, check=True
    )
    python, installed = parse_installed(shown.stdout)
    assert python.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}") and "pyyaml" in installed
    tags = json.loads(
        subprocess.run([sys.executable, "-c", TAGS_SCRIPT], capture_output=True, text=True).stdout
    )
    assert tags[0].startswith(f"cp{sys.version_info[0]}{sys.version_info[1]}-")


def test_download_is_for_the_devices_platform_and_python(tmp_path: Path) -> None:
    command = download_command(["lz4>=4"], tmp_path, TAGS, "3.11.2")
    assert command[1:4] == ["-m", "pip", "download"] and "--only-binary=:all:" in command
    assert command[command.index("--python-version") + 1] == "3.11"
    assert [c for c in command if c.startswith("--platform")] == [
        "--platform=manylinux_2_17_aarch64",
        "--platform=linux_aarch64",
    ]
    assert [c for c in command if c.startswith("--abi")] == ["--abi=cp311", "--abi=abi3", "--abi=none"]
    assert command[-1] == "lz4>=4"


def test_a_wheelhouse_is_used_as_given(tmp_path: Path) -> None:
    for name in (
        "lz4-4.3.3-cp311-cp311-manylinux_2_17_aarch64.whl",
        f"splittracer-{__version__}-py3-none-any.whl",
    ):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.txt").write_text("")
    found = wheels_for(
        ["lz4>=4"], tmp_path / "dl", wheelhouse=tmp_path, tags=TAGS, python="3.11.2", host="pi"
    )
    assert [w.name for w in found] == sorted(p.name for p in tmp_path.glob("*.whl"))
    assert find_wheel(tmp_path) == tmp_path / f"splittracer-{__version__}-py3-none-any.whl"
    assert find_wheel(tmp_path / "nowhere") is None


def test_nothing_missing_downloads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wheels.subprocess, "run", lambda *a, **k: pytest.fail("downloaded"))
    assert wheels_for([], tmp_path, wheelhouse=None, tags=TAGS, python="3.11.2", host="pi") == []


def test_a_failed_download_says_to_pass_wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for lz4>=4")
    monkeypatch.setattr(wheels.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(DeviceError) as caught:
        wheels_for(["lz4>=4"], tmp_path, wheelhouse=None, tags=TAGS, python="3.11.2", host="pi")
    text = caught.value.render()
    assert "lz4>=4" in text and "No matching distribution" in text and "--wheels DIR" in text
