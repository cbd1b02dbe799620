"""Property-based fuzzing of the files SplitTracer reads back: the device registry and stored
device profiles. Random and mutated files give a result or SplitTracer's own error (ConfigError
for the registry, SplitTracerError for a profile), never another exception. Examples per
property: ``SPLITTRACER_FUZZ_EXAMPLES`` (see RELIABILITY.md)."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

import asyncssh
import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from splittracer.devices.registry import Device, Registry, fingerprint_of
from splittracer.errors import ConfigError, SplitTracerError
from splittracer.plan.features import UnitFeatures
from splittracer.plan.profiles import DeviceProfile, HostFacts, LayerRecord, ModelRecord, ProfileStore

from .test_fuzz_decoders import FUZZ, YAMLISH, mutated

HOST_KEY = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()


def _registry_text(tmp: Path) -> bytes:
    registry = Registry(tmp / "devices.yaml")
    registry.put(
        Device(
            name="pi4",
            host="192.168.1.20",
            port=22,
            user="pi",
            key=Path("/home/me/.config/splittracer/id_ed25519"),
            host_key=HOST_KEY,
            fingerprint=fingerprint_of(HOST_KEY),
            tags=("arm",),
        )
    )
    return registry.path.read_bytes()


def _profile_bytes() -> bytes:
    unit = UnitFeatures("conv", "Conv2d", macs=10, in_bytes=4, out_bytes=4, param_bytes=8, kernel=(3, 3))
    times = {"median_ms": 1.0, "p25_ms": 0.9, "p75_ms": 1.2}
    layers = tuple(LayerRecord(i, f"l{i}", "Conv2d", **times, units=(unit,)) for i in (1, 2))
    record = ModelRecord(
        source="torchvision:alexnet",
        input_shape=(1, 3, 224, 224),
        granularity="leaf",
        repeats=3,
        warmup=1,
        forward_ms=2.0,
        measured_at="2025-01-01T00:00:00Z",
        layers=layers,
    )
    return msgspec.json.encode(DeviceProfile(name="p", host=HostFacts(cpu_count=2), models=(record,)))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("files")


def _registry_once() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return _registry_text(Path(tmp))


REGISTRY = _registry_once()
PROFILE = _profile_bytes()


@FUZZ
@given(data=st.one_of(YAMLISH.map(str.encode), st.binary(max_size=200), mutated(REGISTRY)))
def test_reading_the_registry_raises_only_config_errors(files: Path, data: bytes) -> None:
    path = files / "devices.yaml"
    path.write_bytes(data)
    with contextlib.suppress(ConfigError):
        for device in Registry(path).devices().values():
            assert device.destination


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), mutated(PROFILE)))
@example(data=PROFILE.replace(b'"2025', b'"\x802025'))  # a string that is not UTF-8
def test_loading_a_profile_raises_only_splittracer_errors(files: Path, data: bytes) -> None:
    store = ProfileStore(files / "profiles")
    store.directory.mkdir(exist_ok=True)
    store.path("p").write_bytes(data)
    with contextlib.suppress(SplitTracerError):
        profile = store.load("p")
        for model in profile.models:
            assert model.spread >= 0 or model.spread < 0  # computed, not raised
            model.unsteady_layers()
            assert model.has_energy in (True, False)
            profile.find(model.source, model.input_shape, model.granularity)
