"""Best cuts of a model over a chain of devices (Neurosurgeon's search, by dynamic programming).

Device ``d`` runs layers ``k[d-1]+1 .. k[d]`` (``k[-1] = 0``, the last
device runs to the end) and sends the tensors live across ``k[d]`` to
device ``d+1``. The predicted latency of cuts ``k`` is::

    sum_d compute_d(k[d-1], k[d]) + sum_d transfer_d(bytes(k[d])) + reply

where ``transfer = 8 bytes / bandwidth + latency`` and ``reply`` brings
the model's output back to the first device, hop by hop, as the built-in
roles do (the same at every cut). Cuts never decrease; equal cuts leave a
device idle but still forward the tensors. For each first cut the rest is
chosen by dynamic programming over (device, cut), in O(devices * L^2).

With the ``energy`` objective the first cut is chosen for the first
device's energy instead (:mod:`splittracer.plan.energy`): its layers'
compute energy plus its radio's transmit energy. The later cuts do not
change it, so each row keeps the fastest later cuts, and equal energies
are settled by latency.

With the ``throughput`` objective (DADS's heavy-load mode) frames stream
through the chain, each device and link working on a different frame, so
a frame leaves every ``cycle`` ms, the slowest of the stages, the links
and the reply: ``max(compute_d, transfer_d, reply)``. With ``clients`` N
identical clients (each with its own device and uplink) sharing the last
device, that device serves N frames per cycle: its time counts N times.
The first cut is chosen for the shortest cycle (ties: least latency); the
later cuts of each row stay the fastest for latency, which is exact with
two devices and an approximation beyond.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import SplitTracerError
from ..units import format_duration, format_rate
from .energy import Objective, RadioPower

__all__ = ["ChainEstimate", "ChainPlan", "FirstDeviceEnergy", "Link", "estimate_cuts", "plan_chain"]


@dataclass(frozen=True)
class Link:
    """One hop: bandwidth in bit/s (``math.inf``: no limit) and one-way latency in seconds."""

    bandwidth_bps: float = math.inf
    latency_s: float = 0.0

    def transfer_ms(self, nbytes: int) -> float:
        """Predicted milliseconds to send ``nbytes`` over this hop."""
        return (8 * nbytes / self.bandwidth_bps + self.latency_s) * 1000

    def describe(self) -> str:
        """``5.85 Mbit/s, 10 ms``."""
        return f"{format_rate(self.bandwidth_bps)}, {format_duration(self.latency_s)}"


@dataclass(frozen=True)
class FirstDeviceEnergy:
    """What the energy of the first device is made of: its layers' millijoules and its radio."""

    layer_mj: tuple[float, ...]
    radio: RadioPower


@dataclass(frozen=True)
class ChainEstimate:
    """Predicted latency of one choice of cuts, per part, and the first device's energy if known."""

    cuts: tuple[int, ...]
    stages_ms: tuple[float, ...]
    transfers_ms: tuple[float, ...]
    bytes: tuple[int, ...]
    reply_ms: float
    compute_energy_mj: float | None = None
    transmit_energy_mj: float | None = None

    @property
    def total_ms(self) -> float:
        """End-to-end predicted latency."""
        return sum(self.stages_ms) + sum(self.transfers_ms) + self.reply_ms

    def cycle_ms(self, clients: int = 1) -> float:
        """The pipeline's slowest stage: how often a frame can leave when frames stream through.

        With ``clients`` sharing the last device, it computes that many frames per cycle.
        """
        return max(*self.stages_ms[:-1], self.stages_ms[-1] * clients, *self.transfers_ms, self.reply_ms)

    def frames_per_s(self, clients: int = 1) -> float:
        """Frames per second through the pipeline, for all ``clients`` together."""
        cycle = self.cycle_ms(clients)
        return math.inf if cycle <= 0 else clients * 1000.0 / cycle

    @property
    def energy_mj(self) -> float | None:
        """The first device's predicted energy (compute + transmit), when energy is known."""
        if self.compute_energy_mj is None or self.transmit_energy_mj is None:
            return None
        return self.compute_energy_mj + self.transmit_energy_mj


