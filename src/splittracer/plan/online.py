"""Planning during a run: ``split: auto`` and ``split: adaptive`` of the built-in ``Infer`` task.

The controller turns the manifest's device profiles into per-layer costs
and hands them to the first participant as :class:`PlannerInputs` (the
profiles never leave the controller). The first participant knows the
model's split points, fills in the bandwidth of every hop that was neither
emulated nor given by measuring it (:func:`fit_link` over a short probe),
and plans with :func:`~splittracer.plan.chain.plan_chain`, the same search
``splittracer plan`` runs.

``adaptive`` keeps, per hop, an exponentially weighted moving average of
the logarithm of the rate each inference's transfer achieved
(:class:`AdaptivePlanner`): a geometric mean, so a halving and a doubling
weigh alike, and one transfer ``x`` times off moves the estimate by
``x ** alpha`` (with the default 0.3, a single 2x outlier stays under the
default 25 % threshold). It re-plans when some hop's estimate differs from
the bandwidth the current plan assumed by more than ``threshold``
(relative), and the new plan's bandwidths become the reference.

With ``max_accuracy_drop`` the first hop's codec is planned with the cuts:
every (split, codec) a profile run measured within the budget is predicted
again for its bytes (:func:`~splittracer.plan.codecs.plan_codecs`, as
``splittracer plan --max-accuracy-drop`` does) and the fastest is used,
re-chosen at every re-plan.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from ..errors import RunError
from .chain import ChainEstimate, FirstDeviceEnergy, Link, plan_chain
from .codecs import CodecQuality, plan_codecs
from .energy import parse_tx_power

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_THRESHOLD",
    "MODES",
    "AdaptivePlanner",
    "LinkFit",
    "PlannerInputs",
    "decode_inputs",
    "encode_inputs",
    "fit_link",
]

MODES = ("auto", "adaptive")
"""The words ``split:`` (and ``cuts:``) accept besides split points."""

DEFAULT_THRESHOLD = 0.25
"""Re-plan when a hop's estimate is more than 25 % above or below the planned bandwidth."""

DEFAULT_ALPHA = 0.3
"""Weight of the newest transfer in the moving average: a step change of the link is
followed within 25 % after 4 inferences for 2x, 10 for 1000x."""

MEASURE = 0.0
"""A hop bandwidth of 0 in :class:`PlannerInputs`: measure it at run start."""


class PlannerInputs(msgspec.Struct, frozen=True):
    """What the first participant needs to plan: one entry per device or per hop, in route order.

    ``costs[d][i]`` is layer ``i+1``'s milliseconds on device ``d`` (from
    profile ``devices[d]``); ``bandwidths_bps[h]`` is hop ``h``'s rate or
    :data:`MEASURE`, and ``sources[h]`` says where it came from (``uplink``,
    ``given`` or ``measure``); reply hops bring the output back.
    """

    devices: list[str]
    methods: list[str]
    costs: list[list[float]]
    bandwidths_bps: list[float]
    sources: list[str]
    latencies_s: list[float]
    reply_bps: list[float]
    reply_latencies_s: list[float]
    threshold: float = DEFAULT_THRESHOLD
    objective: str = "latency"
    energy_mj: list[float] = []  # the first device's per layer, for the energy objective
    tx_power: str = ""  # its radio: watts or 3g/lte/wifi, priced at the first hop's current rate
    # Codecs for the first hop, chosen with the cuts (``max_accuracy_drop``): what a profile run
    # measured of each, as (split, codec, bytes relative to none, accuracy drop); no codec when empty.
    codec_qualities: list[tuple[int, str, float, float]] = []
    max_drop: float = 0.0

    @property
    def hops(self) -> int:
        """Links between consecutive devices."""
        return len(self.bandwidths_bps)

    def links(self, bandwidths_bps: Sequence[float]) -> list[Link]:
        """Forward links with ``bandwidths_bps`` and this route's latencies."""
        return [Link(b, lat) for b, lat in zip(bandwidths_bps, self.latencies_s)]

    def reply_links(self) -> list[Link]:
        """The links the output travels back over, one per hop."""
        return [Link(b, lat) for b, lat in zip(self.reply_bps, self.reply_latencies_s)]


_ENCODER = msgspec.msgpack.Encoder()


def encode_inputs(inputs: PlannerInputs) -> bytes:
    """``inputs`` as the bytes the ``Infer`` task carries."""
    return _ENCODER.encode(inputs)


def decode_inputs(data: bytes) -> PlannerInputs:
    """The inputs an ``Infer`` task carries; RunError when it carries none."""
    if not data:
        raise RunError(
            "this Infer task asks for a planned split but carries no planner inputs",
            hint="Run it from a manifest (the controller reads the participants' profiles), "
            "or give a split point.",
        )
    return msgspec.msgpack.decode(data, type=PlannerInputs)


@dataclass(frozen=True)
class LinkFit:
    """A link measured by probing: rate in bit/s and the fixed cost of one message in seconds."""

    bandwidth_bps: float
    overhead_s: float
    samples: int


