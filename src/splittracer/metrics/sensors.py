"""Energy sensors where the hardware has them: RAPL, Jetson INA3221 rails, NVIDIA GPUs.

Three readers behind one small interface (:class:`EnergyReader`), each giving
:class:`EnergyReading` values:

* :class:`RaplReader` — Intel/AMD RAPL through the powercap sysfs tree,
  ``/sys/class/powercap/intel-rapl:N[:M]/{name,energy_uj,max_energy_range_uj}``.
  The counters are cumulative microjoules that wrap at ``max_energy_range_uj``;
  the reader unwraps them into joules since it was opened.
* :class:`JetsonReader` — the INA3221 power monitors of NVIDIA Jetson boards,
  in either of the two sysfs layouts: the mainline hwmon driver
  (``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/in{1,2,3}_{label,input}`` in
  mV and ``curr{1,2,3}_input`` in mA; unconnected channels are labelled
  ``NC``) and the older L4T iio driver
  (``/sys/bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_{0,1,2}`` and
  ``in_power{0,1,2}_input`` in mW). Readings are instantaneous watts.
* :class:`NvmlReader` — NVIDIA GPUs through NVML (the optional ``pynvml``
  module): total energy since the driver loaded (Volta and later), else power.

Every sysfs reader takes a ``root`` so a test can point it at a fake tree.
Which readers exist on a machine, and what the readings mean over a run, is
:mod:`splittracer.metrics.energy`'s concern.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .names import ENERGY_METRICS, EnergyUnit

__all__ = [
    "ENERGY_METRICS",
    "Clock",
    "EnergyReader",
    "EnergyReading",
    "EnergyUnit",
    "JetsonReader",
    "NvmlReader",
    "RaplReader",
]

Clock = Callable[[], int]


@dataclass(frozen=True)
class EnergyReading:
    """One reading of one domain at ``time_ns`` (``time.perf_counter_ns``).

    ``unit`` is ``'J'`` for a cumulative energy counter (joules since the
    reader was opened, never decreasing) or ``'W'`` for instantaneous power.
    ``domain`` names what was measured, e.g. ``rapl/package-0/core``,
    ``jetson/VDD_IN``, ``nvml/0``.
    """

    time_ns: int
    value: float
    unit: EnergyUnit
    domain: str


class EnergyReader(ABC):
    """A source of energy or power readings for a fixed set of domains."""

    source: str = ""

    @property
    @abstractmethod
    def domains(self) -> tuple[str, ...]:
        """The domains every :meth:`read` reports."""

    @abstractmethod
    def read(self) -> list[EnergyReading]:
        """One reading per domain, now; a domain that fails this time is left out."""

    def close(self) -> None:
        """Release what the reader holds (nothing, by default)."""
        return


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _read_number(path: Path) -> int | None:
    text = _read_text(path)
    try:
        return int(text) if text else None
    except ValueError:
        return None


def _unreadable(path: Path) -> str | None:
    """Why ``path`` cannot be read as a number, or None when it can."""
    try:
        int(path.read_text(encoding="utf-8").strip())
    except PermissionError:
        return f"{path} is not readable (permission denied)"
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"{path} cannot be read ({exc})"
    return None


# -- RAPL -----------------------------------------------------------------------

_RAPL_ZONE = re.compile(r"intel-rapl:\d+(:\d+)*")


@dataclass
class _RaplZone:
    domain: str
    energy_file: Path
    max_range_uj: int
    last_uj: int | None = None
    total_uj: int = 0

    def advance(self, raw_uj: int) -> float:
        """Joules since the first read, unwrapping the counter."""
        if self.last_uj is not None:
            delta = raw_uj - self.last_uj
            if delta < 0:  # wrapped past max_energy_range_uj back to 0
                delta += self.max_range_uj
            self.total_uj += delta
        self.last_uj = raw_uj
        return self.total_uj / 1e6


class RaplReader(EnergyReader):
    """Cumulative joules of every readable RAPL zone under ``root``'s powercap tree."""

    source = "rapl"

    def __init__(self, root: str | Path = "/", *, clock: Clock = time.perf_counter_ns) -> None:
        self._zones, self.problems = _rapl_zones(Path(root))
        self._clock = clock

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(z.domain for z in self._zones)

    def read(self) -> list[EnergyReading]:
        readings = []
        for zone in self._zones:
            now = self._clock()
            raw = _read_number(zone.energy_file)
            if raw is not None:
                readings.append(EnergyReading(now, zone.advance(raw), "J", zone.domain))
        return readings


def _rapl_zones(root: Path) -> tuple[list[_RaplZone], list[str]]:
    base = root / "sys/class/powercap"
    # The class directory lists every zone (as symlinks); sub-zones also sit
    # inside their parent. Resolving paths keeps each zone once either way.
    found: dict[Path, Path] = {}
    for path in sorted(base.glob("intel-rapl:*")) + sorted(base.glob("intel-rapl:*/intel-rapl:*")):
        if _RAPL_ZONE.fullmatch(path.name) and path.is_dir():
            found.setdefault(path.resolve(), path)
    zones, problems = [], []
    for path in sorted(found.values(), key=lambda p: p.name):
        problem = _unreadable(path / "energy_uj")
        max_range = _read_number(path / "max_energy_range_uj")
        if problem is None and max_range is None:
            problem = f"{path / 'max_energy_range_uj'} is missing"
        if problem is not None:
            problems.append(problem)
            continue
        assert max_range is not None
        zones.append(_RaplZone(_rapl_domain(base, path), path / "energy_uj", max_range))
    return zones, problems