@dataclass(frozen=True)
class ChainPlan:
    """One row per allowed first cut (the best later cuts for it) and the best of all."""

    devices: tuple[str, ...]
    links: tuple[Link, ...]
    rows: tuple[ChainEstimate, ...]
    objective: Objective = "latency"
    clients: int = 1  # identical clients sharing the last device (the throughput objective)

    @property
    def best(self) -> ChainEstimate:
        """The cuts best for the objective (the earliest among ties)."""
        return min(self.rows, key=self._score)

    def ranking(self) -> list[ChainEstimate]:
        """Rows from best to worst for the objective."""
        return sorted(self.rows, key=self._score)

    def _score(self, row: ChainEstimate) -> tuple[float, float]:
        if self.objective == "energy":
            return (row.energy_mj if row.energy_mj is not None else math.inf), row.total_ms
        if self.objective == "throughput":
            return row.cycle_ms(self.clients), row.total_ms
        return row.total_ms, 0.0


def plan_chain(
    devices: Sequence[str],
    costs: Sequence[Sequence[float]],
    split_bytes: Sequence[int],
    links: Sequence[Link],
    *,
    allowed: Sequence[bool] | None = None,
    reply_links: Sequence[Link] | None = None,
    energy: FirstDeviceEnergy | None = None,
    objective: Objective = "latency",
    clients: int = 1,
) -> ChainPlan:
    """Plan cuts of an L-layer model over ``len(costs)`` devices in a chain.

    ``costs[d][i]`` is layer ``i+1``'s milliseconds on device ``d``;
    ``split_bytes[k]`` what the cut after layer ``k`` sends; ``links[d]``
    the hop from device ``d`` to ``d+1``; ``reply_links[d]`` the hop from
    device ``d+1`` back to ``d`` (default: no limit). ``energy`` gives every
    row the first device's energy; the ``energy`` objective needs it.
    ``clients``: how many identical clients share the last device, for the
    ``throughput`` objective (see the module's notes).
    """
    count = len(split_bytes) - 1
    _check(devices, costs, links, count)
    _check_energy(energy, objective, count)
    if clients < 1:
        raise SplitTracerError(f"clients must be at least 1, not {clients}")
    ok = list(allowed) if allowed is not None else [True] * (count + 1)
    back = list(reply_links) if reply_links is not None else [Link()] * len(links)
    prefix = [list(itertools.accumulate(c, initial=0.0)) for c in costs]
    reply = sum(link.transfer_ms(split_bytes[count]) for link in back)
    suffix = _suffixes(prefix, split_bytes, links, ok)
    rows = [_row(k, prefix, split_bytes, links, suffix, reply) for k in range(count + 1) if ok[k]]
    if not rows:
        raise SplitTracerError("no split point of this model is allowed, so there is nothing to plan")
    if energy is not None:
        rows = [_with_energy(r, energy, split_bytes, links[0]) for r in rows]
    return ChainPlan(tuple(devices), tuple(links), tuple(rows), objective, clients)


_Suffix = list[list[tuple[float, int]]]  # per device, per start cut: (best cost, next cut)


def _suffixes(
    prefix: list[list[float]], split_bytes: Sequence[int], links: Sequence[Link], ok: list[bool]
) -> _Suffix:
    """best[d][k]: least cost of devices d.. when device d starts after layer k."""
    count, last = len(split_bytes) - 1, len(prefix) - 1
    best: _Suffix = [[(math.inf, -1)] * (count + 1) for _ in prefix]
    best[last] = [(prefix[last][count] - prefix[last][k], count) for k in range(count + 1)]
    for d in range(last - 1, 0, -1):
        for k in range(count + 1):
            best[d][k] = min(
                (
                    (
                        prefix[d][j]
                        - prefix[d][k]
                        + links[d].transfer_ms(split_bytes[j])
                        + best[d + 1][j][0],
                        j,
                    )
                    for j in range(k, count + 1)
                    if ok[j]
                ),
                default=(math.inf, -1),
            )
    return best