def fit_link(samples: Sequence[tuple[int, float]]) -> LinkFit:
    """Fit ``seconds = overhead + 8 * bytes / bandwidth`` to (bytes, seconds) probe samples.

    When the times do not grow with size (a link faster than the probe can
    tell), the fastest observed throughput is returned: a lower bound.
    """
    if len(samples) < 2 or len({n for n, _ in samples}) < 2:
        raise RunError("a link fit needs probes of at least two sizes")
    import numpy as np  # here: the controller imports this module for its constants

    bits = np.array([8.0 * n for n, _ in samples])
    seconds = np.array([s for _, s in samples])
    slope, intercept = np.polyfit(bits, seconds, 1)
    if slope <= 0:
        return LinkFit(float(np.max(bits / seconds)), float(max(np.min(seconds), 0.0)), len(samples))
    return LinkFit(float(1.0 / slope), float(max(intercept, 0.0)), len(samples))


class AdaptivePlanner:
    """Cuts for a route, re-planned when the measured bandwidth moves (see the module docstring).

    ``split_bytes[k]`` is what cut ``k`` sends and ``allowed[k]`` whether it
    may be used; ``bandwidths_bps`` are the hops' starting rates.
    """

    def __init__(
        self,
        inputs: PlannerInputs,
        split_bytes: Sequence[int],
        allowed: Sequence[bool],
        bandwidths_bps: Sequence[float],
        *,
        alpha: float = DEFAULT_ALPHA,
    ) -> None:
        if len(inputs.costs) != inputs.hops + 1 or any(len(c) != len(split_bytes) - 1 for c in inputs.costs):
            raise RunError(
                f"the planner's costs describe a model of {len(inputs.costs[0])} layers "
                f"but this participant's model has {len(split_bytes) - 1}",
                hint="Keep the manifest's model, input shape and granularity as the controller read them.",
            )
        self.inputs, self.alpha = inputs, alpha
        self._split_bytes, self._allowed = list(split_bytes), list(allowed)
        self._log_bps = [_log_rate(b) for b in bandwidths_bps]
        self.planned_bps: tuple[float, ...] = tuple(bandwidths_bps)
        self.codec: str | None = None  # the first hop's, when the codec is planned too
        self.best = self._plan(self.planned_bps)

    @property
    def cuts(self) -> list[int]:
        """The cuts in use: one per hop."""
        return list(self.best.cuts)

    def estimate_bps(self, hop: int) -> float:
        """Current estimate of hop ``hop``'s rate in bit/s."""
        log_bps = self._log_bps[hop]
        return math.inf if log_bps is None else math.exp(log_bps)

    def observe(self, hop: int, nbytes: int, seconds: float) -> None:
        """Fold in one transfer of ``nbytes`` over ``hop`` that took ``seconds`` on the wire."""
        if nbytes <= 0:
            return
        observed = math.log(8.0 * nbytes / max(seconds, 1e-5))  # a sub-10-us transfer says only "fast"
        current = self._log_bps[hop]
        self._log_bps[hop] = observed if current is None else current + self.alpha * (observed - current)

    def moved(self) -> bool:
        """Whether some hop's estimate is more than ``threshold`` away from the planned rate."""
        return any(
            _relative_change(self.estimate_bps(h), planned) > self.inputs.threshold
            for h, planned in enumerate(self.planned_bps)
        )

    def replan(self) -> ChainEstimate | None:
        """Plan again with the current estimates if they :meth:`moved`; the new plan, else None."""
        if not self.moved():
            return None
        self.planned_bps = tuple(self.estimate_bps(h) for h in range(self.inputs.hops))
        self.best = self._plan(self.planned_bps)
        return self.best

    def _plan(self, bandwidths_bps: Sequence[float]) -> ChainEstimate:
        energy = None
        if self.inputs.objective == "energy":
            # A named radio's power depends on its rate: re-priced at every plan.
            radio = parse_tx_power(self.inputs.tx_power, bandwidths_bps[0])
            energy = FirstDeviceEnergy(tuple(self.inputs.energy_mj), radio)
        plan = plan_chain(
            self.inputs.devices,
            self.inputs.costs,
            self._split_bytes,
            self.inputs.links(bandwidths_bps),
            allowed=self._allowed,
            reply_links=self.inputs.reply_links(),
            energy=energy,
            objective="energy" if energy is not None else "latency",
        )
        if not self.inputs.codec_qualities:
            return plan.best
        measured = [CodecQuality(*quality) for quality in self.inputs.codec_qualities]
        choice = plan_codecs(plan.rows, plan.links[0], measured, self.inputs.max_drop)[0]
        self.codec = choice.codec
        row = next(r for r in plan.rows if r.cuts == choice.cuts)
        return dataclasses.replace(
            row,
            transfers_ms=(choice.transfer_ms, *row.transfers_ms[1:]),
            bytes=(choice.bytes, *row.bytes[1:]),
        )


def _log_rate(bps: float) -> float | None:
    """log(bps), or None for an unlimited link (the first measurement replaces it)."""
    if not bps > 0:
        raise RunError(f"a hop's bandwidth must be above zero to plan with, not {bps}")
    return None if math.isinf(bps) else math.log(bps)


def _relative_change(estimate: float, planned: float) -> float:
    if math.isinf(planned):
        return 0.0 if math.isinf(estimate) else math.inf
    return abs(estimate - planned) / planned
