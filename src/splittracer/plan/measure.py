"""What a device measures for its profile: every layer's time and, where it has a sensor, energy.

This runs wherever the model runs: in the controller's process for the
``local`` device, and on a paired device as ``python -m
splittracer.plan.measure REQUEST`` (started over SSH by
:mod:`splittracer.controller.profiling`). Only measurements leave the device; the
layers' features are computed where the profile is stored.

Energy: after the timings, each layer runs alone in a loop for at least
:data:`ENERGY_WINDOW_S`, in :data:`ENERGY_ROUNDS` rounds, while the
device's energy sensors are read (:mod:`splittracer.metrics.energy`); a
round's energy divided by its calls is one sample and the median of the
rounds is the layer's energy per call. Only the domains that together cover the
whole device are summed (:func:`splittracer.plan.energy.whole_device_domains`).
It is the device's energy while it computes, idle power included: what a
battery pays for the layer. Without a sensor the profile says why, and has
no energy.

The protocol on stdout, one JSON document per line after a prefix:
``SPLITTRACER_HOST=`` (the device), ``SPLITTRACER_PROGRESS=`` (model,
done, total), ``SPLITTRACER_MEASURED=`` (one model), ``SPLITTRACER_ERROR=``
(a SplitTracerError's message and hint; exit status 2).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import SplitTracerError
from ..metrics.energy import NOT_AVAILABLE, EnergyProbe, EnergyReading, probe_energy
from ..split.load import LoadedSplit
from ..version import __version__
from .energy import whole_device_domains

__all__ = [
    "ENERGY_ROUNDS",
    "ENERGY_WINDOW_S",
    "PREFIXES",
    "MeasureRequest",
    "MeasuredLayer",
    "MeasuredModel",
    "main",
    "measure_layer_energy",
    "measure_loaded",
    "measure_model",
]

ENERGY_WINDOW_S = 0.25  # RAPL counters tick every ~1 ms and rails are sampled: a window of many ticks
ENERGY_ROUNDS = 5
_SAMPLE_EVERY_NS = 5_000_000  # power readings during a layer's loop (sysfs reads cost ~10 us)
HOST, PROGRESS, MEASURED, ERROR = (
    "SPLITTRACER_HOST=",
    "SPLITTRACER_PROGRESS=",
    "SPLITTRACER_MEASURED=",
    "SPLITTRACER_ERROR=",
)
PREFIXES = (HOST, PROGRESS, MEASURED, ERROR)

Progress = Callable[[str, int, int], None]


class MeasureRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What the controller asks a device to measure (the argument of ``python -m ...measure``)."""

    sources: tuple[str, ...]
    version: str = __version__
    threads: int | None = None
    repeats: int = 10
    warmup: int = 2
    input_shape: tuple[int, ...] | None = None
    granularity: str = "leaf"
    energy: bool = True


@dataclass(frozen=True)
class MeasuredLayer:
    """One layer's timing quartiles and, when measured, its energy per call."""

    index: int
    name: str
    type: str
    median_ms: float
    p25_ms: float
    p75_ms: float
    energy_mj: float | None = None


@dataclass(frozen=True)
class MeasuredModel:
    """Every layer of one model as a device measured it."""

    source: str
    input_shape: tuple[int, ...]
    granularity: str
    repeats: int
    warmup: int
    forward_ms: float
    layers: tuple[MeasuredLayer, ...]
    energy_domains: tuple[str, ...] = ()
    energy_note: str = ""


def measure_model(
    source: str,
    *,
    repeats: int = 10,
    warmup: int = 2,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "leaf",
    progress: Progress | None = None,
    energy: EnergyProbe | None = None,
) -> MeasuredModel:
    """Load ``source`` here and measure it (see :func:`measure_loaded`)."""
    from ..split.load import load_split_model

    loaded = load_split_model(source, input_shape=input_shape, granularity=granularity)
    return measure_loaded(source, loaded, repeats=repeats, warmup=warmup, progress=progress, energy=energy)


def measure_loaded(
    source: str,
    loaded: LoadedSplit,
    *,
    repeats: int = 10,
    warmup: int = 2,
    progress: Progress | None = None,
    energy: EnergyProbe | None = None,
) -> MeasuredModel:
    """Time every layer (medians over ``repeats`` after ``warmup``), then its energy if ``energy`` can."""
    from ..split.profile import profile_layers
    from .graph import granularity_name

    report = None if progress is None else (lambda done, total: progress(source, done, total))
    timed = profile_layers(loaded.split, loaded.example, repeats=repeats, warmup=warmup, progress=report)
    joules: Sequence[float | None] = [None] * len(timed.layers)
    domains: tuple[str, ...] = ()
    note = f"energy {NOT_AVAILABLE}: not asked for"
    if energy is not None:
        domains = whole_device_domains(energy.domains)
        note = "" if domains else energy.describe()
        if domains:
            joules = measure_layer_energy(loaded, energy, domains, minimum_calls=repeats, progress=progress)
    layers = tuple(
        MeasuredLayer(t.index, t.name, t.type, t.median_ms, t.p25_ms, t.p75_ms, e)
        for t, e in zip(timed.layers, joules)
    )
    return MeasuredModel(
        source=source,
        input_shape=tuple(loaded.spec.input_shape),
        granularity=granularity_name(loaded.split),
        repeats=repeats,
        warmup=warmup,
        forward_ms=timed.forward_median_ms,
        layers=layers,
        energy_domains=domains,
        energy_note=note,
    )


