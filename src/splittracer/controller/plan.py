"""What the controller executes: a manifest resolved into plain, checked facts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..participant.messages import ModelConfig, RunOptions
from ..tasks import Task


@dataclass(frozen=True)
class ParticipantPlan:
    """One participant: where it runs, what it plays, and its emulated limits."""

    name: str
    stage: int
    role: str
    device: str = "local"
    params: dict[str, object] = field(default_factory=dict)
    threads: int | None = None
    uplink_bps: float = math.inf
    latency_s: float = 0.0


@dataclass(frozen=True)
class RunPlan:
    """A whole run: participants in stage order, the model, options and initial tasks."""

    experiment: str
    participants: tuple[ParticipantPlan, ...]
    playbook: tuple[tuple[str, Task], ...]
    options: RunOptions = field(default_factory=RunOptions)
    model: ModelConfig | None = None
    manifest_text: str = ""
    timeout_s: float = 3600.0
