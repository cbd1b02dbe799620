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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from .errors import RunError
from .plan.chain import Link
from .plan.online import PlannerInputs
from .roles import Context
from .tasks import Task

if TYPE_CHECKING:  # the controller imports the task types, never runs a placement: no torch there
    import torch

    from .split.model import Placement, SplitModel
    from .split.placement import PlacementSpec

__all__ = [
    "Placed",
    "RunPlaced",
    "call_placed",
    "devices",
    "placed",
    "plan_placement",
    "run_placed_task",
    "sweep_placements",
]

Attrs = Mapping[str, str | int | float | bool]
T = TypeVar("T", bound=Task)


class RunPlaced(Task, priority=5):
    """Run device ``device``'s layers of ``placement`` (``1-5,7``: the first device's; ``1-3|4-6``:
    a chain's, one set per device but the last) on ``tensors``; then on along ``route``."""

    placement: str
    tensors: list[torch.Tensor]
    device: int = 1
    route: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Placed:
    """A placement as the head runs it: its label, the ``split`` tag of its spans, their attrs."""

    label: str
    split: int
    attrs: dict[str, str | int | float | bool]


def placed(model: SplitModel, spec: PlacementSpec | Placement) -> Placed:
    """``spec`` checked against ``model`` (SplitError naming the offending layer) and labelled.

    A chain (``1-3|4-6``: every device's layers but the last's) is labelled by
    its devices' sets; its bytes and tensors are those of the first hop.
    """
    from .split.model import Placement
    from .split.placement import named_ranges

    if isinstance(spec, str) and "|" in spec:
        return _placed_chain(model, spec.split("|"))
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
    points = [placed(model, spec) for spec in specs]
    for point in points:
        _check_two(route, point.label)
    return list(points)


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
    _check_two(route, where.label)
    x = ctx.example(index)  # made before the clock starts: inputs exist before inference
    with ctx.inference(index, split=where.split, warmup=warmup, attrs={**(attrs or {}), **where.attrs}):
        sent = ctx.run_placed(where.label, 0, x)
        called = time.perf_counter()
        onward = RunPlaced(placement=where.label, tensors=list(sent), route=list(route[1:]))
        reply = ctx.call(route[0], onward)
        took = time.perf_counter() - called
    if not isinstance(reply, expect):
        raise RunError(f"expected a {expect.__name__} from {route[0]}, got {type(reply).__name__}")
    return took, reply


def plan_placement(ctx: Context, inputs: PlannerInputs, bandwidth_bps: float, first: int) -> Placed:
    """The minimum-cut placement of the run's model on the planner's two devices at
    ``bandwidth_bps``, recorded as a ``split_plan`` metric (``dag: True``) from inference ``first``."""
    from .plan.dag import plan_dag
    from .plan.graph import model_graph

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


def run_placed_task(ctx: Context, task: RunPlaced, answer: type[Task]) -> Task:
    """A later device's share of a placement: its layers, then on along the route; the last
    device answers with ``answer(outputs=, busy_s=, hops_s=)``, which comes back hop by hop."""
    made: Callable[..., Task] = answer  # a Result: the built-in roles' own answer type
    started = time.perf_counter()
    out = ctx.run_placed(task.placement, task.device, *task.tensors)
    if not task.route:
        import torch
        from torch.utils import _pytree as pytree

        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        return made(outputs=outputs, busy_s=time.perf_counter() - started)
    onward = RunPlaced(
        placement=task.placement, tensors=list(out), device=task.device + 1, route=task.route[1:]
    )
    called = time.perf_counter()
    reply = ctx.call(task.route[0], onward)
    if not isinstance(reply, answer):
        return reply
    hop_s = time.perf_counter() - called - getattr(reply, "busy_s", 0.0)
    hops = [hop_s, *getattr(reply, "hops_s", [])]
    return made(outputs=getattr(reply, "outputs", []), busy_s=time.perf_counter() - started, hops_s=hops)


def _placed_chain(model: SplitModel, specs: Sequence[str]) -> Placed:
    from .split.parts import compact
    from .split.placement import layer_set, named_ranges

    model.place_chain(specs)  # checks the chain: each device's layers closed with those before it
    names = [layer.name for layer in model.layers]
    sets = [sorted(layer_set(spec, names)) for spec in specs]
    label = "|".join(compact(own) for own in sets)
    first = model.placement(sets[0])
    return Placed(
        label=label,
        split=len(sets[0]),
        attrs={
            "placement": label,
            "placement_layers": " | ".join(named_ranges(own, names) for own in sets),
            "placement_bytes": first.bytes,
            "placement_tensors": len(first.tensors),
        },
    )


def devices(label: str) -> int:
    """How many devices a placement's label places layers on."""
    return label.count("|") + 2


def _check_two(route: Sequence[str], label: str = "") -> None:
    if len(route) != devices(label) - 1:
        raise RunError(
            f"placement {label or '(none)'} runs on {devices(label)} participants, "
            f"but next names {len(route)}"
        )
