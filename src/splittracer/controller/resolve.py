"""What the controller executes: a manifest resolved into plain, checked facts (a :class:`ResolvedRun`).

Not to be confused with a split prediction (:mod:`splittracer.plan.planner`) or the split
decisions a run records (:class:`splittracer.report.runs.SplitDecision`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ..manifest import Manifest, ModelSection, build_task
from ..metrics.record import RunProvenance
from ..tasks import Task
from ..wire.messages import ModelConfig, RunOptions
from .autosplit import resolve_planned_splits
from .placed import resolve_placements
from .preflight import check_manifest, preflight_cache
from .provenance import code_fingerprint
from .streams import resolve_streams


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
    cpu_by: str = "auto"  # how ``cpu`` is enforced: auto, cgroup or signals (devices/limits.py)
    keep_warm: bool = False  # its CPU kept busy while it waits (participant/warm.py)
    workers: int = 1  # handlers run at once (a role with ``parallel = True``)
    batch_max: int = 0  # dynamic batching: at most this many requests computed at once (0: none)
    batch_wait_s: float = 0.0  # ... arriving within this window
    group: str = ""  # the manifest's name for a replicated participant ('' for a single one)
    replica: int = 0  # its index in the group
    model: ModelConfig | None = None  # the model it runs: its own ``model:``, else the run's


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

    def model_of(self, participant: ResolvedParticipant) -> ModelConfig | None:
        """The model ``participant`` runs: its own, else the run's."""
        return participant.model if participant.model is not None else self.model

    def model_source(self, participant: ResolvedParticipant) -> str:
        """The source of the model ``participant`` runs ('' for none), as its record keeps it."""
        model = self.model_of(participant)
        return "" if model is None else model.source

    @property
    def models(self) -> tuple[ModelConfig, ...]:
        """Every distinct model the run's participants run, in stage order."""
        found: list[ModelConfig] = []
        for p in self.participants:
            model = self.model_of(p)
            if model is not None and model not in found:
                found.append(model)
        return tuple(found)

    @property
    def groups(self) -> dict[str, list[str]]:
        """Each replicated participant's manifest name -> its replicas' names, in order."""
        found: dict[str, list[str]] = {}
        for p in self.participants:
            if p.group:
                found.setdefault(p.group, []).append(p.name)
        return found

    @property
    def clients(self) -> tuple[str, ...]:
        """The participants with a playbook, in manifest order: the run waits for each to finish."""
        owners = {name for name, _ in self.playbook}
        return tuple(p.name for p in self.participants if p.name in owners)

    def client_index(self, name: str) -> int:
        """``name``'s index among several clients; -1 when it is the only one (or none)."""
        clients = self.clients
        return clients.index(name) if len(clients) > 1 and name in clients else -1


def resolve_run(manifest: Manifest, workspace: Path | None = None) -> ResolvedRun:
    """Resolve a validated manifest into the run the controller executes (tasks built here).

    ``workspace`` is where the user's code lives; its fingerprint is kept
    with the run so that a rerun can tell whether the code changed. The
    model and every split the playbook names are checked first
    (:func:`~splittracer.controller.preflight.check_manifest`): a mistake is
    reported before anything starts.
    """
    check_manifest(manifest, preflight_cache(workspace))
    participants = _participants(manifest)
    planned = resolve_planned_splits(
        manifest,
        [(name, build_task(entry)) for name, entries in manifest.playbook.items() for entry in entries],
        workspace,
    )
    planned = resolve_placements(manifest, planned, workspace)
    planned = resolve_streams(manifest, planned, workspace)
    # Every replica of a group runs its own copy of the group's playbook.
    playbook = tuple(
        (replica, task) for name, task in planned for replica in manifest.participants[name].replica_names
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
        model=model_config(manifest.model),
        manifest_text=manifest.manifest_text,
        timeout_s=o.timeout_s if math.isfinite(o.timeout_s) else 24 * 3600.0,
        provenance=RunProvenance(
            code=code_fingerprint(manifest, workspace),
            manifest_file=str(manifest.path) if manifest.path else None,
        ),
    )


def _participants(manifest: Manifest) -> tuple[ResolvedParticipant, ...]:
    """Every participant, each replica of a group under its own name."""
    return tuple(
        ResolvedParticipant(
            name=name,
            group=p.name if p.size > 1 else "",
            replica=replica,
            stage=p.stage,
            role=p.role,
            device=p.device_of(replica),
            torch_device=p.torch_device,
            params=dict(p.params),
            threads=p.limits.threads,
            uplink_bps=p.limits.uplink_bps,
            latency_s=p.limits.latency_s,
            cpu=p.limits.cpu,
            memory_bytes=p.limits.memory_bytes,
            cpu_by=p.limits.by,
            keep_warm=p.keep_warm,
            workers=p.handlers,
            batch_max=p.batch.max if p.batch else 0,
            batch_wait_s=p.batch.wait_s if p.batch else 0.0,
            model=model_config(manifest.model_of(name)),
        )
        for p in manifest.participants.values()
        for replica, name in enumerate(p.replica_names)
    )


def model_config(m: ModelSection | None) -> ModelConfig | None:
    """What a participant is told of a model section (None: no model)."""
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
