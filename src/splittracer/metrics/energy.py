"""Energy over a run: which sensors a machine has, readings as metrics, energy per span.

The sensors themselves (RAPL, Jetson INA3221 rails, NVML) and their reading
type live in :mod:`splittracer.metrics.sensors`; they are re-exported here.
:func:`probe_energy` says what exists and, for what does not, why: where
there is no sensor the answer is "not available", never a constant.
:func:`attribute_energy` integrates the readings over compute spans to give
energy per inference and per layer.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .sensors import (
    ENERGY_METRICS,
    Clock,
    EnergyReader,
    EnergyReading,
    EnergyUnit,
    JetsonReader,
    NvmlReader,
    RaplReader,
)
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
# Metric names the readings are stored under: cumulative joules, or watts.


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
