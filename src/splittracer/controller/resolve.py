"""What the controller executes: a manifest resolved into plain, checked facts (a :class:`ResolvedRun`).

Not to be confused with a split prediction (:mod:`splittracer.plan.planner`) or the split
decisions a run records (:class:`splittracer.report.runs.SplitDecision`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..manifest import Manifest, build_task
from ..metrics.record import RunProvenance
from ..tasks import Task
from ..wire.messages import ModelConfig, RunOptions
from .autosplit import resolve_planned_splits
from .preflight import check_manifest, preflight_cache
from .provenance import code_fingerprint


@dataclass(frozen=True)
class ResolvedParticipant:
    """One participant: where it runs, what it plays, and its emulated limits."""

    name: str
    stage: int
    role: str
    device: str = "local"
    torch_device: str = "cpu"
    params: dict[str, object] = field(default_factory=dict)
    threads: int | None = None
    uplink_bps: float = math.inf
    latency_s: float = 0.0
    cpu: float | None = None  # a fraction of one CPU, enforced with cgroups
    memory_bytes: int | None = None
    keep_warm: bool = False  # its CPU kept busy while it waits (participant/warm.py)


@dataclass(frozen=True)
class ResolvedRun:
    """A whole run: participants in stage order, the model, options and initial tasks."""

    experiment: str
    participants: tuple[ResolvedParticipant, ...]
    playbook: tuple[tuple[str, Task], ...]
    options: RunOptions = field(default_factory=RunOptions)
    model: ModelConfig | None = None
    manifest_text: str = ""
    timeout_s: float = 3600.0
    provenance: RunProvenance = field(default_factory=RunProvenance)  # stored with the run


def resolve_run(manifest: Manifest, workspace: Path | None = None) -> ResolvedRun:
    """Resolve a validated manifest into the run the controller executes (tasks built here).

    ``workspace`` is where the user's code lives; its fingerprint is kept
    with the run so that a rerun can tell whether the code changed. The
    model and every split the playbook names are checked first
    (:func:`~splittracer.controller.preflight.check_manifest`): a mistake is
    reported before anything starts.
    """
    check_manifest(manifest, preflight_cache(workspace))
    participants = tuple(
        ResolvedParticipant(
            name=p.name,
            stage=p.stage,
            role=p.role,
            device=p.device,
            torch_device=p.torch_device,
            params=dict(p.params),
            threads=p.limits.threads,
            uplink_bps=p.limits.uplink_bps,
            latency_s=p.limits.latency_s,
            cpu=p.limits.cpu,
            memory_bytes=p.limits.memory_bytes,
            keep_warm=p.keep_warm,
        )
        for p in manifest.participants.values()
    )
    playbook = resolve_planned_splits(
        manifest,
        [(name, build_task(entry)) for name, entries in manifest.playbook.items() for entry in entries],
        workspace,
    )
    o = manifest.options
    options = RunOptions(
        repeats=o.repeats,
        warmup=o.warmup,
        compression=o.compression,
        seed=o.seed,
        sample_interval_s=o.sample_interval_s,
    )
    return ResolvedRun(
        experiment=manifest.name,
        participants=participants,
        playbook=playbook,
        options=options,
        model=_model_config(manifest),
        manifest_text=manifest.manifest_text,
        timeout_s=o.timeout_s if math.isfinite(o.timeout_s) else 24 * 3600.0,
        provenance=RunProvenance(
            code=code_fingerprint(manifest, workspace),
            manifest_file=str(manifest.path) if manifest.path else None,
        ),
    )


def _model_config(manifest: Manifest) -> ModelConfig | None:
    m = manifest.model
    if m is None:
        return None
    return ModelConfig(
        source=m.source,
        input_shape=list(m.input_shape) if m.input_shape else None,
        granularity=m.granularity,
        override=str(m.override) if m.override else None,
        weights=str(m.weights) if m.weights else None,
        dataset=str(m.dataset) if m.dataset else None,
        labels=m.label_indices(),
    )
