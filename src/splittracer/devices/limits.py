"""CPU and memory limits of local participants, enforced by the kernel with cgroups.

A run with ``limits: {cpu: 0.1, memory: 2GiB}`` on a participant gets one
cgroup per limited participant under a parent named after the run, in the
cgroup this controller runs in (so limits set above it still hold):

- cgroup v2 (``cgroup.subtree_control``, ``cpu.max``, ``memory.max``) where the
  unified hierarchy offers the controller, else
- cgroup v1 (``cpu.cfs_quota_us``/``cpu.cfs_period_us``, ``memory.limit_in_bytes``)
  where that controller has its own hierarchy;

each controller is taken from whichever of the two offers it writably, so a
machine with v1 ``cpu`` and ``memory`` beside an empty v2 hierarchy works.
The CPU quota uses a short period (10 ms) so that a throttled layer is slowed
evenly rather than run at full speed and then stopped for most of a long
period. Where neither hierarchy can be written, :class:`LimitsError` says
what is missing: limits are never silently left out.

Without a writable cgroup the CPU limit can be enforced with signals instead
(:mod:`.throttle`: a parent process stops and resumes the participant, no
root needed); ``cpu_by`` on :class:`ResourceLimits` picks the mechanism and
:func:`cpu_mechanism` resolves ``auto``. Memory limits have no such
fallback: they need cgroups.

The participant moves itself into its cgroups before it executes Python (a
shell wrapper writes its pid, then ``exec``), so everything it allocates is
charged there. Its CPU quota is written once it listens
(:meth:`ParticipantCgroup.throttle`): importing torch under a 0.1 quota
alone would take most of a minute and measures nothing of the run. The
cgroups are removed when the participant is stopped and when the run's
deployer closes, also after a failure.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import RunError
from ..units import format_size

__all__ = [
    "CPU_PERIOD_US",
    "LimitsError",
    "ParticipantCgroup",
    "ResourceLimits",
    "RunCgroups",
    "cpu_mechanism",
    "cpu_quota",
    "remove_cgroup",
]

CPU_PERIOD_US = 10_000
"""The CFS period: 10 ms, short enough that throttling is even across a layer."""
MIN_QUOTA_US = 1_000  # the kernel's smallest quota; below it the period grows instead
MAX_PERIOD_US = 1_000_000  # the kernel's largest period
_HINT = (
    "CPU and memory limits need a writable cgroup hierarchy with the cpu and memory controllers: "
    "run as root, or in a cgroup delegated to this user (systemd-run --user --scope -p Delegate=yes). "
    "A CPU limit alone also works without them: limits.by: signals (memory limits need cgroups)."
)


class LimitsError(RunError):
    """A participant's CPU or memory limit cannot be enforced on this machine."""


@dataclass(frozen=True)
class ResourceLimits:
    """What one participant may use: a fraction of one CPU, and bytes of memory (None: no limit)."""

    cpu: float | None = None
    memory_bytes: int | None = None
    cpu_by: str = "auto"  # how ``cpu`` is enforced: "cgroup", "signals", or "auto" (see cpu_mechanism)

    def __bool__(self) -> bool:
        return self.cpu is not None or self.memory_bytes is not None

    def describe(self) -> str:
        """``cpu 0.1 (1 ms per 10 ms), memory 2 GiB``; ``none`` without limits."""
        parts = []
        if self.cpu is not None:
            quota, period = cpu_quota(self.cpu)
            parts.append(f"cpu {self.cpu:g} ({quota / 1000:g} ms per {period / 1000:g} ms)")
        if self.memory_bytes is not None:
            parts.append(f"memory {format_size(self.memory_bytes)}")
        return ", ".join(parts) or "none"


def cpu_quota(cpu: float) -> tuple[int, int]:
    """``(quota_us, period_us)`` for ``cpu`` CPUs: a 10 ms period, longer only below a 1 ms quota."""
    period = min(MAX_PERIOD_US, max(CPU_PERIOD_US, math.ceil(MIN_QUOTA_US / cpu)))
    return max(MIN_QUOTA_US, round(cpu * period)), period


def cpu_mechanism(limits: ResourceLimits, mounts: str | None = None, own: str | None = None) -> str:
    """How ``limits.cpu`` is enforced here: ``cgroup``, ``signals``, or ``""`` without a CPU limit.

    ``auto`` is ``cgroup`` where a cgroup hierarchy with the cpu controller
    can be written, ``signals`` otherwise. ``mounts`` and ``own`` as for
    :func:`find_hierarchy` (default: this process's).
    """
    if limits.cpu is None:
        return ""
    if limits.cpu_by != "auto":
        return limits.cpu_by
    mounts = mounts if mounts is not None else _read(Path("/proc/self/mounts"))
    own = own if own is not None else _read(Path("/proc/self/cgroup"))
    return "cgroup" if isinstance(find_hierarchy("cpu", mounts, own), _Hierarchy) else "signals"


