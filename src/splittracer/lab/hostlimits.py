"""CPU and memory limits of lab hosts, so one machine stands in for slow and fast devices.

``testbed up --cpu 0.1,1.0 --memory 2GiB,8GiB`` gives each host its own
cgroups (under ``splittracer-lab-PREFIX`` in every hierarchy used, the same
kernel mechanism as a participant's ``limits``: :mod:`splittracer.devices.limits`).
A host's sshd is started inside them, so every login, every participant and
everything they start on that host inherits the limits. The CPU quota is
written once sshd answers, like a local participant's once it listens.
``testbed down`` removes the cgroups after the namespaces (and the processes
in them) are gone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..devices.limits import ParticipantCgroup, ResourceLimits, RunCgroups, remove_cgroup
from ..units import format_size, parse_size
from .errors import TestbedError

__all__ = ["HostCgroups", "describe_limits", "parse_host_limits", "remove_host_cgroups"]

_T = TypeVar("_T")


def parse_host_limits(cpu: str | None, memory: str | None, hosts: int) -> list[ResourceLimits]:
    """One :class:`ResourceLimits` per host from ``--cpu 0.1,1.0`` and ``--memory 2GiB,8GiB``.

    One value applies to every host; otherwise there must be one per host.
    """
    cpus = _per_host(cpu, hosts, "--cpu", _cpu)
    memories = _per_host(memory, hosts, "--memory", parse_size)
    return [ResourceLimits(c, m) for c, m in zip(cpus, memories)]


def _cpu(text: str) -> float:
    value = float(text)
    if not 0.001 <= value <= 1024:
        raise ValueError(f"cpu '{text}' must be a fraction of one CPU between 0.001 and 1024")
    return value


def _per_host(text: str | None, hosts: int, option: str, parse: Callable[[str], _T]) -> list[_T | None]:
    if text is None:
        return [None] * hosts
    items = [item.strip() for item in text.split(",")]
    if len(items) == 1:
        items *= hosts
    if len(items) != hosts:
        raise TestbedError(
            f"{option} gives {len(items)} values for {hosts} hosts",
            hint=f"give one value for every host, or {hosts} comma-separated values, one per host",
        )
    try:
        return [parse(item) for item in items]
    except ValueError as exc:
        raise TestbedError(f"{option}: {exc}") from None


def describe_limits(cpu: float | None, memory_bytes: int | None) -> str:
    """``cpu 0.1, memory 2 GiB``; ``none`` without limits."""
    parts = [f"cpu {cpu:g}"] if cpu is not None else []
    parts += [f"memory {format_size(memory_bytes)}"] if memory_bytes is not None else []
    return ", ".join(parts) or "none"


class HostCgroups:
    """The cgroups of one lab's hosts: a parent named after the lab's prefix, one child per host."""

    def __init__(self, prefix: str) -> None:
        self._cgroups = RunCgroups(f"lab-{prefix}", name=f"splittracer-lab-{prefix}")

    def create(self, host: str, limits: ResourceLimits) -> ParticipantCgroup | None:
        """The host's cgroups with its memory limit written; None when it has no limits."""
        return self._cgroups.create(host, limits) if limits else None

    @property
    def parents(self) -> list[Path]:
        """The lab's parent cgroups, to remove after every host's."""
        return self._cgroups.directories

    def remove(self) -> None:
        """Remove every host's cgroups and the lab's (after a failed ``up``)."""
        self._cgroups.remove()


def remove_host_cgroups(host_dirs: list[str], parents: list[str]) -> list[str]:
    """Remove the hosts' cgroups, then the lab's; what was removed."""
    removed = []
    for directory in [*host_dirs, *parents]:
        path = Path(directory)
        if path.is_dir():
            remove_cgroup(path)
            removed.append(f"cgroup {path}")
    return removed
