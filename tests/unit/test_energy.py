"""Energy readers against fake sysfs trees laid out like real ones, and energy attribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from splittracer.metrics.energy import (
    NOT_AVAILABLE,
    EnergyReading,
    JetsonReader,
    NvmlReader,
    RaplReader,
    attribute_energy,
    attribute_run_energy,
    detect_energy_readers,
    energy_to_power,
    probe_energy,
    readings_from_metrics,
    readings_to_metrics,
)
from splittracer.metrics.spans import Span

S = 1_000_000_000  # ns per second


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def fake_rapl(root: Path, max_range: int = 262_143_328_850) -> Path:
    """A one-socket powercap tree as Linux lays it out: zones under devices/, symlinked from class/."""
    zones = root / "sys/devices/virtual/powercap/intel-rapl"
    write(zones / "enabled", "1")  # the control type itself is not a zone
    package = zones / "intel-rapl:0"
    for zone, name in [(package, "package-0"), (package / "intel-rapl:0:0", "core")]:
        write(zone / "name", name)
        write(zone / "energy_uj", "1000000")
        write(zone / "max_energy_range_uj", str(max_range))
        write(zone / "constraint_0_name", "long_term")
    dram = package / "intel-rapl:0:1"
    write(dram / "name", "dram")
    write(dram / "energy_uj", "40")
    write(dram / "max_energy_range_uj", str(max_range))
    links = root / "sys/class/powercap"
    links.mkdir(parents=True)
    (links / "intel-rapl").symlink_to(zones)
    (links / "intel-rapl:0").symlink_to(package)
    (links / "intel-rapl:0:0").symlink_to(package / "intel-rapl:0:0")
    (links / "intel-rapl:0:1").symlink_to(dram)
    return package


def fake_jetson_hwmon(root: Path) -> Path:
    """Mainline ina3221 hwmon driver (JetPack 5+, Orin and Xavier NX)."""
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    channels = [(1, "VDD_IN", 5000, 1200), (2, "VDD_CPU_GPU_CV", 4980, 500), (3, "NC", 0, 0)]
    for channel, label, mv, ma in channels:
        write(hwmon / f"in{channel}_label", label)
        write(hwmon / f"in{channel}_input", str(mv))
        write(hwmon / f"curr{channel}_input", str(ma))
        write(hwmon / f"shunt{channel}_resistor", "5000")
    write(hwmon / "in7_label", "sum of shunt voltages")
    write(hwmon / "in7_input", "900")
    write(hwmon / "name", "ina3221")
    return hwmon


def fake_jetson_iio(root: Path) -> Path:
    """NVIDIA's L4T ina3221x iio driver (Nano, TX2, JetPack 4)."""
    device = root / "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    for channel, name, mw in [(0, "POM_5V_IN", 3456), (1, "POM_5V_GPU", 120)]:
        write(device / f"rail_name_{channel}", name)
        write(device / f"in_power{channel}_input", str(mw))
        write(device / f"in_current{channel}_input", "1")
        write(device / f"in_voltage{channel}_input", "5000")
    write(device / "in_power2_input", "999")  # channel 2 has no rail name: not connected
    return device


