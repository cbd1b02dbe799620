"""Energy where the hardware tells it: RAPL, Jetson INA3221 rails, NVIDIA GPUs.

Three readers behind one small interface (:class:`EnergyReader`):

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
:func:`probe_energy` says what exists and, for what does not, why: where
there is no sensor the answer is "not available", never a constant.
:func:`attribute_energy` integrates the readings over compute spans to give
energy per inference and per layer.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .spans import Metric, Span

__all__ = [
    "ENERGY_METRICS",
    "NOT_AVAILABLE",
    "EnergyAttribution",
    "EnergyProbe",
    "EnergyReader",
    "EnergyReading",
    "JetsonReader",
    "NvmlReader",
    "RaplReader",
    "SpanEnergy",
    "attribute_energy",
    "attribute_run_energy",
    "detect_energy_readers",
    "energy_to_power",
    "probe_energy",
    "readings_from_metrics",
    "readings_to_metrics",
]

NOT_AVAILABLE = "not available"
EnergyUnit = Literal["J", "W"]
# Metric names the readings are stored under: cumulative joules, or watts.
ENERGY_METRICS: dict[EnergyUnit, str] = {"J": "energy_j", "W": "power_w"}
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


# -- detection ------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyProbe:
    """The energy readers found under a root, and why the others are not available."""

    readers: tuple[EnergyReader, ...]
    missing: Mapping[str, str] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        """Whether any domain can be measured."""
        return any(r.domains for r in self.readers)

    @property
    def domains(self) -> tuple[str, ...]:
        """Every measurable domain."""
        return tuple(d for r in self.readers for d in r.domains)

    def describe(self) -> str:
        """One line for people: the domains, or 'not available' and why."""
        if not self.available:
            reasons = "; ".join(f"{source}: {why}" for source, why in self.missing.items())
            return f"energy {NOT_AVAILABLE}" + (f" ({reasons})" if reasons else "")
        return "energy from " + ", ".join(self.domains)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready facts for a run's metadata."""
        return {"available": self.available, "domains": list(self.domains), "missing": dict(self.missing)}


def probe_energy(root: str | Path = "/", *, clock: Clock = time.perf_counter_ns) -> EnergyProbe:
    """Every energy reader that has something to read under ``root``.

    NVML is only asked on the real root: a fake sysfs tree cannot hold a GPU.
    """
    readers: list[EnergyReader] = []
    missing: dict[str, str] = {}
    rapl = RaplReader(root, clock=clock)
    if rapl.domains:
        readers.append(rapl)
    else:
        missing["rapl"] = "; ".join(rapl.problems) or "no intel-rapl zones in sys/class/powercap"
    jetson = JetsonReader(root, clock=clock)
    if jetson.domains:
        readers.append(jetson)
    else:
        missing["jetson"] = "no INA3221 rails in sys/bus/i2c/drivers/ina3221 or ina3221x"
    nvml, why = _probe_nvml(Path(root), clock)
    if nvml is not None:
        readers.append(nvml)
    else:
        missing["nvml"] = why
    return EnergyProbe(tuple(readers), missing)


def _probe_nvml(root: Path, clock: Clock) -> tuple[NvmlReader | None, str]:
    if root.resolve() != Path("/"):
        return None, "NVML is only read on the real root, not under a fake tree"
    try:
        import pynvml
    except ImportError:
        return None, "pynvml is not installed (pip install nvidia-ml-py)"
    try:
        reader = NvmlReader(pynvml, clock=clock)
    except Exception as exc:  # NVMLError: no driver, no library, no permission
        return None, f"NVML could not start: {exc}"
    if not reader.domains:
        reader.close()
        return None, "NVML sees no GPU"
    return reader, ""


def detect_energy_readers(root: str | Path = "/") -> list[EnergyReader]:
    """The energy readers that exist under ``root``; empty when there is no sensor."""
    return list(probe_energy(root).readers)


# -- readings as metrics ----------------------------------------------------------


def readings_to_metrics(run_id: str, participant: str, readings: Iterable[EnergyReading]) -> list[Metric]:
    """Readings as metric samples (``energy_j`` or ``power_w``, ``attrs['domain']``)."""
    return [
        Metric(
            run_id=run_id,
            participant=participant,
            name=ENERGY_METRICS[r.unit],
            value=r.value,
            time_ns=r.time_ns,
            attrs={"domain": r.domain},
        )
        for r in readings
    ]


def readings_from_metrics(metrics: Iterable[Metric]) -> dict[str, list[EnergyReading]]:
    """Energy readings stored as metrics, by participant, in time order."""
    units = {name: unit for unit, name in ENERGY_METRICS.items()}
    found: defaultdict[str, list[EnergyReading]] = defaultdict(list)
    for m in metrics:
        unit = units.get(m.name)
        if unit is not None:
            domain = str(m.attrs.get("domain", m.name))
            found[m.participant].append(EnergyReading(m.time_ns, m.value, unit, domain))
    return {p: sorted(rs, key=lambda r: r.time_ns) for p, rs in found.items()}


