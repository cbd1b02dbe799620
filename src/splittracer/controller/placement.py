"""Where a run's participants start: the deployer for a :class:`ResolvedRun`."""

from __future__ import annotations

from pathlib import Path

from ..deploy.base import Deployer
from ..deploy.select import deployer_for
from ..devices.limits import ResourceLimits
from ..devices.registry import Registry
from .resolve import ResolvedRun

__all__ = ["deployer_for_plan"]


def deployer_for_plan(
    plan: ResolvedRun,
    workspace: Path | None,
    registry: Registry | None = None,
    run_id: str | None = None,
    log_dir: Path | None = None,
) -> Deployer:
    """The deployer ``plan`` needs: its participants' devices, and the files devices need a copy of.

    The model's override and weights files and its dataset folder go to every
    participant on a device, beside the workspace's user code.
    """
    models = plan.models
    files = list(dict.fromkeys(Path(f) for m in models for f in (m.override, m.weights) if f))
    datasets = [Path(m.dataset) for m in models if m.dataset]
    dataset = datasets[0] if datasets else None
    return deployer_for(
        {p.name: p.device for p in plan.participants},
        workspace,
        files=files,
        dataset=dataset,
        registry=registry,
        run_id=run_id,
        log_dir=log_dir,
        limits={p.name: ResourceLimits(p.cpu, p.memory_bytes, p.cpu_by) for p in plan.participants},
        run_name=plan.experiment,
    )
