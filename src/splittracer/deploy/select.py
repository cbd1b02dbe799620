"""Choosing how each participant is started: locally, or over SSH on its paired device."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..controller.resolve import ResolvedRun
from ..devices.registry import Registry
from ..wire.tls import TlsBundle
from .local import Deployment, LocalDeployer, route_source

LOCAL = "local"


class MixedDeployer:
    """Starts ``local`` participants as subprocesses and the others over SSH."""

    def __init__(self, local: LocalDeployer, remote: Any, remote_names: set[str]) -> None:
        self.local = local
        self.remote = remote
        self.remote_names = remote_names

    def start(self, name: str, tls: TlsBundle) -> Deployment:
        """Start ``name`` where the manifest placed it."""
        deployment: Deployment = (self.remote if name in self.remote_names else self.local).start(name, tls)
        return deployment

    def workspace_path(self, local: Path | None) -> str | None:
        """Local participants read the workspace in place (remote ones get their own copy)."""
        return str(local) if local else None

    def close(self) -> None:
        """Close the SSH connections."""
        if self.remote is not None:
            self.remote.close()


def deployer_for(
    plan: ResolvedRun, workspace: Path | None, registry: Registry | None = None, run_id: str | None = None
) -> LocalDeployer | MixedDeployer:
    """The deployer a plan needs: plain local, or local plus SSH for paired devices."""
    remote = {p.name: p.device for p in plan.participants if p.device != LOCAL}
    if not remote:
        return LocalDeployer()
    from .ssh import SSHDeployer

    registry = registry or Registry.locate(workspace=workspace)
    placements = {name: registry.get(device) for name, device in remote.items()}
    files = [Path(f) for f in (plan.model.override, plan.model.weights) if f] if plan.model else []
    dataset = Path(plan.model.dataset) if plan.model and plan.model.dataset else None
    ssh = SSHDeployer(placements, workspace=workspace, files=files, dataset=dataset, run_id=run_id)
    # Local participants must be reachable from the devices: a device's participant sends
    # its tasks straight to them, not through the controller.
    hosts = [d.listen_host or d.host for d in placements.values()]
    advertise = next((a for a in map(route_source, hosts) if a), None)
    return MixedDeployer(LocalDeployer(advertise=advertise), ssh, set(remote))
