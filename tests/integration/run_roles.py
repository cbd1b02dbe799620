"""Roles that misbehave on purpose, for the failure tests."""

from __future__ import annotations

import time

import torch

from splittracer.builtin import Infer, MeasureLink, RunLayers, SplitHead, SplitTail, probe_link
from splittracer.participant.context import ParticipantContext
from splittracer.roles import Context, Role, handles
from splittracer.tasks import Task


class FailingTail(SplitTail):
    """Answers two inferences, then raises on the third."""

    def setup(self, ctx: Context) -> None:
        self.seen = 0

    @handles(RunLayers)
    def run(self, task: RunLayers, ctx: Context) -> Task:
        self.seen += 1
        if self.seen == 3:
            raise ValueError("the tail refuses inference 3")
        return super().run(task, ctx)


class Secret(Task):
    """A task type only the sender's process knows."""

    note: str


class Start(Task):
    """Kick off :class:`SendsUnknown`."""


class SendsUnknown(SplitTail):
    """Sends the tail a task type its process has never imported."""

    @handles(Start)
    def start(self, task: Start, ctx: Context) -> None:
        ctx.send("cloud", Secret(note="not for you"))


class LinkMeter(SplitHead):
    """Measures its link to a peer with the built-in probe, records the result and ends the run."""

    @handles(MeasureLink)
    def measure(self, task: MeasureLink, ctx: ParticipantContext) -> None:
        fit = probe_link(ctx, task.peer, task.bandwidth_bps, task.latency_s)
        ctx.record("probed_bps", fit.bandwidth_bps, overhead_s=fit.overhead_s, probes=fit.samples)
        ctx.finish()


class RecordingTail(SplitTail):
    """The built-in tail that also records where its part started, as a handler's own metric."""

    @handles(RunLayers)
    def run(self, task: RunLayers, ctx: Context) -> Task:
        ctx.record("part_start", float(task.start), part="last")
        return super().run(task, ctx)


class FailingCamera(SplitHead):
    """The built-in head, except that replica ``camera-2`` fails on its first task."""

    @handles(Infer)
    def infer(self, task: Infer, ctx: Context) -> None:
        if ctx.participant == "camera-2":
            raise ValueError("camera-2's sensor is broken")
        super().infer(task, ctx)


class FloodItem(Task):
    """One of a flood of tasks."""

    x: torch.Tensor
    index: int


class Flood(Task):
    """Ask :class:`Flooder` to send ``count`` tasks as fast as it can."""

    count: int


class Drain(Task):
    """Answered once every task queued before it was handled."""


class Flooder(Role):
    """Sends a flood of tasks to ``sink`` without waiting for them to be handled, then ends the run."""

    @handles(Flood)
    def flood(self, task: Flood, ctx: Context) -> None:
        for index in range(task.count):
            ctx.send("sink", FloodItem(x=torch.zeros(256), index=index))
        ctx.record("flood_sent", float(task.count))  # the moment the last send returned
        ctx.call("sink", Drain())
        ctx.finish()


class SlowSink(Role):
    """Handles each task of a flood slowly, recording when it began one."""

    @handles(FloodItem)
    def blob(self, task: FloodItem, ctx: Context) -> None:
        ctx.record("blob_started", float(task.index))
        time.sleep(0.002)

    @handles(Drain)
    def drain(self, task: Drain, ctx: Context) -> Task:
        return Drain()
