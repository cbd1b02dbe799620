"""Running a placement in a run: the built-in roles' half of an inference that is not a prefix cut.

A placement (see :mod:`splittracer.split.placement`) puts any set of layers
closed under data dependencies on the first device and the rest on the
second. The head runs its layers, sends every tensor crossing (the input too
where the second device reads it) in one :class:`RunPlaced` task, and the
tail runs the rest; the cut after layer ``k`` is the placement ``1-k``.

Its spans carry it: the ``inference`` span's ``attrs`` hold ``placement``
(the first device's layers as ranges, ``1-5,7``: what the engine reads
back), ``placement_layers`` (the same ranges with the layer names at their
ends, which names the branches), ``placement_bytes`` and
``placement_tensors`` (what crosses); both devices' ``compute`` spans hold
``placement``. The ``split`` tag is the number of layers on the first
device, so a prefix placement is tagged as the split it is.

``split: auto`` with ``dag: true`` places the model by minimum cut
(:func:`splittracer.plan.dag.plan_dag`) on the head, from the same planner
inputs a planned split uses, once the first hop's rate is known.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch

from .errors import RunError
from .plan.chain import Link
from .plan.dag import plan_dag
from .plan.graph import model_graph
from .plan.online import PlannerInputs
from .roles import Context
from .split.model import Placement, SplitModel
from .split.placement import PlacementSpec, named_ranges
from .tasks import Task

__all__ = ["Placed", "RunPlaced", "call_placed", "placed", "plan_placement", "sweep_placements"]

Attrs = Mapping[str, str | int | float | bool]
T = TypeVar("T", bound=Task)


class RunPlaced(Task, priority=5):
    """Run the second device's layers of ``placement`` (the first device's as ``1-5,7``) on ``tensors``."""

    placement: str
    tensors: list[torch.Tensor]


@dataclass(frozen=True)
class Placed:
    """A placement as the head runs it: its label, the ``split`` tag of its spans, their attrs."""

    label: str
    split: int
    attrs: dict[str, str | int | float | bool]


def placed(model: SplitModel, spec: PlacementSpec | Placement) -> Placed:
    """``spec`` checked against ``model`` (SplitError naming the offending layer) and labelled."""
    placement = spec if isinstance(spec, Placement) else model.placement(spec)
    names = [layer.name for layer in model.layers]
    return Placed(
        label=placement.label,
        split=len(placement.first),
        attrs={
            "placement": placement.label,
            "placement_layers": named_ranges(placement.first, names),
            "placement_bytes": placement.bytes,
            "placement_tensors": len(placement.tensors),
        },
    )


def sweep_placements(
    model: SplitModel, specs: Sequence[PlacementSpec], route: Sequence[str], splits_given: bool
) -> list[list[int] | Placed]:
    """A sweep's placements, checked against ``model``; empty when it sweeps splits."""
    if not specs:
        return []
    if splits_given:
        raise RunError("Sweep gives placements and splits (or cuts): give one of them")
    _check_two(route)
    return [placed(model, spec) for spec in specs]


def call_placed(
    ctx: Context,
    index: int,
    where: Placed,
    route: Sequence[str],
    expect: type[T],
    *,
    warmup: bool,
    attrs: Attrs | None = None,
) -> tuple[float, T]:
    """One inference of a placement: the first device's layers here, the rest on ``route[0]``.

    The seconds the call took and its reply, which must be an ``expect``.
    """
    _check_two(route)
    x = ctx.example(index)  # made before the clock starts: inputs exist before inference
    with ctx.inference(index, split=where.split, warmup=warmup, attrs={**(attrs or {}), **where.attrs}):
        sent = ctx.run_placed(where.label, 0, x)
        called = time.perf_counter()
        reply = ctx.call(route[0], RunPlaced(placement=where.label, tensors=list(sent)))
        took = time.perf_counter() - called
    if not isinstance(reply, expect):
        raise RunError(f"expected a {expect.__name__} from {route[0]}, got {type(reply).__name__}")
    return took, reply


def plan_placement(ctx: Context, inputs: PlannerInputs, bandwidth_bps: float, first: int) -> Placed:
    """The minimum-cut placement of the run's model on the planner's two devices at
    ``bandwidth_bps``, recorded as a ``split_plan`` metric (``dag: True``) from inference ``first``."""
    link = Link(bandwidth_bps, inputs.latencies_s[0])
    plan = plan_dag(
        model_graph(ctx.model), inputs.costs[0], inputs.costs[1], link, reply=inputs.reply_links()[0]
    )
    where = placed(ctx.model, list(plan.first))
    ctx.record(
        "split_plan",
        float(where.split),
        mode="auto",
        reason="start",
        inference=first,
        bandwidth_bps=bandwidth_bps if math.isfinite(bandwidth_bps) else 0.0,
        predicted_ms=plan.total_ms,
        objective="latency",
        dag=True,
        **where.attrs,
    )
    return where


def _check_two(route: Sequence[str]) -> None:
    if len(route) != 1:
        raise RunError(f"a placement runs on two participants, but next names {len(route)}")
