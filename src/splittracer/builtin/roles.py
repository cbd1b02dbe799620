"""The built-in roles: :class:`SplitHead` drives sweeps, inferences and streams;
:class:`SplitTail` runs the rest of each inference."""

from __future__ import annotations

import itertools
import threading
import time
from typing import TYPE_CHECKING, Any

from ..pacing import Batcher, DropPolicy, StreamFrames
from ..placed import RunPlaced, placed, run_placed_task, sweep_placements
from ..roles import Context, Role, handles
from ..tasks import Task
from .points import fixed_cuts, infer_codecs, planned_mode, stream_points, sweep_points
from .running import (
    apply_uplink_trace,
    infer_once,
    infer_placed,
    infer_planned,
    infer_point,
    probe_link,
    record_stream_plan,
    set_sweep_uplink,
    stream_rest,
    stream_span_attrs,
    sweep_label,
)
from .streaming import drop_policy, stream_duration, stream_frames, stream_times
from .tasks import Finish, Infer, LinkProbe, LinkReport, MeasureLink, Result, RunLayers, Stream, Sweep

if TYPE_CHECKING:  # the controller imports the built-in roles to check a manifest: no torch there
    import torch


class SplitHead(Role):
    """The first device: runs the head of every inference and drives the sweep.

    Inference ids run on across the playbook's tasks (a second ``Infer``
    starts where the first ended), so every inference of a run has its own.
    """

    _issued = 0  # inference ids handed out so far in this run

    def _reserve(self, count: int) -> int:
        """The first of ``count`` new inference ids."""
        first = self._issued
        self._issued = first + count
        return first

    @handles(Sweep)
    def sweep(self, task: Sweep, ctx: Context) -> None:
        given = task.cuts is not None or task.splits != "all"
        points = sweep_placements(ctx.model, task.placements, task.next, given) or sweep_points(
            task, ctx.num_layers, len(task.next)
        )
        repeats = task.repeats if task.repeats >= 0 else ctx.options.repeats
        warmup = task.warmup if task.warmup >= 0 else ctx.options.warmup
        per_point = warmup + repeats
        links: list[str | None] = list(task.uplinks) or [None]
        codecs = list(task.codecs) or [ctx.options.compression]
        total, done = len(links) * len(codecs) * len(points) * per_point, 0
        first = self._reserve(total)
        for link in links:
            attrs = set_sweep_uplink(ctx, link, first + done)
            for codec, cuts in itertools.product(codecs, points):
                hops = [codec] * len(task.next)
                for r in range(per_point):
                    # Input r - warmup: every split and codec sees the same inputs, compared pairwise.
                    sample = (r - warmup) % per_point
                    infer_point(
                        ctx,
                        first + done,
                        cuts,
                        task.next,
                        warmup=r < warmup,
                        attrs=attrs,
                        codecs=hops,
                        sample=sample,
                    )
                    done += 1
                    ctx.progress(done, total, sweep_label(cuts, link, codec if task.codecs else None))
        if task.finish:
            ctx.finish()

    @handles(Infer)
    def infer(self, task: Infer, ctx: Context) -> None:
        mode = planned_mode(task)
        first = self._reserve(task.count)
        if mode is not None:
            infer_planned(task, ctx, mode, first)
        elif task.placement is not None:
            infer_placed(task, ctx, placed(ctx.model, task.placement), first)
        else:
            cuts = fixed_cuts(task, ctx.num_layers)
            codecs = infer_codecs(task, len(task.next))
            for i in range(task.count):
                apply_uplink_trace(task, ctx, i)
                infer_once(ctx, first + i, cuts, task.next, warmup=False, codecs=codecs)
                ctx.progress(i + 1, task.count, f"split {cuts[0]}")
        if task.finish:
            ctx.finish()

    @handles(Stream)
    def stream(self, task: Stream, ctx: Context) -> None:
        points = stream_points(task, ctx.num_layers)
        if task.planned:
            record_stream_plan(ctx, task, self._issued)
        # A sweep: one stream per split, each at every offered rate, in turn.
        for cuts, rate in itertools.product(points, task.rates or [task.rate]):
            self._stream_at(task, ctx, cuts, rate)
        if task.finish:
            ctx.finish()

    def _stream_at(self, task: Stream, ctx: Context, cuts: list[int], rate: float) -> None:
        warmup = task.warmup if task.warmup >= 0 else ctx.options.warmup
        first = self._issued  # the stream's ids: as many as arrive, reserved once it ended
        rest = lambda sent: stream_rest(ctx, task, cuts, sent)  # noqa: E731
        frames = StreamFrames(ctx, rest, stream_span_attrs(task, first, rate, cuts), cuts[0], first, warmup)
        try:
            done = frames.pump(
                stream_times(task, rate, ctx.options.seed + first),
                task.inflight,
                count=stream_frames(task, warmup),
                duration_s=stream_duration(task),
                drop=drop_policy(task),
            )
        finally:
            self._reserve(frames.issued)
        if done.dropped:
            policy = drop_policy(task) or DropPolicy()
            ctx.record(
                "stream_dropped",
                float(done.dropped),
                stream=first,
                policy=policy.policy,
                max_queue=policy.max_queue,
                max_inflight=policy.max_inflight,
            )

    @handles(Finish)
    def finish(self, task: Finish, ctx: Context) -> None:
        ctx.finish()


