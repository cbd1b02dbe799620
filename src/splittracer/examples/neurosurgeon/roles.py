"""Neurosurgeon, written by hand: the phone runs the head, the cloud the tail."""

import torch

from splittracer import Context, Role, Task, handles


class SweepEverySplit(Task):
    repeats: int = 10


class Layers(Task, priority=5):
    start: int
    tensors: list[torch.Tensor]


class Output(Task):
    logits: torch.Tensor


class Phone(Role):
    @handles(SweepEverySplit)
    def sweep(self, task: SweepEverySplit, ctx: Context) -> None:
        total, i = (ctx.num_layers + 1) * task.repeats, 0
        for split in range(ctx.num_layers + 1):
            for _ in range(task.repeats):
                x = ctx.example(i)
                with ctx.inference(i, split=split):
                    sent = ctx.run_layers(0, split, x, final=False)
                    ctx.call("cloud", Layers(start=split, tensors=list(sent)))
                i += 1
                ctx.progress(i, total, f"split {split}")
        ctx.finish()


class Cloud(Role):
    @handles(Layers)
    def run(self, task: Layers, ctx: Context) -> Output:
        return Output(logits=ctx.run_layers(task.start, ctx.num_layers, *task.tensors))
