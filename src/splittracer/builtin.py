"""Built-in tasks and roles for split inference: Neurosurgeon with no user code.

A :class:`SplitHead` ("phone") handles :class:`Sweep`: for every split point,
``warmup + repeats`` inferences, each one run as *head layers here → send the
live tensors → the rest on the next participants*. Every participant after
it plays :class:`SplitTail`: it runs its layers, forwards to the next hop if
there is one, and the last hop answers the head with a :class:`Result`. The
head waits for that answer before starting the next inference, so each
inference is measured alone, as in the paper.

With three or more participants (phone → edge → cloud) a sweep point is a
list of cuts, one per hop: ``cuts: [[3, 10], [5, 15]]``.
"""

from __future__ import annotations

from dataclasses import field

import torch
from torch.utils import _pytree as pytree

from .errors import RunError
from .participant.context import ParticipantContext
from .roles import Role, handles
from .tasks import Task

__all__ = ["Finish", "Infer", "Result", "RunLayers", "SplitHead", "SplitTail", "Sweep"]


class Sweep(Task):
    """Run every split point (or the listed ones) ``warmup + repeats`` times each."""

    next: list[str]
    splits: list[int] | str = "all"
    cuts: list[list[int]] | None = None
    repeats: int = -1  # -1: the manifest's options.repeats
    warmup: int = -1  # -1: the manifest's options.warmup
    finish: bool = True


class Infer(Task):
    """Run ``count`` inferences at one split point (or one chain of cuts)."""

    next: list[str]
    split: int = -1
    cuts: list[int] | None = None
    count: int = 1
    finish: bool = False


class RunLayers(Task, priority=5):
    """Run layers ``start+1..`` on ``tensors``; ``cuts[i]`` ends hop ``i`` of ``route``."""

    start: int
    tensors: list[torch.Tensor]
    route: list[str] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)


class Result(Task, priority=5):
    """The model's output (its tensor leaves), sent back to the head."""

    outputs: list[torch.Tensor]


class Finish(Task):
    """End the run."""


class SplitHead(Role):
    """The first device: runs the head of every inference and drives the sweep."""

    @handles(Sweep)
    def sweep(self, task: Sweep, ctx: ParticipantContext) -> None:
        points = _sweep_points(task, ctx.num_layers, len(task.next))
        repeats = task.repeats if task.repeats >= 0 else ctx.options.repeats
        warmup = task.warmup if task.warmup >= 0 else ctx.options.warmup
        per_point = warmup + repeats
        total, index = len(points) * per_point, 0
        for cuts in points:
            for r in range(per_point):
                _infer(ctx, index, cuts, task.next, warmup=r < warmup)
                index += 1
                ctx.progress(index, total, f"split {cuts[0]}" if len(cuts) == 1 else f"cuts {cuts}")
        if task.finish:
            ctx.finish()

    @handles(Infer)
    def infer(self, task: Infer, ctx: ParticipantContext) -> None:
        cuts = task.cuts if task.cuts is not None else [task.split if task.split >= 0 else ctx.num_layers]
        _check_cuts(cuts, ctx.num_layers, len(task.next))
        for i in range(task.count):
            _infer(ctx, i, cuts, task.next, warmup=False)
            ctx.progress(i + 1, task.count, f"split {cuts[0]}")
        if task.finish:
            ctx.finish()

    @handles(Finish)
    def finish(self, task: Finish, ctx: ParticipantContext) -> None:
        ctx.finish()


class SplitTail(Role):
    """Any later device: runs its layers, forwards or answers."""

    @handles(RunLayers)
    def run(self, task: RunLayers, ctx: ParticipantContext) -> Task:
        end = task.cuts[0] if task.route else ctx.num_layers
        out = ctx.run_layers(task.start, end, *task.tensors, final=not task.route)
        if task.route:
            onward = RunLayers(start=end, tensors=list(out), route=task.route[1:], cuts=task.cuts[1:])
            return ctx.call(task.route[0], onward)  # the last hop's Result travels back hop by hop
        return Result(outputs=[t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)])

    @handles(Finish)
    def finish(self, task: Finish, ctx: ParticipantContext) -> None:
        ctx.finish()


def _infer(ctx: ParticipantContext, index: int, cuts: list[int], route: list[str], *, warmup: bool) -> None:
    x = ctx.example(index)  # made before the clock starts: inputs exist before inference
    with ctx.inference(index, split=cuts[0], warmup=warmup):
        sent = ctx.run_layers(0, cuts[0], x, final=False)
        task = RunLayers(start=cuts[0], tensors=list(sent), route=route[1:], cuts=cuts[1:])
        reply = ctx.call(route[0], task)
    if not isinstance(reply, Result):
        raise RunError(f"expected a Result from {route[-1]}, got {type(reply).__name__}")


def _sweep_points(task: Sweep, num_layers: int, hops: int) -> list[list[int]]:
    if task.cuts is not None:
        points = task.cuts
    elif task.splits == "all":
        points = [[k] for k in range(num_layers + 1)]
    elif isinstance(task.splits, list):
        points = [[k] for k in task.splits]
    else:
        raise RunError(f"Sweep.splits must be 'all' or a list of split points, not {task.splits!r}")
    for cuts in points:
        _check_cuts(cuts, num_layers, hops)
    return points


def _check_cuts(cuts: list[int], num_layers: int, hops: int) -> None:
    if len(cuts) != hops:
        raise RunError(f"cuts {cuts} name {len(cuts)} cut(s) but the route has {hops} hop(s)")
    if any(not 0 <= k <= num_layers for k in cuts) or cuts != sorted(cuts):
        raise RunError(f"cuts {cuts} must be non-decreasing split points in 0..{num_layers}")