def _rapl_domain(base: Path, zone: Path) -> str:
    # Sub-zone intel-rapl:0:1 is named after its parent too ("package-0/uncore"),
    # since "core" alone would not say which socket.
    parts = zone.name.split(":")
    names = []
    for i in range(1, len(parts)):
        zone_id = ":".join(parts[: i + 1])
        if zone_id == zone.name:
            places = [zone]
        else:
            places = [base / zone_id, *[p for p in zone.parents if p.name == zone_id]]
        names.append(next((n for n in map(_read_text, (p / "name" for p in places)) if n), zone_id))
    return "rapl/" + "/".join(names)


# -- Jetson INA3221 -------------------------------------------------------------


@dataclass(frozen=True)
class _Rail:
    domain: str
    power_mw: Path | None  # iio layout: power in mW
    voltage_mv: Path | None  # hwmon layout: bus voltage in mV ...
    current_ma: Path | None  # ... times current in mA

    def watts(self) -> float | None:
        if self.power_mw is not None:
            mw = _read_number(self.power_mw)
            return None if mw is None else mw / 1e3
        mv = _read_number(self.voltage_mv) if self.voltage_mv else None
        ma = _read_number(self.current_ma) if self.current_ma else None
        return None if mv is None or ma is None else mv * ma / 1e6


class JetsonReader(EnergyReader):
    """Instantaneous watts of every connected INA3221 rail of a Jetson board."""

    source = "jetson"

    def __init__(self, root: str | Path = "/", *, clock: Clock = time.perf_counter_ns) -> None:
        drivers = Path(root) / "sys/bus/i2c/drivers"
        self._rails = _unique(_hwmon_rails(drivers / "ina3221") + _iio_rails(drivers / "ina3221x"))
        self._clock = clock

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(r.domain for r in self._rails)

    def read(self) -> list[EnergyReading]:
        readings = []
        for rail in self._rails:
            now = self._clock()
            watts = rail.watts()
            if watts is not None:
                readings.append(EnergyReading(now, watts, "W", rail.domain))
        return readings


def _hwmon_rails(driver: Path) -> list[_Rail]:
    rails = []
    for hwmon in sorted(driver.glob("*/hwmon/hwmon*")):
        for channel in (1, 2, 3):
            label = _read_text(hwmon / f"in{channel}_label")
            voltage, current = hwmon / f"in{channel}_input", hwmon / f"curr{channel}_input"
            if label and label != "NC" and voltage.is_file() and current.is_file():
                rails.append(_Rail(f"jetson/{label}", None, voltage, current))
    return rails


def _iio_rails(driver: Path) -> list[_Rail]:
    rails = []
    for device in sorted(driver.glob("*/iio:device*")):
        for channel in (0, 1, 2):
            label = _read_text(device / f"rail_name_{channel}")
            power = device / f"in_power{channel}_input"
            if label is None:
                continue  # channel not connected
            if power.is_file():
                rails.append(_Rail(f"jetson/{label}", power, None, None))
            elif (device / f"in_voltage{channel}_input").is_file():
                voltage = device / f"in_voltage{channel}_input"
                rails.append(_Rail(f"jetson/{label}", None, voltage, device / f"in_current{channel}_input"))
    return rails


def _unique(rails: list[_Rail]) -> list[_Rail]:
    # Boards with two monitors may reuse a label; number the repeats.
    seen: defaultdict[str, int] = defaultdict(int)
    named = []
    for rail in rails:
        seen[rail.domain] += 1
        count = seen[rail.domain]
        named.append(rail if count == 1 else _Rail(f"{rail.domain}#{count}", *_files(rail)))
    return named


def _files(rail: _Rail) -> tuple[Path | None, Path | None, Path | None]:
    return rail.power_mw, rail.voltage_mv, rail.current_ma


# -- NVML -----------------------------------------------------------------------


class NvmlReader(EnergyReader):
    """Every NVIDIA GPU NVML sees: cumulative joules where supported, else watts.

    ``nvml`` is the ``pynvml`` module (imported when not given; tests pass a
    fake). Raises whatever ``nvmlInit`` raises when there is no driver.
    """

    source = "nvml"

    def __init__(self, nvml: Any = None, *, clock: Clock = time.perf_counter_ns) -> None:
        if nvml is None:
            import pynvml

            nvml = pynvml
        self._nvml = nvml
        self._clock = clock
        nvml.nvmlInit()
        self._gpus: list[tuple[str, Any, bool, float]] = []
        for index in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            start_mj = self._energy_mj(handle)
            has_energy = start_mj is not None
            self._gpus.append((f"nvml/{index}", handle, has_energy, start_mj or 0.0))

    def _energy_mj(self, handle: Any) -> float | None:
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # NVMLError_NotSupported before Volta, and kin
            return None

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(domain for domain, *_ in self._gpus)

    def read(self) -> list[EnergyReading]:
        readings = []
        for domain, handle, has_energy, start_mj in self._gpus:
            now = self._clock()
            try:
                if has_energy:
                    joules = (float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(handle)) - start_mj) / 1e3
                    readings.append(EnergyReading(now, joules, "J", domain))
                else:
                    watts = float(self._nvml.nvmlDeviceGetPowerUsage(handle)) / 1e3
                    readings.append(EnergyReading(now, watts, "W", domain))
            except Exception:  # a GPU that fell off the bus: leave it out this time
                continue
        return readings

    def close(self) -> None:
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # already shut down: nothing to release
            return