@dataclass(frozen=True)
class _Hierarchy:
    """Where one controller lives: its cgroup version and the cgroup this process is in."""

    controller: str
    version: int
    base: Path


def find_hierarchy(controller: str, mounts: str, own: str) -> _Hierarchy | str:
    """The writable hierarchy offering ``controller``, or why there is none.

    ``mounts`` is the text of ``/proc/self/mounts``; ``own`` that of ``/proc/self/cgroup``.
    """
    found = _v2_hierarchy(controller, mounts, own)
    if isinstance(found, _Hierarchy):
        return found
    v1 = _v1_hierarchy(controller, mounts, own)
    return v1 if isinstance(v1, _Hierarchy) else f"{found}; {v1}"


def _v2_hierarchy(controller: str, mounts: str, own: str) -> _Hierarchy | str:
    points = [fields[1] for fields in _mounts(mounts) if fields[2] == "cgroup2"]
    path = next((line[3:] for line in own.splitlines() if line.startswith("0::")), "/")
    if not points:
        return "no cgroup v2 hierarchy is mounted"
    base = _inside(Path(points[0]), path)
    offered = _read(base / "cgroup.controllers").split()
    if controller not in offered:
        return f"cgroup v2 at {points[0]} offers no '{controller}' controller ({' '.join(offered) or 'none'})"
    return _writable(_Hierarchy(controller, 2, base))


def _v1_hierarchy(controller: str, mounts: str, own: str) -> _Hierarchy | str:
    point = next((f[1] for f in _mounts(mounts) if f[2] == "cgroup" and controller in f[3].split(",")), None)
    if point is None:
        return f"no cgroup v1 hierarchy has the '{controller}' controller"
    path = "/"
    for line in own.splitlines():
        _, names, rest = line.split(":", 2)
        if controller in names.split(","):
            path = rest
    return _writable(_Hierarchy(controller, 1, _inside(Path(point), path)))


def _writable(hierarchy: _Hierarchy) -> _Hierarchy | str:
    if os.access(hierarchy.base, os.W_OK):
        return hierarchy
    return f"cgroup v{hierarchy.version} '{hierarchy.controller}' at {hierarchy.base} is not writable"


def _inside(mount: Path, path: str) -> Path:
    # A container may mount only its own part of the hierarchy: then its cgroup is the mount itself.
    nested = mount / path.lstrip("/")
    return nested if nested.is_dir() else mount


def _mounts(text: str) -> list[list[str]]:
    return [fields for line in text.splitlines() if len(fields := line.split()) >= 4]


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str, participant: str) -> None:
    try:
        path.write_text(value)
    except OSError as exc:
        raise LimitsError(
            f"cannot enforce the limits of participant '{participant}': writing '{value}' to {path} "
            f"failed: {exc.strerror or exc}",
            hint=_HINT,
        ) from exc


