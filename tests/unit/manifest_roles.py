"""Roles and tasks the manifest fixtures name, as ``tests.unit.manifest_roles:Head``."""

from __future__ import annotations

import dataclasses

from splittracer.roles import Context, Role, handles
from splittracer.tasks import Task


class Probe(Task, name="test_manifest.Probe"):
    """A sweep-like task: every field but ``splits`` has a default."""

    splits: str
    repeats: int = 10
    warmup: int = 2
    next: list[str] = dataclasses.field(default_factory=list)


class Relay(Task, name="test_manifest.Relay"):
    """A task with a check of its own in ``__post_init__``."""

    hops: int

    def __post_init__(self) -> None:
        if self.hops < 0:
            raise ValueError("hops must be >= 0")


class Head(Role):
    @handles(Probe)
    def probe(self, task: Probe, ctx: Context) -> None:
        ctx.send("cloud", Relay(hops=1))


class Tail(Role):
    @handles(Relay)
    def relay(self, task: Relay, ctx: Context) -> None:
        ctx.finish()


class NotARole:
    """Looks like a role, but does not subclass Role."""

    def setup(self, ctx: Context) -> None:
        pass