class SplitTail(Role):
    """Any later device: runs its layers, forwards or answers; ``workers: N`` serves N at once,
    and ``batch:`` stacks requests for the same layers (:class:`~splittracer.pacing.Batcher`)."""

    parallel = True
    _batching = threading.Lock()
    _batcher: Batcher | None = None

    def _layers(self, ctx: Context, start: int, end: int, tensors: list[torch.Tensor], final: bool) -> Any:
        window = ctx.batch
        if window is None:
            return ctx.run_layers(start, end, *tensors, final=final)
        with self._batching:
            if self._batcher is None:
                self._batcher = Batcher(*window)
        return self._batcher.run(ctx, start, end, tuple(tensors), final=final)

    @handles(RunLayers)
    def run(self, task: RunLayers, ctx: Context) -> Task:
        started = time.perf_counter()
        end = task.cuts[0] if task.route else ctx.num_layers
        out = self._layers(ctx, task.start, end, task.tensors, not task.route)
        if task.route:
            onward = RunLayers(
                start=end, tensors=list(out), route=task.route[1:], cuts=task.cuts[1:], codecs=task.codecs[1:]
            )
            called = time.perf_counter()
            # The last hop's Result travels back hop by hop.
            reply = ctx.call(task.route[0], onward, codec=task.codecs[0] if task.codecs else None)
            if not isinstance(reply, Result):
                return reply
            hop_s = time.perf_counter() - called - reply.busy_s
            busy = time.perf_counter() - started
            return Result(outputs=reply.outputs, busy_s=busy, hops_s=[hop_s, *reply.hops_s])
        import torch
        from torch.utils import _pytree as pytree

        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        return Result(outputs=outputs, busy_s=time.perf_counter() - started)

    @handles(RunPlaced)
    def run_placed(self, task: RunPlaced, ctx: Context) -> Task:
        return run_placed_task(ctx, task, Result)

    @handles(LinkProbe)
    def probed(self, task: LinkProbe, ctx: Context) -> None:
        """Nothing to do: the sender timed the delivery."""

    @handles(MeasureLink)
    def measure(self, task: MeasureLink, ctx: Context) -> LinkReport:
        fit = probe_link(ctx, task.peer, task.bandwidth_bps, task.latency_s)
        return LinkReport(bandwidth_bps=fit.bandwidth_bps, overhead_s=fit.overhead_s, samples=fit.samples)

    @handles(Finish)
    def finish(self, task: Finish, ctx: Context) -> None:
        ctx.finish()
