"""``splittracer profile --device NAME`` against a real sshd on 127.0.0.1.

The "device" is this machine through the loopback sshd fixture: its sessions
find this interpreter first on PATH, so it has torch and splittracer, as a
device set up with ``splittracer device setup`` would.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from splittracer.controller.profiling import profile_device
from splittracer.devices.errors import DeviceNotReady
from splittracer.plan.profiles import DeviceProfile
from splittracer.workspace import init_workspace

from .sshd_fixture import Sshd, ssh_env_fixture, sshd_fixture  # noqa: F401  (fixtures)
from .test_devices_ssh import paired

pytestmark = pytest.mark.slow

MODEL = ["torchvision:resnet18", "--input-shape", "1,3,32,32", "--granularity", "block"]


def splittracer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splittracer", *args], capture_output=True, text=True, timeout=300
    )


def test_profile_a_paired_device(sshd: Sshd, tmp_path: Path):
    paired(sshd)
    ws = init_workspace(tmp_path / "ws")
    made = splittracer(
        "profile",
        "dev1-1t",
        *MODEL,
        "--device",
        "dev1",
        "--threads",
        "1",
        "--repeats",
        "3",
        "-w",
        str(ws.root),
    )
    assert made.returncode == 0, made.stderr
    assert "dev1-1t" in made.stdout and "torchvision:resnet18" in made.stdout
    shown = splittracer("profile", "dev1-1t", "--json", "-w", str(ws.root))
    data = json.loads(shown.stdout)
    assert data["device"] == "dev1" and data["threads"] == 1
    assert data["host"]["hostname"] == platform.node() and data["host"]["torch"]
    (model,) = data["models"]
    assert (
        model["input_shape"] == [1, 3, 32, 32] and model["granularity"] == "block" and model["repeats"] == 3
    )
    names = [layer["name"] for layer in model["layers"]]
    assert names[:2] == ["conv1", "bn1"] and names[-1] == "fc" and len(names) == 14
    assert all(layer["median_ms"] > 0 and layer["units"] for layer in model["layers"])
    conv = model["layers"][0]["units"][0]
    assert conv["kind"] == "conv" and conv["macs"] > 0  # features computed on the controller
    # No energy sensor here: the profile says why instead of holding a guess.
    assert (
        all(layer["energy_mj"] is None for layer in model["layers"])
        and "not available" in model["energy_note"]
    )
    planned = splittracer(
        "plan",
        "torchvision:resnet18",
        "--input-shape",
        "1,3,32,32",
        "--granularity",
        "block",
        "--devices",
        "dev1-1t,dev1-1t",
        "--bandwidth",
        "lte",
        "-w",
        str(ws.root),
    )
    assert planned.returncode == 0, planned.stderr
    energy = splittracer(
        "plan",
        "torchvision:resnet18",
        "--input-shape",
        "1,3,32,32",
        "--granularity",
        "block",
        "--devices",
        "dev1-1t,dev1-1t",
        "--bandwidth",
        "lte",
        "--objective",
        "energy",
        "-w",
        str(ws.root),
    )
    assert energy.returncode == 2 and "holds no energy measurement" in energy.stderr
    assert "not available" in energy.stderr and "Traceback" not in energy.stderr
    assert not (sshd.home / ".splittracer").exists()  # nothing left on the device


def test_profile_device_reports_progress_and_device_facts(sshd: Sshd):
    registry = paired(sshd)
    steps: list[tuple[str, int, int]] = []
    records, host = profile_device(
        registry.get("dev1"),
        ["torchvision:resnet18"],
        threads=1,
        repeats=2,
        warmup=1,
        input_shape=(1, 3, 32, 32),
        granularity="block",
        progress=lambda *step: steps.append(step),
    )
    assert steps[-1] == ("torchvision:resnet18", 3, 3)
    assert host.cpu_count > 0 and records[0].key == ("torchvision:resnet18", (1, 3, 32, 32), "block")
    profile = DeviceProfile(name="p", device="dev1", host=host).with_models(records)
    assert profile.find("torchvision:resnet18", (1, 3, 32, 32), "block") is not None


def test_a_device_without_splittracer_is_told_to_run_setup(sshd: Sshd, tmp_path: Path):
    registry = paired(sshd)
    bare = tmp_path / "bare-python"  # this Python without its site-packages: no splittracer, no torch
    bare.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    bare.chmod(0o755)
    device = registry.get("dev1").model_copy(update={"python": str(bare)})
    with pytest.raises(DeviceNotReady, match="no splittracer") as caught:
        profile_device(device, ["torchvision:resnet18"], repeats=1, input_shape=(1, 3, 32, 32))
    assert "splittracer device setup dev1" in (caught.value.hint or "")


def test_mistakes_are_reported_without_a_traceback(sshd: Sshd, tmp_path: Path):
    registry = paired(sshd)
    ws = init_workspace(tmp_path / "ws")
    unknown = splittracer("profile", "x", *MODEL, "--device", "dev9", "-w", str(ws.root))
    assert unknown.returncode == 2 and "no device named 'dev9'" in unknown.stderr
    bad_model = splittracer("profile", "x", "torchvision:resnet1800", "--device", "dev1", "-w", str(ws.root))
    assert bad_model.returncode == 2 and "resnet1800" in bad_model.stderr
    local = splittracer("profile", "mixed", *MODEL, "--repeats", "1", "-w", str(ws.root))
    assert local.returncode == 0, local.stderr
    mixed = splittracer("profile", "mixed", *MODEL, "--device", "dev1", "--repeats", "1", "-w", str(ws.root))
    assert mixed.returncode == 2 and "measured on device 'local'" in mixed.stderr
    device = registry.get("dev1")
    no_torch = device.facts.model_copy(update={"torch": None}) if device.facts else None
    registry.put(device.model_copy(update={"facts": no_torch}))
    stale = splittracer("profile", "y", *MODEL, "--device", "dev1", "-w", str(ws.root))
    assert stale.returncode == DeviceNotReady.exit_code and "torch is not installed" in stale.stderr
    assert "splittracer device setup dev1" in stale.stderr and "Traceback" not in stale.stderr
    assert all("Traceback" not in r.stderr for r in (unknown, bad_model, mixed))
