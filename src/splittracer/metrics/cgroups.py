"""The CPU and memory limits the kernel enforces on this process, read from its cgroups.

Every participant reads its own and reports them in ``Hello``, so a run's
record holds the limits in force wherever a participant ran: a local
participant given ``limits:``, a lab host started with ``testbed up --cpu``
(its sshd, and everything it starts, sit in the host's cgroups), a device
in a container, or a machine whose administrator limited the user. A limit
on any ancestor cgroup applies too, so the tightest one along the path is
the one in force. cgroup v1 (``cpu.cfs_quota_us``, ``memory.limit_in_bytes``)
and v2 (``cpu.max``, ``memory.max``) are both read, each controller from
whichever hierarchy this process is in.

A participant throttled with signals instead (no cgroup: see
:mod:`splittracer.devices.throttle`) finds its CPU limit in its environment
(``SPLITTRACER_CPU_LIMIT``, set by the throttle); ``cpu_by`` says which
mechanism enforces the CPU limit reported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..environment import CPU_LIMIT_BY_ENV, CPU_LIMIT_ENV

__all__ = ["EnforcedLimits", "enforced_limits"]

# v1 reports "no memory limit" as a page-aligned LONG_MAX; anything this large is no limit.
_NO_LIMIT_BYTES = 1 << 60

_Mounts = dict[str, tuple[Path, str]]  # controller ("" for v2) -> (mount point, cgroup path mounted there)


@dataclass(frozen=True)
class EnforcedLimits:
    """The tightest limits along this process's cgroup path (None: no limit found)."""

    cpu: float | None = None  # a fraction of one CPU
    memory_bytes: int | None = None
    cpu_by: str = ""  # what enforces ``cpu``: "cgroup" or "signals"; "" without a CPU limit


def enforced_limits(root: str | Path = "/", environ: Mapping[str, str] | None = None) -> EnforcedLimits:
    """Read the limits in force on this process; nothing readable means no limit (never an error).

    ``root`` is where ``/proc`` and ``/sys`` are found (tests give a fake tree);
    ``environ`` (default: this process's) may hold a signal throttle's limit.
    """
    root = Path(root)
    memberships = _memberships(_read(root / "proc/self/cgroup"))
    mounts = _cgroup_mounts(_read(root / "proc/self/mountinfo"), root)
    cpu = _tightest(_cpu_limits(memberships, mounts))
    memory = _tightest(_memory_limits(memberships, mounts))
    memory_bytes = int(memory) if memory is not None else None
    signals = _signal_limit(os.environ if environ is None else environ)
    if signals is not None and (cpu is None or signals < cpu):
        return EnforcedLimits(signals, memory_bytes, "signals")
    return EnforcedLimits(cpu, memory_bytes, "cgroup" if cpu is not None else "")


def _signal_limit(environ: Mapping[str, str]) -> float | None:
    """The CPU limit a signal throttle set in our environment, if one did."""
    if environ.get(CPU_LIMIT_BY_ENV) != "signals":
        return None
    try:
        cpu = float(environ.get(CPU_LIMIT_ENV, ""))
    except ValueError:
        return None
    return cpu if cpu > 0 else None


def _memberships(text: str) -> dict[str, str]:
    """controller (``cpu``, ``memory``; ``""`` for v2) -> this process's cgroup path."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                found[controller] = parts[2]
    return found


def _cgroup_mounts(text: str, root: Path) -> _Mounts:
    """controller (``""`` for v2) -> (mount point, the cgroup path mounted there)."""
    found: dict[str, tuple[Path, str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3:
            continue
        kind, options = after[0], after[2].split(",")
        point = root / fields[4].lstrip("/")
        if kind == "cgroup2":
            found.setdefault("", (point, fields[3]))
        elif kind == "cgroup":
            for option in options:
                found.setdefault(option, (point, fields[3]))
    return found


def _ancestors(memberships: dict[str, str], mounts: _Mounts, controller: str) -> list[Path]:
    """This process's cgroup directory for ``controller`` and every ancestor up to the mount."""
    if controller not in memberships or controller not in mounts:
        return []
    point, mounted = mounts[controller]
    path = memberships[controller]
    relative = path[len(mounted) :] if mounted != "/" and path.startswith(mounted) else path
    directory = point / relative.strip("/")
    return [directory, *[p for p in directory.parents if p.is_relative_to(point)]]


def _cpu_limits(memberships: dict[str, str], mounts: _Mounts) -> list[float]:
    limits = [_v2_cpu(d) for d in _ancestors(memberships, mounts, "")]
    limits += [_v1_cpu(d) for d in _ancestors(memberships, mounts, "cpu")]
    return [limit for limit in limits if limit is not None]


def _memory_limits(memberships: dict[str, str], mounts: _Mounts) -> list[float]:
    limits = [_number(d / "memory.max") for d in _ancestors(memberships, mounts, "")]
    limits += [_number(d / "memory.limit_in_bytes") for d in _ancestors(memberships, mounts, "memory")]
    return [limit for limit in limits if limit is not None and limit < _NO_LIMIT_BYTES]


def _v2_cpu(directory: Path) -> float | None:
    quota, _, period = _read(directory / "cpu.max").partition(" ")
    if quota.strip() in ("", "max") or not period.strip():
        return None
    return _ratio(quota, period)


def _v1_cpu(directory: Path) -> float | None:
    quota, period = _read(directory / "cpu.cfs_quota_us"), _read(directory / "cpu.cfs_period_us")
    if not quota.strip() or quota.strip().startswith("-"):
        return None
    return _ratio(quota, period)


def _ratio(quota: str, period: str) -> float | None:
    try:
        return int(quota) / int(period)
    except (ValueError, ZeroDivisionError):
        return None


def _number(path: Path) -> float | None:
    text = _read(path).strip()
    return float(text) if text.isdigit() else None


def _tightest(limits: list[float]) -> float | None:
    return min(limits) if limits else None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