def energy_to_power(readings: Iterable[EnergyReading]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Power per domain as (times in ns, watts); cumulative joules are differenced.

    A counter's power between two readings is put at their midpoint.
    """
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (domain, unit), (times, values) in _series(readings).items():
        if unit == "W":
            series[domain] = (times, values)
        elif len(times) >= 2:
            dt = np.diff(times) / 1e9
            ok = dt > 0
            mid = (times[:-1] + np.diff(times) / 2)[ok]
            series[domain] = (mid, (np.diff(values)[ok] / dt[ok]))
    return series


def _series(readings: Iterable[EnergyReading]) -> dict[tuple[str, EnergyUnit], tuple[np.ndarray, np.ndarray]]:
    grouped: defaultdict[tuple[str, EnergyUnit], list[tuple[int, float]]] = defaultdict(list)
    for r in readings:
        grouped[r.domain, r.unit].append((r.time_ns, r.value))
    series = {}
    for key, points in grouped.items():
        points.sort()
        times = np.array([t for t, _ in points], dtype=np.float64)
        series[key] = (times, np.array([v for _, v in points], dtype=np.float64))
    return series


# -- attribution ----------------------------------------------------------------


@dataclass(frozen=True)
class SpanEnergy:
    """Energy one domain used during one compute span."""

    span: Span
    domain: str
    joules: float

    @property
    def watts(self) -> float:
        """Mean power over the span."""
        seconds = (self.span.end_ns - self.span.start_ns) / 1e9
        return self.joules / seconds if seconds > 0 else float("nan")


@dataclass(frozen=True)
class EnergyAttribution:
    """Energy of compute spans, per domain; spans outside the sampled time are counted, not guessed."""

    spans: tuple[SpanEnergy, ...]
    unattributed: int

    def per_inference(self) -> dict[tuple[int, int], dict[str, float]]:
        """Joules per ``(split, inference)`` and domain: the sum over its compute spans.

        Warm-up inferences are left out, as in the latency summary.
        """
        totals: defaultdict[tuple[int, int], defaultdict[str, float]]
        totals = defaultdict(lambda: defaultdict(float))
        for e in self._measured():
            if e.span.inference >= 0:
                totals[e.span.split, e.span.inference][e.domain] += e.joules
        return {key: dict(by_domain) for key, by_domain in sorted(totals.items())}

    def per_layer(self) -> dict[tuple[int, int], dict[str, float]]:
        """Median joules per layer range ``(start_layer, end_layer)`` and domain.

        A range ``(k - 1, k)`` is layer ``k`` alone; longer ranges are the parts
        a run computed in one go.
        """
        values: defaultdict[tuple[int, int], defaultdict[str, list[float]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for e in self._measured():
            if 0 <= e.span.start_layer < e.span.end_layer:
                values[e.span.start_layer, e.span.end_layer][e.domain].append(e.joules)
        return {
            key: {d: float(np.median(js)) for d, js in by_domain.items()}
            for key, by_domain in sorted(values.items())
        }

    def _measured(self) -> list[SpanEnergy]:
        return [e for e in self.spans if e.span.attrs.get("warmup") is not True]


def attribute_energy(readings: Iterable[EnergyReading], spans: Iterable[Span]) -> EnergyAttribution:
    """Integrate each domain's readings over every ``compute`` span.

    Readings and spans must come from the same device and clock: pass one
    participant's spans with its own readings (:func:`attribute_run_energy`
    does the grouping). Power is integrated with the trapezoid rule over
    the readings, interpolated linearly at the span's ends; a cumulative
    counter is interpolated directly. A span not wholly inside a domain's
    readings gets no energy from it and is counted in ``unattributed``.
    """
    series = _series(readings)
    computes = [s for s in spans if s.kind == "compute"]
    found: list[SpanEnergy] = []
    missed = 0
    for (domain, unit), (times, values) in series.items():
        cumulative = values if unit == "J" else _cumulative_joules(times, values)
        for span in computes:
            joules = _between(times, cumulative, values if unit == "W" else None, span)
            if joules is None:
                missed += 1
            else:
                found.append(SpanEnergy(span, domain, joules))
    return EnergyAttribution(tuple(found), missed)


def attribute_run_energy(metrics: Iterable[Metric], spans: Iterable[Span]) -> EnergyAttribution:
    """:func:`attribute_energy` for a whole run: each participant's readings over its own spans.

    Domains are prefixed with the participant (``phone: rapl/package-0``).
    """
    by_participant: defaultdict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_participant[span.participant].append(span)
    found: list[SpanEnergy] = []
    missed = 0
    for participant, readings in readings_from_metrics(metrics).items():
        named = [EnergyReading(r.time_ns, r.value, r.unit, f"{participant}: {r.domain}") for r in readings]
        part = attribute_energy(named, by_participant.get(participant, []))
        found.extend(part.spans)
        missed += part.unattributed
    return EnergyAttribution(tuple(found), missed)


def _cumulative_joules(times: np.ndarray, watts: np.ndarray) -> np.ndarray:
    steps = np.diff(times) / 1e9 * (watts[1:] + watts[:-1]) / 2
    return np.concatenate(([0.0], np.cumsum(steps)))


def _between(times: np.ndarray, cumulative: np.ndarray, watts: np.ndarray | None, span: Span) -> float | None:
    start, end = float(span.start_ns), float(span.end_ns)
    if len(times) < 2 or start < times[0] or end > times[-1] or end < start:
        return None
    return _energy_at(times, cumulative, watts, end) - _energy_at(times, cumulative, watts, start)


def _energy_at(times: np.ndarray, cumulative: np.ndarray, watts: np.ndarray | None, t: float) -> float:
    """Cumulative joules at ``t``: exact under linear power between readings."""
    if watts is None:
        return float(np.interp(t, times, cumulative))
    i = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2))
    t0, t1 = times[i], times[i + 1]
    p0 = watts[i]
    p_t = p0 + (watts[i + 1] - p0) * (t - t0) / (t1 - t0) if t1 > t0 else p0
    return float(cumulative[i] + (t - t0) / 1e9 * (p0 + p_t) / 2)