class Clock:
    """A settable clock for readers, in ns."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


# -- RAPL ----------------------------------------------------------------------


def test_rapl_finds_each_zone_once_named_after_its_package(tmp_path: Path) -> None:
    fake_rapl(tmp_path)
    reader = RaplReader(tmp_path)
    assert reader.domains == ("rapl/package-0", "rapl/package-0/core", "rapl/package-0/dram")


def test_rapl_reads_joules_since_opened(tmp_path: Path) -> None:
    package = fake_rapl(tmp_path)
    clock = Clock()
    reader = RaplReader(tmp_path, clock=clock)
    first = {r.domain: r for r in reader.read()}
    assert first["rapl/package-0"] == EnergyReading(0, 0.0, "J", "rapl/package-0")
    write(package / "energy_uj", "3500000")
    write(package / "intel-rapl:0:0/energy_uj", "1250000")
    clock.now = S
    second = {r.domain: r for r in reader.read()}
    assert second["rapl/package-0"] == EnergyReading(S, 2.5, "J", "rapl/package-0")
    assert second["rapl/package-0/core"].value == pytest.approx(0.25)
    assert second["rapl/package-0/dram"].value == 0.0


def test_rapl_counter_wrap_around(tmp_path: Path) -> None:
    package = fake_rapl(tmp_path, max_range=10_000_000)
    reader = RaplReader(tmp_path)
    write(package / "energy_uj", "9000000")
    reader.read()
    write(package / "energy_uj", "9500000")
    assert reader.read()[0].value == pytest.approx(0.5)
    write(package / "energy_uj", "1500000")  # wrapped: 0.5 J up to the max, then 1.5 J
    assert reader.read()[0].value == pytest.approx(0.5 + 0.5 + 1.5)
    write(package / "energy_uj", "2000000")
    assert reader.read()[0].value == pytest.approx(3.0)


def test_rapl_nested_only_tree_is_found_too(tmp_path: Path) -> None:
    # Some kernels list sub-zones only inside their parent; no class symlinks.
    zone = tmp_path / "sys/class/powercap/intel-rapl:1"
    write(zone / "name", "package-1")
    write(zone / "energy_uj", "5")
    write(zone / "max_energy_range_uj", "100")
    write(zone / "intel-rapl:1:0/name", "core")
    write(zone / "intel-rapl:1:0/energy_uj", "5")
    write(zone / "intel-rapl:1:0/max_energy_range_uj", "100")
    assert RaplReader(tmp_path).domains == ("rapl/package-1", "rapl/package-1/core")


def test_rapl_zone_that_cannot_be_read_is_reported_not_guessed(tmp_path: Path) -> None:
    package = fake_rapl(tmp_path)
    for zone in (package, package / "intel-rapl:0:0", package / "intel-rapl:0:1"):
        (zone / "energy_uj").unlink()
        (zone / "energy_uj").mkdir()  # a read fails, as for a root-only file
    probe = probe_energy(tmp_path)
    assert not probe.available and probe.readers == ()
    assert "energy_uj cannot be read" in probe.missing["rapl"]


# -- Jetson ----------------------------------------------------------------------


def test_jetson_hwmon_layout_gives_watts_per_connected_rail(tmp_path: Path) -> None:
    fake_jetson_hwmon(tmp_path)
    reader = JetsonReader(tmp_path, clock=lambda: 7)
    assert reader.domains == ("jetson/VDD_IN", "jetson/VDD_CPU_GPU_CV")
    readings = reader.read()
    assert (readings[0].time_ns, readings[0].unit, readings[0].domain) == (7, "W", "jetson/VDD_IN")
    assert readings[0].value == pytest.approx(5.0 * 1.2)
    assert readings[1].value == pytest.approx(4.98 * 0.5)


def test_jetson_iio_layout_gives_watts_per_named_rail(tmp_path: Path) -> None:
    device = fake_jetson_iio(tmp_path)
    reader = JetsonReader(tmp_path)
    assert reader.domains == ("jetson/POM_5V_IN", "jetson/POM_5V_GPU")
    assert [r.value for r in reader.read()] == pytest.approx([3.456, 0.12])
    write(device / "in_power0_input", "4000")
    assert reader.read()[0].value == pytest.approx(4.0)


def test_jetson_value_that_fails_to_read_is_left_out(tmp_path: Path) -> None:
    hwmon = fake_jetson_hwmon(tmp_path)
    (hwmon / "curr1_input").write_text("not a number\n")
    assert [r.domain for r in JetsonReader(tmp_path).read()] == ["jetson/VDD_CPU_GPU_CV"]


def test_detect_finds_rapl_and_jetson_but_not_nvml_under_a_fake_root(tmp_path: Path) -> None:
    fake_rapl(tmp_path)
    fake_jetson_iio(tmp_path)
    probe = probe_energy(tmp_path)
    assert [r.source for r in probe.readers] == ["rapl", "jetson"]
    assert probe.available and "jetson/POM_5V_IN" in probe.domains
    assert list(probe.missing) == ["nvml"]
    assert [type(r) for r in detect_energy_readers(tmp_path)] == [RaplReader, JetsonReader]
    assert probe.describe().startswith("energy from rapl/package-0")


def test_empty_tree_is_not_available_with_reasons(tmp_path: Path) -> None:
    (tmp_path / "sys/class").mkdir(parents=True)
    assert detect_energy_readers(tmp_path) == []
    probe = probe_energy(tmp_path)
    assert not probe.available and probe.domains == ()
    assert set(probe.missing) == {"rapl", "jetson", "nvml"}
    assert probe.describe().startswith(f"energy {NOT_AVAILABLE} (rapl: no intel-rapl zones")
    assert probe.to_dict()["available"] is False


# -- NVML --------------------------------------------------------------------------


class FakeNvml:
    """The few pynvml calls the reader makes (named as pynvml names them); GPU 1 has no energy counter."""

    class NotSupported(Exception):
        pass

    def __init__(self) -> None:
        self.energy_mj = [10_000.0, 0.0]
        self.power_mw = [0.0, 75_500.0]
        self.shut = False

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> float:
        if handle == 1:
            raise self.NotSupported("Not Supported")
        return self.energy_mj[handle]

    def nvmlDeviceGetPowerUsage(self, handle: int) -> float:
        return self.power_mw[handle]


def test_nvml_energy_counter_or_power(tmp_path: Path) -> None:
    nvml: Any = FakeNvml()
    reader = NvmlReader(nvml, clock=lambda: 5)
    assert reader.domains == ("nvml/0", "nvml/1")
    nvml.energy_mj[0] = 12_500.0
    assert reader.read() == [EnergyReading(5, 2.5, "J", "nvml/0"), EnergyReading(5, 75.5, "W", "nvml/1")]
    reader.close()
    assert nvml.shut


def test_nvml_on_this_machine_is_real_or_explicitly_not_available() -> None:
    probe = probe_energy("/")
    nvml = [r for r in probe.readers if r.source == "nvml"]
    if nvml:
        assert all(r.unit in ("J", "W") for r in nvml[0].read())
        for reader in probe.readers:
            reader.close()
    else:
        assert probe.missing["nvml"]


# -- readings as metrics, power ------------------------------------------------------


def test_readings_round_trip_through_metrics() -> None:
    readings = [EnergyReading(2, 1.5, "J", "rapl/package-0"), EnergyReading(1, 3.0, "W", "jetson/VDD_IN")]
    metrics = readings_to_metrics("run", "phone", readings)
    assert [(m.name, m.attrs) for m in metrics] == [
        ("energy_j", {"domain": "rapl/package-0"}),
        ("power_w", {"domain": "jetson/VDD_IN"}),
    ]
    assert readings_from_metrics(metrics) == {"phone": sorted(readings, key=lambda r: r.time_ns)}


def test_energy_counter_becomes_power() -> None:
    counter = [EnergyReading(i * S // 10, 5.0 * i / 10, "J", "pkg") for i in range(5)]
    times, watts = energy_to_power(counter)["pkg"]
    assert list(watts) == pytest.approx([5.0] * 4)
    assert times[0] == pytest.approx(S / 20)


# -- attribution -----------------------------------------------------------------------


def compute(start_s: float, end_s: float, **fields: Any) -> Span:
    return Span(
        run_id="run",
        participant=fields.pop("participant", "phone"),
        stage=0,
        kind=fields.pop("kind", "compute"),
        start_ns=round(start_s * S),
        end_ns=round(end_s * S),
        **fields,
    )


def ramp(domain: str = "jetson/VDD_IN") -> list[EnergyReading]:
    """Power rising linearly, p(t) = 10 t W, sampled every 100 ms for a second."""
    return [EnergyReading(i * S // 10, i * 1.0, "W", domain) for i in range(11)]


def test_power_is_integrated_over_a_span_between_samples() -> None:
    result = attribute_energy(ramp(), [compute(0.25, 0.75, inference=0, split=1)])
    (only,) = result.spans
    assert only.joules == pytest.approx(10 * (0.75**2 - 0.25**2) / 2)  # exact for linear power
    assert only.watts == pytest.approx(5.0)
    assert result.unattributed == 0


def test_energy_counter_is_differenced_over_a_span() -> None:
    counter = [EnergyReading(i * S // 10, 2.0 * i / 10, "J", "rapl/package-0") for i in range(11)]
    (only,) = attribute_energy(counter, [compute(0.2, 0.45)]).spans
    assert only.joules == pytest.approx(0.5)


def test_per_inference_and_per_layer_energy() -> None:
    spans = [
        compute(0.1, 0.2, inference=0, split=2, start_layer=0, end_layer=1),
        compute(0.2, 0.4, inference=0, split=2, start_layer=1, end_layer=2),
        compute(0.5, 0.6, inference=1, split=2, start_layer=0, end_layer=1),
        compute(0.6, 0.8, inference=1, split=2, start_layer=1, end_layer=2),
        compute(0.0, 0.1, inference=2, split=2, start_layer=0, end_layer=1, attrs={"warmup": True}),
        compute(0.3, 0.5, kind="serialize", inference=0, split=2),  # not compute: not attributed
        compute(0.95, 1.5, inference=3, split=2, start_layer=0, end_layer=1),  # beyond the readings
    ]
    result = attribute_energy(ramp(), spans)
    assert result.unattributed == 1
    per_inference = result.per_inference()
    assert list(per_inference) == [(2, 0), (2, 1)]  # the warm-up is left out
    assert per_inference[2, 0]["jetson/VDD_IN"] == pytest.approx(10 * (0.4**2 - 0.1**2) / 2)
    per_layer = result.per_layer()
    assert list(per_layer) == [(0, 1), (1, 2)]
    layer_one = [10 * (0.2**2 - 0.1**2) / 2, 10 * (0.6**2 - 0.5**2) / 2]
    assert per_layer[0, 1]["jetson/VDD_IN"] == pytest.approx(sum(layer_one) / 2)


def test_run_energy_matches_each_participant_with_its_own_readings() -> None:
    metrics = readings_to_metrics("run", "phone", ramp()) + readings_to_metrics(
        "run", "cloud", [EnergyReading(i * S // 10, 100.0, "W", "nvml/0") for i in range(11)]
    )
    spans = [
        compute(0.1, 0.2, inference=0, split=1, participant="phone"),
        compute(0.3, 0.4, inference=0, split=1, participant="cloud"),
    ]
    totals = attribute_run_energy(metrics, spans).per_inference()[1, 0]
    assert totals == pytest.approx({"phone: jetson/VDD_IN": 0.15, "cloud: nvml/0": 10.0})


def test_no_readings_attribute_nothing() -> None:
    result = attribute_energy([], [compute(0.1, 0.2, inference=0, split=1)])
    assert result.spans == () and result.per_inference() == {}


@pytest.mark.skipif(not Path("/sys/class/powercap").exists(), reason="this machine has no powercap tree")
def test_real_powercap_tree_reads_or_says_why() -> None:
    probe = probe_energy("/")
    if "rapl" in probe.missing:
        assert probe.missing["rapl"]
    else:
        assert all(r.value >= 0 for r in next(r for r in probe.readers if r.source == "rapl").read())
    for reader in probe.readers:
        reader.close()