class ParticipantCgroup:
    """The cgroups of one participant (one per hierarchy in use), with its limits written."""

    def __init__(self, participant: str, limits: ResourceLimits, dirs: dict[str, tuple[int, Path]]) -> None:
        self.participant = participant
        self.limits = limits
        self.dirs = dirs  # controller -> (version, directory)
        self._oom_kills: int | None = None

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run by a shell that first moves itself into these cgroups, then ``exec``s it."""
        procs = sorted({str(d / "cgroup.procs") for _, d in self.dirs.values()})
        script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
        return ["/bin/sh", "-c", script, "sh", *procs, "--", *command]

    def throttle(self) -> None:
        """Write the CPU quota (once the participant has started: see the module's notes)."""
        if self.limits.cpu is not None:
            _write_cpu(*self.dirs["cpu"], self.limits.cpu, self.participant)

    def oom_kills(self) -> int:
        """How many of its processes the kernel's out-of-memory killer ended (kept once removed)."""
        if self._oom_kills is not None:
            return self._oom_kills
        if "memory" not in self.dirs:
            return 0
        version, directory = self.dirs["memory"]
        text = _read(directory / ("memory.events" if version == 2 else "memory.oom_control"))
        found = re.search(r"^oom_kill (\d+)$", text, re.MULTILINE)
        return int(found[1]) if found else 0

    def out_of_memory_note(self) -> str:
        """One line naming the participant when the kernel killed it for memory; '' otherwise."""
        if not self.oom_kills() or self.limits.memory_bytes is None:
            return ""
        return (
            f"out of memory: the kernel killed participant '{self.participant}' at its memory limit of "
            f"{format_size(self.limits.memory_bytes)} (limits.memory); raise the limit or remove it"
        )

    def remove(self) -> None:
        """End what is left inside, then remove its directories."""
        if self._oom_kills is None:
            self._oom_kills = self.oom_kills()
        for _, directory in self.dirs.values():
            remove_cgroup(directory)


class RunCgroups:
    """The cgroups of one run: a parent named after the run, one child per limited participant."""

    def __init__(
        self, run_name: str, mounts: str | None = None, own: str | None = None, *, name: str | None = None
    ) -> None:
        # ``name``: the parent's exact name, for cgroups that outlive this process (a lab's hosts).
        self.name = name or f"splittracer-{re.sub(r'[^A-Za-z0-9_-]', '_', run_name)}-{os.getpid()}"
        self._mounts = mounts if mounts is not None else _read(Path("/proc/self/mounts"))
        self._own = own if own is not None else _read(Path("/proc/self/cgroup"))
        self._parents: dict[str, tuple[int, Path]] = {}
        self.children: list[ParticipantCgroup] = []

    def create(self, participant: str, limits: ResourceLimits) -> ParticipantCgroup:
        """Make ``participant``'s cgroups and write its limits; LimitsError if they cannot be enforced."""
        wanted = [c for c, v in (("cpu", limits.cpu), ("memory", limits.memory_bytes)) if v is not None]
        dirs = {c: self._child(self._parent(c, participant), participant) for c in wanted}
        cgroup = ParticipantCgroup(participant, limits, dirs)
        self.children.append(cgroup)
        if limits.memory_bytes is not None:
            _write_memory(*dirs["memory"], limits.memory_bytes, participant)
        return cgroup

    @property
    def directories(self) -> list[Path]:
        """The run's parent cgroups made so far, one per hierarchy."""
        return [directory for _, directory in self._parents.values()]

    def remove(self) -> None:
        """Remove every participant's cgroups, then the run's; idempotent."""
        for child in self.children:
            child.remove()
        for _, directory in self._parents.values():
            remove_cgroup(directory)
        self._parents.clear()

    def _parent(self, controller: str, participant: str) -> tuple[int, Path]:
        if controller in self._parents:
            return self._parents[controller]
        found = find_hierarchy(controller, self._mounts, self._own)
        if isinstance(found, str):
            raise LimitsError(
                f"cannot enforce the {controller} limit of participant '{participant}': {found}", hint=_HINT
            )
        directory = found.base / self.name
        if found.version == 2:
            _enable(found.base, controller, participant)
        _mkdir(directory, participant)
        if found.version == 2:
            _enable(directory, controller, participant)
        self._parents[controller] = (found.version, directory)
        return self._parents[controller]

    def _child(self, parent: tuple[int, Path], participant: str) -> tuple[int, Path]:
        version, directory = parent
        child = directory / participant
        _mkdir(child, participant)
        return version, child


def _enable(directory: Path, controller: str, participant: str) -> None:
    """Let ``directory``'s children use ``controller`` (cgroup v2)."""
    if controller not in _read(directory / "cgroup.subtree_control").split():
        _write(directory / "cgroup.subtree_control", f"+{controller}", participant)


def _mkdir(directory: Path, participant: str) -> None:
    try:
        directory.mkdir(exist_ok=True)
    except OSError as exc:
        raise LimitsError(
            f"cannot enforce the limits of participant '{participant}': cannot create the cgroup "
            f"{directory}: {exc.strerror or exc}",
            hint=_HINT,
        ) from exc


def _write_cpu(version: int, directory: Path, cpu: float, participant: str) -> None:
    quota, period = cpu_quota(cpu)
    if version == 2:
        _write(directory / "cpu.max", f"{quota} {period}", participant)
    else:
        _write(directory / "cpu.cfs_period_us", str(period), participant)
        _write(directory / "cpu.cfs_quota_us", str(quota), participant)


def _write_memory(version: int, directory: Path, limit: int, participant: str) -> None:
    if version == 2:
        _write(directory / "memory.max", str(limit), participant)
        swap = directory / "memory.swap.max"  # swap would hide the limit: a slow run, not an OOM
        if swap.exists():
            _write(swap, "0", participant)
    else:
        _write(directory / "memory.limit_in_bytes", str(limit), participant)
        swap = directory / "memory.memsw.limit_in_bytes"
        if swap.exists():
            _write(swap, str(limit), participant)


def remove_cgroup(directory: Path, attempts: int = 50) -> None:
    """rmdir ``directory``, first ending any process still in it (only ours can be there)."""
    for _ in range(attempts):
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                return
        for pid in _read(directory / "cgroup.procs").split():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.02)
