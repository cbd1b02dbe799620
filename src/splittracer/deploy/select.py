"""Choosing how each participant is started: locally, or over SSH on its paired device."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ..devices.limits import LimitsError, ResourceLimits
from ..devices.registry import Registry
from ..wire.tls import TlsBundle
from .base import Deployer, Deployment
from .local import LocalDeployer, route_source

__all__ = ["LOCAL", "MixedDeployer", "deployer_for"]

LOCAL = "local"
"""The device name of this machine: its participants are started as local processes."""


class MixedDeployer:
    """Starts the ``remote_names`` participants with ``remote``, every other one with ``local``."""

    def __init__(self, local: Deployer, remote: Deployer, remote_names: set[str]) -> None:
        self.local = local
        self.remote = remote
        self.remote_names = remote_names

    def start(self, name: str, tls: TlsBundle) -> Deployment:
        """Start ``name`` where the run placed it."""
        return (self.remote if name in self.remote_names else self.local).start(name, tls)

    def close(self) -> None:
        """Close both deployers (the SSH connections above all)."""
        try:
            self.remote.close()
        finally:
            self.local.close()


def deployer_for(
    devices: Mapping[str, str],
    workspace: Path | None,
    *,
    files: Sequence[Path] = (),
    dataset: Path | None = None,
    registry: Registry | None = None,
    run_id: str | None = None,
    log_dir: Path | None = None,
    limits: Mapping[str, ResourceLimits] | None = None,
    run_name: str = "run",
) -> Deployer:
    """The deployer a run needs: plain local, or local plus SSH for paired devices.

    ``devices``: participant name -> the device it runs on (``local`` for this
    machine). Participants on devices get a copy of ``workspace``'s user code,
    of ``files`` and of the ``dataset`` folder; ``registry`` (default: the one
    ``workspace`` uses) names the devices. Local participants write their
    logs to ``log_dir`` (kept), or to a scratch folder removed when they stop.
    ``limits``: the CPU and memory each local participant may use (cgroups
    named after ``run_name``).
    """
    remote = {name: device for name, device in devices.items() if device != LOCAL}
    local_limits = {name: lim for name, lim in (limits or {}).items() if lim and name not in remote}
    _refuse_remote_limits(remote, limits or {})
    if not remote:
        return LocalDeployer(limits=local_limits, run_name=run_name, log_dir=log_dir)
    from .ssh import SSHDeployer  # asyncssh is imported only when a run uses a device

    registry = registry or Registry.locate(workspace=workspace)
    placements = {name: registry.get(device) for name, device in remote.items()}
    ssh = SSHDeployer(placements, workspace=workspace, files=files, dataset=dataset, run_id=run_id)
    # Local participants must be reachable from the devices: a device's participant sends
    # its tasks straight to them, not through the controller.
    hosts = [d.listen_host or d.host for d in placements.values()]
    advertise = next((a for a in map(route_source, hosts) if a), None)
    local = LocalDeployer(advertise=advertise, limits=local_limits, run_name=run_name, log_dir=log_dir)
    return MixedDeployer(local, ssh, set(remote))


def _refuse_remote_limits(remote: Mapping[str, str], limits: Mapping[str, ResourceLimits]) -> None:
    """CPU and memory limits are enforced on this machine only: never ignored on a device."""
    for name, device in remote.items():
        if limits.get(name):
            raise LimitsError(
                f"participant '{name}' runs on device '{device}' and has cpu or memory limits, "
                "which are enforced for local participants only",
                hint="Remove limits.cpu and limits.memory from it, or run it on the local device.",
            )
