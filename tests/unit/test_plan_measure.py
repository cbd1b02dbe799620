"""What a device measures for its profile: per-layer times, and energy where a sensor reads it."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

import msgspec
import pytest
import torch

from splittracer.controller.profiling import _Session, measure_command
from splittracer.devices.errors import DeviceNotReady
from splittracer.devices.registry import Device
from splittracer.metrics.energy import EnergyProbe, EnergyReader, EnergyReading
from splittracer.plan.measure import (
    ERROR,
    MEASURED,
    MeasuredModel,
    MeasureRequest,
    _joules,
    main,
    measure_loaded,
)
from splittracer.plan.profiles import model_record

TOY = "tests.unit.toy_models:chain_of_opaque"


class TwoWatts(EnergyReader):
    """A RAPL-like counter of a device that draws exactly 2 W: joules = 2 x seconds since opened."""

    source = "fake"

    def __init__(self) -> None:
        self.start = time.perf_counter_ns()

    @property
    def domains(self) -> tuple[str, ...]:
        return ("rapl/package-0", "rapl/package-0/core")

    def read(self) -> list[EnergyReading]:
        now = time.perf_counter_ns()
        joules = 2.0 * (now - self.start) / 1e9
        return [EnergyReading(now, joules, "J", d) for d in self.domains]


def test_energy_per_layer_is_the_sensors_energy_per_call(resnet18_split):
    probe = EnergyProbe((TwoWatts(),))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on a shared 2-core machine stall for milliseconds
    try:
        measured = measure_loaded("torchvision:resnet18", resnet18_split, repeats=5, warmup=1, energy=probe)
    finally:
        torch.set_num_threads(before)
    assert measured.energy_domains == ("rapl/package-0",)  # the core sub-zone is inside the package
    assert measured.energy_note == ""
    # 2 W for one call of a layer: twice its milliseconds. Energy and times come from the same
    # passes of the chain, so the ratio is 1 but for the time between layers (sensor reads, the
    # loop), which the layers' shares carry too; a single layer is a median over few rounds.
    ratios = [(layer.energy_mj or 0.0) / (2 * layer.median_ms) for layer in measured.layers]
    assert 0.75 < statistics.median(ratios) < 1.25, ratios
    # One layer is a median of five rounds: a busy machine can skew a short layer's share
    # twofold, and a layer of microseconds is mostly the sensor reads around it, so only layers of
    # half a millisecond or more are held to it; a unit slip (J for mJ) is off by far more.
    long_layers = [r for r, layer in zip(ratios, measured.layers) if layer.median_ms >= 0.5]
    assert long_layers and all(0.25 < r < 4.0 for r in long_layers), ratios
    record = model_record(measured, resnet18_split)
    assert record.has_energy and record.energy_domains == ("rapl/package-0",)


def test_without_a_sensor_the_profile_says_why(resnet18_split):
    probe = EnergyProbe((), {"rapl": "no intel-rapl zones"})
    measured = measure_loaded("torchvision:resnet18", resnet18_split, repeats=1, warmup=0, energy=probe)
    assert all(layer.energy_mj is None for layer in measured.layers)
    assert "not available" in measured.energy_note and "no intel-rapl zones" in measured.energy_note
    assert not model_record(measured, resnet18_split).has_energy


def test_joules_from_counters_and_from_power():
    counter = [EnergyReading(t * 10**9, 5.0 + 3.0 * t, "J", "rapl/package-0") for t in (0, 1, 2)]
    assert _joules(counter, {"rapl/package-0"}) == pytest.approx(6.0)
    power = [EnergyReading(t * 10**9, w, "W", "jetson/VDD_IN") for t, w in ((0, 1.0), (1, 3.0), (3, 3.0))]
    assert _joules(power, {"jetson/VDD_IN"}) == pytest.approx(2.0 + 6.0)
    assert _joules(counter, {"rapl/package-0", "rapl/dram"}) is None  # a domain never read


def test_the_device_side_entry_point_speaks_the_protocol(capsys):
    request = MeasureRequest(sources=(TOY,), repeats=1, warmup=0, input_shape=(2, 8), energy=False)
    assert main([msgspec.json.encode(request).decode()]) == 0
    lines = capsys.readouterr().out.splitlines()
    measured = [
        msgspec.json.decode(x.removeprefix(MEASURED), type=MeasuredModel)
        for x in lines
        if x.startswith(MEASURED)
    ]
    assert [layer.name for layer in measured[0].layers] == ["a", "b", "c"]
    old = msgspec.json.encode(msgspec.structs.replace(request, version="0.0.1")).decode()
    assert main([old]) == 2
    error = capsys.readouterr().out.strip()
    assert error.startswith(ERROR) and "device setup" in error


def _device() -> Device:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    from splittracer.devices.registry import fingerprint_of

    return Device(name="pi", host="pi.local", host_key=key, fingerprint=fingerprint_of(key))


@pytest.mark.parametrize(
    ("status", "stderr", "message"),
    [
        (127, "no python3 found on PATH", "no Python 3 interpreter"),
        (1, "ModuleNotFoundError: No module named 'torch'", "torch is not installed"),
        (
            1,
            "Error while finding module specification (ModuleNotFoundError: No module named 'splittracer')",
            "no splittracer",
        ),
    ],
)
def test_a_device_without_its_runtime_is_told_to_run_setup(status, stderr, message):
    session = _Session(_device(), MeasureRequest(sources=(TOY,)), lambda *_: None)
    session.stderr.append(stderr)
    with pytest.raises(DeviceNotReady, match=message) as caught:
        session._result(status)
    assert "splittracer device setup pi" in (caught.value.hint or "")


def test_the_remote_command_stops_when_the_session_closes():
    command = measure_command(MeasureRequest(sources=(TOY,)), "/opt/py/bin/python3")
    assert "splittracer.plan.measure" in command and "/opt/py/bin/python3" in command
    assert "kill -TERM" in command and ".splittracer/venv/bin/python" in command


def test_the_measurement_keeps_torchs_cache_in_a_folder_it_removes(tmp_path):
    """torch's compiler caches in the device's temp folder; a measurement leaves nothing there."""
    fake = tmp_path / "python3"  # answers the interpreter check, then writes into the cache folder
    fake.write_text(
        '#!/bin/sh\n[ "$1" = -c ] && exit 0\n'
        'echo "$TORCHINDUCTOR_CACHE_DIR" > "$OUT"; touch "$TORCHINDUCTOR_CACHE_DIR/kernel"\n'
    )
    fake.chmod(0o755)
    temp, out = tmp_path / "tmp", tmp_path / "out"
    temp.mkdir()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "TMPDIR": str(temp), "OUT": str(out)}
    command = measure_command(MeasureRequest(sources=(TOY,)), str(fake))
    shell = subprocess.Popen(["sh", "-c", command], env=env, stdin=subprocess.PIPE)
    try:
        assert shell.wait(timeout=30) == 0
    finally:
        assert shell.stdin is not None
        shell.stdin.close()
    cache = Path(out.read_text().strip())
    assert cache.parent == temp  # its own folder, in the temp folder ...
    assert list(temp.iterdir()) == []  # ... and gone with what was written in it