def _row(
    k: int,
    prefix: list[list[float]],
    split_bytes: Sequence[int],
    links: Sequence[Link],
    suffix: _Suffix,
    reply: float,
) -> ChainEstimate:
    cuts = [k]
    for d in range(1, len(prefix) - 1):
        cuts.append(suffix[d][cuts[-1]][1])
    return _estimate(cuts, prefix, split_bytes, links, reply)


def estimate_cuts(
    cuts: Sequence[int],
    costs: Sequence[Sequence[float]],
    split_bytes: Sequence[int],
    links: Sequence[Link],
    *,
    reply_links: Sequence[Link] | None = None,
    energy: FirstDeviceEnergy | None = None,
) -> ChainEstimate:
    """The predicted latency of one given choice of cuts (arguments as :func:`plan_chain`)."""
    count = len(split_bytes) - 1
    _check([str(d) for d in range(len(costs))], costs, links, count)
    _check_energy(energy, "latency", count)
    if len(cuts) != len(costs) - 1 or list(cuts) != sorted(cuts) or not all(0 <= k <= count for k in cuts):
        raise SplitTracerError(
            f"cuts {list(cuts)} are not {len(costs) - 1} non-decreasing points in 0..{count}"
        )
    back = list(reply_links) if reply_links is not None else [Link()] * len(links)
    prefix = [list(itertools.accumulate(c, initial=0.0)) for c in costs]
    reply = sum(link.transfer_ms(split_bytes[count]) for link in back)
    row = _estimate(list(cuts), prefix, split_bytes, links, reply)
    return row if energy is None else _with_energy(row, energy, split_bytes, links[0])


def _with_energy(
    row: ChainEstimate, energy: FirstDeviceEnergy, split_bytes: Sequence[int], link: Link
) -> ChainEstimate:
    first = row.cuts[0]
    compute = math.fsum(energy.layer_mj[:first])
    transmit = energy.radio.transmit_mj(split_bytes[first], link.bandwidth_bps)
    return dataclasses.replace(row, compute_energy_mj=compute, transmit_energy_mj=transmit)


def _check_energy(energy: FirstDeviceEnergy | None, objective: Objective, count: int) -> None:
    if objective not in ("latency", "energy", "throughput"):
        raise SplitTracerError(f"unknown objective '{objective}'", hint="Use latency, energy or throughput.")
    if energy is None and objective == "energy":
        raise SplitTracerError("the energy objective needs the first device's per-layer energy")
    if energy is not None and len(energy.layer_mj) != count:
        raise SplitTracerError(f"the first device needs one energy per layer ({count})")


def _estimate(
    cuts: list[int],
    prefix: list[list[float]],
    split_bytes: Sequence[int],
    links: Sequence[Link],
    reply: float,
) -> ChainEstimate:
    bounds = [0, *cuts, len(split_bytes) - 1]
    stages = tuple(p[b] - p[a] for p, (a, b) in zip(prefix, itertools.pairwise(bounds)))
    sizes = tuple(split_bytes[c] for c in cuts)
    transfers = tuple(link.transfer_ms(n) for link, n in zip(links, sizes))
    return ChainEstimate(tuple(cuts), stages, transfers, sizes, reply)


def _check(
    devices: Sequence[str], costs: Sequence[Sequence[float]], links: Sequence[Link], count: int
) -> None:
    if len(costs) < 2 or len(devices) != len(costs):
        raise SplitTracerError(f"a chain needs two or more devices with costs, got {len(costs)}")
    if len(links) != len(costs) - 1:
        raise SplitTracerError(
            f"{len(costs)} devices need {len(costs) - 1} link(s), got {len(links)}",
            hint="Give one --bandwidth (and --latency) for every hop, or one for all.",
        )
    if any(len(c) != count for c in costs):
        raise SplitTracerError(f"every device needs one cost per layer ({count})")