def measure_layer_energy(
    loaded: LoadedSplit,
    energy: EnergyProbe,
    domains: Sequence[str],
    *,
    window_s: float = ENERGY_WINDOW_S,
    minimum_calls: int = 1,
    progress: Progress | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> list[float | None]:
    """Millijoules per call of every layer: each runs alone for ``window_s`` while ``domains`` are read.

    None for a layer whose loop no sensor covered (a reading failed).
    """
    import torch

    sm = loaded.split
    parts = [sm.part(k - 1, k) for k in range(1, sm.num_layers + 1)]
    found: list[float | None] = []
    with torch.no_grad():
        values: Any = (loaded.example,)
        for i, part in enumerate(parts):
            found.append(_layer_energy(part, values, energy, set(domains), window_s, minimum_calls, clock))
            values = part(*values)
            if progress:
                progress(f"{loaded.spec.source} (energy)", i + 1, len(parts))
    return found


def _layer_energy(
    part: Callable[..., Any],
    values: tuple[Any, ...],
    energy: EnergyProbe,
    domains: set[str],
    window_s: float,
    minimum_calls: int,
    clock: Callable[[], int],
) -> float | None:
    """The median over :data:`ENERGY_ROUNDS` rounds of one round's energy per call.

    A sensor only gives the energy of a whole loop, a mean; other work on
    the device that stalls a round makes it an outlier the median leaves out.
    """
    per_call = []
    for _ in range(ENERGY_ROUNDS):
        readings = _read(energy, domains)
        start = last = clock()
        calls = 0
        while calls * ENERGY_ROUNDS < minimum_calls or clock() - start < window_s * 1e9 / ENERGY_ROUNDS:
            part(*values)
            calls += 1
            if clock() - last >= _SAMPLE_EVERY_NS:
                readings += _read(energy, domains)
                last = clock()
        readings += _read(energy, domains)
        joules = _joules(readings, domains)
        if joules is None:
            return None
        per_call.append(joules * 1000 / calls)
    return statistics.median(per_call)


def _read(energy: EnergyProbe, domains: set[str]) -> list[EnergyReading]:
    return [r for reader in energy.readers for r in reader.read() if r.domain in domains]


def _joules(readings: Sequence[EnergyReading], domains: set[str]) -> float | None:
    """Energy over the readings' time span, summed over ``domains``; None if one is missing."""
    series: defaultdict[str, list[EnergyReading]] = defaultdict(list)
    for r in readings:
        series[r.domain].append(r)
    if set(series) != domains or any(len(rs) < 2 for rs in series.values()):
        return None
    total = 0.0
    for rs in series.values():
        if rs[0].unit == "J":
            total += rs[-1].value - rs[0].value  # a cumulative counter: the difference
        else:
            total += sum(
                (b.time_ns - a.time_ns) / 1e9 * (a.value + b.value) / 2 for a, b in itertools.pairwise(rs)
            )
    return total


# -- on the device: python -m splittracer.plan.measure REQUEST ---------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Measure what the request (JSON, the only argument) asks; the protocol above on stdout."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        request = _request(args)
        _emit(HOST, _host())
        for model in run_request(
            request, lambda m, d, t: _emit(PROGRESS, {"model": m, "done": d, "total": t})
        ):
            _emit(MEASURED, model)
    except SplitTracerError as exc:
        _emit(ERROR, {"message": exc.message, "hint": exc.hint})
        return 2
    return 0


def run_request(request: MeasureRequest, progress: Progress | None = None) -> Iterator[MeasuredModel]:
    """Every model of ``request`` in turn, measured with its torch threads (restored afterwards)."""
    import torch

    before = torch.get_num_threads()
    if request.threads:
        torch.set_num_threads(request.threads)
    energy = probe_energy() if request.energy else None
    try:
        for source in request.sources:
            yield measure_model(
                source,
                repeats=request.repeats,
                warmup=request.warmup,
                input_shape=request.input_shape,
                granularity=request.granularity,
                progress=progress,
                energy=energy,
            )
    finally:
        torch.set_num_threads(before)
        for reader in energy.readers if energy else ():
            reader.close()


def _request(args: list[str]) -> MeasureRequest:
    if len(args) != 1:
        raise SplitTracerError("usage: python -m splittracer.plan.measure REQUEST_JSON")
    try:
        request = msgspec.json.decode(args[0], type=MeasureRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise SplitTracerError(f"not a measure request: {exc}") from exc
    if request.version != __version__:
        raise SplitTracerError(
            f"the controller runs splittracer {request.version} but this device has {__version__}",
            hint="Run 'splittracer device setup NAME' to install the controller's version here.",
        )
    return request


def _host() -> Any:
    from .profiles import host_facts

    return host_facts()


def _emit(prefix: str, data: Any) -> None:
    sys.stdout.write(prefix + msgspec.json.encode(data).decode() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
