"""What a device measures for its profile: every layer's time and, where it has a sensor, energy.

This runs wherever the model runs: in the controller's process for the
``local`` device, and on a paired device as ``python -m
splittracer.plan.measure REQUEST`` (started over SSH by
:mod:`splittracer.controller.profiling`). Only measurements leave the device; the
layers' features are computed where the profile is stored.

Energy is measured over the very executions that are timed. With a sensor,
the model runs as the same chain of one-layer parts in :data:`ENERGY_ROUNDS`
rounds of at least :data:`ENERGY_WINDOW_S` together, every layer timed as
without one, while the device's energy sensors are read
(:mod:`splittracer.metrics.energy`) between the chain's passes. A sensor
only gives a round's energy, so each layer gets the share of it that its time
is of the round's layer time; divided by the round's passes that is one
sample, and the median of the rounds is the layer's energy per call. A layer
timed in the chain (its weights out of cache after the others ran) and
metered in a loop of its own would be two different executions: on a device
of constant power their ratio was far from its power. Only the domains that
together cover the whole device are summed
(:func:`splittracer.plan.energy.whole_device_domains`). It is the device's
energy while it computes, idle power included: what a battery pays for the
layer. Without a sensor the profile says why, and has no energy.

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
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import SplitTracerError
from ..metrics.energy import NOT_AVAILABLE, EnergyProbe, EnergyReading, probe_energy
from ..split.load import LoadedSplit
from ..version import __version__
from .energy import whole_device_domains

if TYPE_CHECKING:
    from ..split.model import SplitModel
    from ..split.profile import LayerTiming, ModelProfile

__all__ = [
    "ENERGY_ROUNDS",
    "ENERGY_WINDOW_S",
    "PREFIXES",
    "MeasureRequest",
    "MeasuredLayer",
    "MeasuredModel",
    "main",
    "measure_loaded",
    "measure_model",
    "measure_with_energy",
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
    """Time every layer (medians over ``repeats`` after ``warmup``) and, if ``energy`` can,
    measure its energy over the same executions (:func:`measure_with_energy`)."""
    from ..split.profile import profile_layers
    from .graph import granularity_name

    report = None if progress is None else (lambda done, total: progress(source, done, total))
    domains = whole_device_domains(energy.domains) if energy is not None else ()
    note = (
        f"energy {NOT_AVAILABLE}: not asked for" if energy is None else "" if domains else energy.describe()
    )
    if energy is not None and domains:
        timed, joules = measure_with_energy(
            loaded, energy, domains, repeats=repeats, warmup=warmup, progress=report
        )
    else:
        timed = profile_layers(loaded.split, loaded.example, repeats=repeats, warmup=warmup, progress=report)
        joules = [None] * len(timed.layers)
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


def measure_with_energy(
    loaded: LoadedSplit,
    energy: EnergyProbe,
    domains: Sequence[str],
    *,
    repeats: int = 10,
    warmup: int = 2,
    window_s: float = ENERGY_WINDOW_S,
    progress: Callable[[int, int], None] | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> tuple[ModelProfile, list[float | None]]:
    """Every layer's times and millijoules per call, from the same metered passes of the chain.

    At least ``repeats`` passes after ``warmup``, in :data:`ENERGY_ROUNDS` rounds
    that last ``window_s`` together; energy is None for a layer when a reading failed.
    """
    import torch

    from ..split.profile import ModelProfile

    sm, x = loaded.split, loaded.example
    parts = [sm.part(k - 1, k) for k in range(1, sm.num_layers + 1)]
    total = warmup + ENERGY_ROUNDS
    rounds: list[_Round] = []
    with torch.no_grad():
        for done in range(total):
            if done < warmup:
                _timed_pass(parts, x, clock)
                sm.model(x.clone())
            else:
                minimum = -(-repeats // ENERGY_ROUNDS)
                rounds.append(_metered_round(parts, x, energy, set(domains), minimum, window_s, clock))
            if progress:
                progress(done + 1, total)
        forward = [_timed_forward(sm.model, x, clock) for _ in range(max(repeats, 1))]
    timings = _layer_timings(sm, [p for r in rounds for p in r.passes])
    profile = ModelProfile(timings, repeats, warmup, statistics.median(forward) / 1e6)
    return profile, [_energy_per_call(rounds, i) for i in range(len(parts))]


@dataclass(frozen=True)
class _Round:
    """Passes of the chain (each layer's nanoseconds) and the joules the sensors saw meanwhile."""

    passes: list[list[int]]
    joules: float | None

    def millijoules_per_call(self, layer: int) -> float | None:
        """The layer's share of the round's energy by its share of the layers' time, per pass."""
        spent = sum(sum(p) for p in self.passes)
        if self.joules is None or not spent:
            return None
        share = sum(p[layer] for p in self.passes) / spent
        return self.joules * 1000 * share / len(self.passes)


def _metered_round(
    parts: Sequence[Callable[..., Any]],
    x: Any,
    energy: EnergyProbe,
    domains: set[str],
    minimum: int,
    window_s: float,
    clock: Callable[[], int],
) -> _Round:
    """At least ``minimum`` passes and ``window_s / ENERGY_ROUNDS`` seconds of the chain.

    The sensors are read between passes only, so no reading lands inside a timed layer.
    """
    readings = _read(energy, domains)
    passes: list[list[int]] = []
    start = last = clock()
    while len(passes) < minimum or clock() - start < window_s * 1e9 / ENERGY_ROUNDS:
        passes.append(_timed_pass(parts, x, clock))
        if clock() - last >= _SAMPLE_EVERY_NS:
            readings += _read(energy, domains)
            last = clock()
    readings += _read(energy, domains)
    return _Round(passes, _joules(readings, domains))


def _timed_pass(parts: Sequence[Callable[..., Any]], x: Any, clock: Callable[[], int]) -> list[int]:
    """One pass of the chain on a copy of ``x`` (a part may work in place): each layer's ns."""
    values: Any = (x.clone(),)
    stamps = [clock()]
    for part in parts:
        values = part(*values)
        stamps.append(clock())
    return [b - a for a, b in itertools.pairwise(stamps)]


def _timed_forward(model: Callable[..., Any], x: Any, clock: Callable[[], int]) -> int:
    values = x.clone()
    start = clock()
    model(values)
    return clock() - start


def _layer_timings(sm: SplitModel, passes: Sequence[Sequence[int]]) -> list[LayerTiming]:
    from ..split.profile import LayerTiming

    timings = []
    for i, layer in enumerate(sm.layers):
        ms = sorted(p[i] / 1e6 for p in passes)
        p25, _, p75 = statistics.quantiles(ms, n=4) if len(ms) > 1 else (ms[0], ms[0], ms[0])
        out = layer.output.bytes if layer.output else 0
        timings.append(LayerTiming(layer.index, layer.name, layer.type, statistics.median(ms), p25, p75, out))
    return timings


def _energy_per_call(rounds: Sequence[_Round], layer: int) -> float | None:
    """The median over rounds: other work that stalls a round makes it an outlier it leaves out."""
    per_call = [r.millijoules_per_call(layer) for r in rounds]
    if not per_call or any(e is None for e in per_call):
        return None
    return statistics.median(e for e in per_call if e is not None)


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
