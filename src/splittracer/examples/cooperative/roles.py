"""Roles for cooperative inference across different models (each participant runs its own model).

Fusion: each ``Sensor`` runs its model on its own input and calls the hub with
the embedding; the ``Hub`` waits for one embedding from every sensor (its
``params: {sensors: [...]}``), joins them and runs its own model on them.
Pipeline: the ``SpeechPhone`` runs model A whole and calls the cloud with its
output; the ``TranslationCloud`` runs model B on it.
"""

import torch

from splittracer import Context, Role, Task, handles


class Sense(Task):
    count: int = 10


class Embedding(Task):
    index: int
    sensor: str
    features: torch.Tensor


class Fused(Task):
    events: int  # the width of the hub's output; 0 while it waits for the other sensors


class Transcribe(Task):
    count: int = 10


class Transcript(Task):
    tokens: torch.Tensor


class Translation(Task):
    scores: torch.Tensor


class Sensor(Role):
    @handles(Sense)
    def sense(self, task: Sense, ctx: Context) -> None:
        for i in range(task.count):
            with ctx.inference(i):
                features = ctx.run_layers(0, ctx.num_layers, ctx.example(i))
                ctx.call("hub", Embedding(index=i, sensor=ctx.participant, features=features))
            ctx.progress(i + 1, task.count)
        ctx.finish()


class Hub(Role):
    def setup(self, ctx: Context) -> None:
        self.waiting: dict[int, dict[str, torch.Tensor]] = {}

    @handles(Embedding)
    def fuse(self, task: Embedding, ctx: Context) -> Fused:
        sensors = list(ctx.params["sensors"])
        got = self.waiting.setdefault(task.index, {})
        got[task.sensor] = task.features
        if len(got) < len(sensors):
            return Fused(events=0)
        del self.waiting[task.index]
        events = ctx.run_layers(0, ctx.num_layers, torch.cat([got[s] for s in sensors], dim=-1))
        ctx.record("fused_events", events.shape[-1], index=task.index)
        return Fused(events=events.shape[-1])


class SpeechPhone(Role):
    @handles(Transcribe)
    def transcribe(self, task: Transcribe, ctx: Context) -> None:
        for i in range(task.count):
            with ctx.inference(i):
                tokens = ctx.run_layers(0, ctx.num_layers, ctx.example(i))
                reply = ctx.call("cloud", Transcript(tokens=tokens))
            assert isinstance(reply, Translation)
            ctx.record("translation_width", reply.scores.shape[-1], index=i)
            ctx.progress(i + 1, task.count)
        ctx.finish()


class TranslationCloud(Role):
    @handles(Transcript)
    def translate(self, task: Transcript, ctx: Context) -> Translation:
        return Translation(scores=ctx.run_layers(0, ctx.num_layers, task.tokens))
