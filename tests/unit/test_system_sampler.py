"""The system sampler: real numbers for this process, bounded, stoppable, nothing made up."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import psutil
import pytest

from splittracer.metrics.energy import RaplReader
from splittracer.metrics.spans import Metric
from splittracer.metrics.system import SYSTEM_METRICS, SystemSampler, read_temperatures

CORES = psutil.cpu_count() or 1


def burn(seconds: float) -> None:
    """Keep this thread on a core for ``seconds``."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def by_name(samples: list[Metric], name: str) -> list[Metric]:
    return [s for s in samples if s.name == name]


def fake_thermal(root: Path) -> None:
    for zone, kind, millideg in [(0, "x86_pkg_temp", 45000), (1, "acpitz", 27800)]:
        path = root / f"sys/class/thermal/thermal_zone{zone}"
        path.mkdir(parents=True)
        (path / "type").write_text(kind + "\n")
        (path / "temp").write_text(f"{millideg}\n")
    (root / "sys/class/thermal/cooling_device0").mkdir()


def test_samples_real_cpu_and_memory_of_this_process(tmp_path: Path) -> None:
    before = time.perf_counter_ns()
    samples: list[Metric] = []
    with SystemSampler("run", "phone", interval_s=0.05, root=tmp_path) as sampler:
        # Burn for 0.6 s, longer while the machine is so busy that the sampler woke fewer than
        # five times (bounded: a sampler that never samples still fails below).
        deadline = time.perf_counter() + 10.0
        while time.perf_counter() < deadline:
            burn(0.1)
            samples += sampler.drain()
            enough = len(by_name(samples, "cpu_process_percent")) >= 5
            if enough and time.perf_counter_ns() - before >= 0.6e9:
                break
    after = time.perf_counter_ns()
    samples += sampler.drain()
    assert {s.run_id for s in samples} == {"run"} and {s.participant for s in samples} == {"phone"}
    cpu = [s.value for s in by_name(samples, "cpu_process_percent")]
    assert len(cpu) >= 5
    assert all(0.0 <= v <= 100.0 * CORES + 5 for v in cpu)
    assert max(cpu) > 30.0  # this thread kept a core busy
    assert all(0.0 <= s.value <= 100.0 for s in by_name(samples, "cpu_system_percent"))
    rss = psutil.Process().memory_info().rss
    assert all(0.3 * rss < s.value < 3 * rss for s in by_name(samples, "rss_bytes"))
    times = [s.time_ns for s in by_name(samples, "rss_bytes")]
    assert times == sorted(times) and before <= times[0] and times[-1] <= after
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.02e9 < sorted(gaps)[len(gaps) // 2] < 0.2e9  # about the interval asked for
    assert {s.name for s in samples} <= set(SYSTEM_METRICS)


def test_stops_when_asked_and_takes_no_more_samples(tmp_path: Path) -> None:
    sampler = SystemSampler("run", "phone", interval_s=0.02, root=tmp_path).start()
    time.sleep(0.15)
    assert sampler.running
    sampler.stop()
    assert not sampler.running
    sampler.drain()
    time.sleep(0.1)
    assert sampler.drain() == []
    sampler.stop()  # twice is fine


def test_stop_does_not_wait_for_a_long_interval(tmp_path: Path) -> None:
    sampler = SystemSampler("run", "phone", interval_s=60.0, root=tmp_path).start()
    started = time.monotonic()
    sampler.stop()
    assert time.monotonic() - started < 1.0 and not sampler.running


def test_callback_gets_each_round_and_nothing_is_buffered(tmp_path: Path) -> None:
    rounds: list[list[Metric]] = []
    got = threading.Event()

    def take(samples: list[Metric]) -> None:
        rounds.append(samples)
        if len(rounds) >= 3:
            got.set()

    with SystemSampler("run", "cloud", interval_s=0.02, on_samples=take, root=tmp_path) as sampler:
        assert got.wait(5.0)
    assert all(r and {s.name for s in r} >= {"cpu_process_percent", "rss_bytes"} for r in rounds)
    assert sampler.drain() == []


def test_buffer_is_bounded_and_counts_what_it_dropped(tmp_path: Path) -> None:
    with SystemSampler("run", "phone", interval_s=0.01, max_buffered=5, root=tmp_path) as sampler:
        time.sleep(0.2)
    assert len(sampler.drain()) == 5
    assert sampler.dropped > 0


def test_temperatures_from_a_fake_thermal_tree(tmp_path: Path) -> None:
    fake_thermal(tmp_path)
    assert read_temperatures(tmp_path) == {"x86_pkg_temp/thermal_zone0": 45.0, "acpitz/thermal_zone1": 27.8}
    sampler = SystemSampler("run", "phone", root=tmp_path)
    sampler.start()
    sampler.stop()
    temps = by_name(sampler.sample(), "temperature_c")
    assert {(t.attrs["sensor"], t.value) for t in temps} == {
        ("x86_pkg_temp/thermal_zone0", 45.0),
        ("acpitz/thermal_zone1", 27.8),
    }


def test_no_sensor_means_no_temperature_sample(tmp_path: Path) -> None:
    (tmp_path / "sys/class/thermal/thermal_zone0").mkdir(parents=True)  # a zone with no reading
    sampler = SystemSampler("run", "phone", root=tmp_path)
    assert read_temperatures(tmp_path) == {}
    assert by_name(sampler.sample(), "temperature_c") == []


def test_energy_readers_are_sampled_too(tmp_path: Path) -> None:
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("100\n")
    (zone / "max_energy_range_uj").write_text("1000000\n")
    sampler = SystemSampler("run", "phone", energy_readers=[RaplReader(tmp_path)], root=tmp_path)
    sampler.sample()
    (zone / "energy_uj").write_text("600100\n")
    (energy,) = by_name(sampler.sample(), "energy_j")
    assert energy.value == pytest.approx(0.6) and energy.attrs == {"domain": "rapl/package-0"}


def test_watched_process_that_ends_stops_the_sampler(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    sampler = SystemSampler("run", "phone", pid=child.pid, interval_s=0.02, root=tmp_path).start()
    child.wait(10)
    deadline = time.monotonic() + 5
    while sampler.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sampler.running
    assert isinstance(sampler.error, psutil.NoSuchProcess)
    assert by_name(sampler.drain(), "rss_bytes")  # what it saw while the child lived is kept


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval_s"):
        SystemSampler("run", "phone", interval_s=0)
    with pytest.raises(ValueError, match="max_buffered"):
        SystemSampler("run", "phone", max_buffered=0)


def test_a_recent_frequency_reading_is_reused_and_an_old_one_read_again(monkeypatch) -> None:
    """Compute spans take the sampler's last reading: parsing /proc/cpuinfo on every frame cost
    up to 0.25 ms that no span accounted for."""
    from splittracer.metrics import system

    readings = iter([1200.0, 2400.0, 0.0])
    calls = []

    def fake_freq() -> object:
        calls.append(1)
        return types.SimpleNamespace(current=next(readings), min=0.0, max=0.0)

    monkeypatch.setattr(system.psutil, "cpu_freq", fake_freq)
    monkeypatch.setattr(system, "_latest_freq", (-float("inf"), None))
    assert system.recent_cpu_freq_mhz(10.0) == 1200.0  # nothing read yet: read now
    assert system.recent_cpu_freq_mhz(10.0) == 1200.0 and len(calls) == 1  # fresh: reused
    assert system.recent_cpu_freq_mhz(0.0) == 2400.0 and len(calls) == 2  # too old: read again
    assert system.cpu_freq_mhz() is None  # 0 is "unknown" (virtual machines) ...
    assert system.recent_cpu_freq_mhz(10.0) is None and len(calls) == 3  # ... and remembered as such
