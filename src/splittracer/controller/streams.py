"""A manifest's ``Stream`` tasks, resolved at run start: trace files read, ``split: auto`` planned.

``trace: frames.csv`` names a file in the workspace (else beside the
manifest), one arrival time a line in seconds from the stream's start;
blank lines and ``#`` comments are skipped. The controller reads it, so
the head gets the times themselves; a bad value is a ConfigError at the
file's line.

``split: auto`` plans the split for the most frames per second
(:mod:`splittracer.plan.chain`'s ``throughput`` objective) from the route's
device profiles, as ``splittracer plan --objective throughput`` does. Each
hop's rate is the sender's emulated ``uplink``, else the task's
``bandwidth``; the clients are every replica of every participant that
streams to the same last participant. The choice and its prediction travel
with the task (``planned``) and the head records them as a ``split_plan``
metric, so results show which split was chosen and why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..builtin import Stream
from ..builtin.streaming import PLANNED, trace_problem
from ..config import KeyPath
from ..errors import ConfigError, SplitTracerError
from ..manifest import Manifest, Participant, find_workspace_root
from ..plan.chain import ChainEstimate, Link, plan_chain
from ..tasks import Task
from ..units import parse_rate
from .autosplit import planned_costs

__all__ = ["read_trace", "resolve_streams"]


def resolve_streams(
    manifest: Manifest, playbook: Sequence[tuple[str, Task]], workspace: Path | None = None
) -> tuple[tuple[str, Task], ...]:
    """``playbook`` (built from ``manifest``, in its order) with every Stream's trace file read
    and its ``split: auto`` planned; a located ConfigError for a mistake."""
    keys = [("playbook", name, i) for name, entries in manifest.playbook.items() for i in range(len(entries))]
    resolver = _Streams(manifest, workspace, playbook)
    return tuple(
        (name, resolver.resolve(key, name, task) if isinstance(task, Stream) else task)
        for key, (name, task) in zip(keys, playbook)
    )


def read_trace(path: Path) -> list[float]:
    """Arrival times from a file, one a line (seconds); a ConfigError at the first bad line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the trace: {exc}", path=str(path)) from None
    times: list[float] = []
    numbers: list[int] = []
    for number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            times.append(float(text))
        except ValueError:
            raise ConfigError(
                f"'{text}' is not a time in seconds",
                path=str(path),
                line=number,
                hint="One arrival time a line, in seconds from the stream's start (e.g. 0.033).",
            ) from None
        numbers.append(number)
    problem = trace_problem(times)
    if problem is not None:
        index, why = problem
        raise ConfigError(why, path=str(path), line=numbers[index] if index >= 0 else None)
    return times


@dataclass
class _Streams:
    manifest: Manifest
    workspace: Path | None
    playbook: Sequence[tuple[str, Task]]

    def resolve(self, key: KeyPath, head: str, task: Stream) -> Stream:
        if isinstance(task.trace, str):
            task = dataclasses.replace(task, trace=self._trace(key, task.trace))
        if task.split == PLANNED:
            task = self._plan(key, head, task)
        return task

    def _trace(self, key: KeyPath, name: str) -> list[float]:
        path = Path(name).expanduser()
        if not path.is_absolute():
            path = self._root / path
        if not path.is_file():
            raise self.manifest.error_at(
                (*key, "params", "trace"),
                f"trace file '{name}' does not exist (looked for {path})",
                "Give a file in the workspace with one arrival time a line, or the times: [0, 0.033, ...].",
            )
        try:
            return read_trace(path)
        except ConfigError as exc:
            line = self.manifest.line_of((*key, "params", "trace"))
            named = f"the trace of {self.manifest.path}:{line}, key '{'.'.join(map(str, key))}.params.trace'"
            hint = f"{exc.hint} " if exc.hint else ""
            raise ConfigError(exc.detail, path=exc.path, line=exc.line, hint=f"{hint}({named})") from None

    @property
    def _root(self) -> Path:
        if self.workspace is not None:
            return self.workspace
        base = self.manifest.path.parent if self.manifest.path is not None else Path.cwd()
        return find_workspace_root(base) or base

    def _plan(self, key: KeyPath, head: str, task: Stream) -> Stream:
        if self.manifest.model is None:
            raise self.manifest.error_at((*key, "params", "split"), "split: auto needs the manifest's model")
        route = [self._participant(key, name) for name in [head, *task.next]]
        graph, costs = planned_costs(self.manifest, self.workspace, key, [p.name for p in route])
        links = self._links(key, task, route)
        clients = self._clients(task)
        try:
            chain = plan_chain(
                [p.name for p in route],
                [c.ms for c in costs],
                graph.split_bytes,
                links,
                allowed=graph.allowed,
                reply_links=[Link(p.limits.uplink_bps, p.limits.latency_s) for p in route[1:]],
                objective="throughput",
                clients=clients,
            )
        except SplitTracerError as exc:
            raise self.manifest.error_at((*key, "params", "split"), exc.message, exc.hint) from None
        best = chain.best
        cuts = list(best.cuts)
        return dataclasses.replace(
            task,
            split=cuts[0] if len(cuts) == 1 else -1,
            cuts=None if len(cuts) == 1 else cuts,
            bandwidth=None,
            planned=_why(best, clients, links[0]),
        )

    def _participant(self, key: KeyPath, name: str) -> Participant:
        found = self.manifest.participants.get(name)
        if found is None:
            raise self.manifest.error_at(
                (*key, "params", "next"),
                f"no participant named '{name}'",
                f"Participants: {', '.join(self.manifest.participants)}.",
            )
        return found

    def _links(self, key: KeyPath, task: Stream, route: list[Participant]) -> list[Link]:
        """Each hop: the sender's emulated uplink, else the task's bandwidth for it."""
        hops = len(route) - 1
        given = [task.bandwidth] * hops if isinstance(task.bandwidth, str) else list(task.bandwidth or [])
        where = (*key, "params", "bandwidth")
        if given and len(given) != hops:
            raise self.manifest.error_at(
                where, f"{len(given)} bandwidths for {hops} hop(s)", "Give one, or one per hop."
            )
        links = []
        for hop, sender in enumerate(route[:-1]):
            rate = sender.limits.uplink_bps
            if not math.isfinite(rate):
                if not given:
                    raise self.manifest.error_at(
                        (*key, "params", "split"),
                        f"split: auto plans for frames/s: it needs the rate of the hop from '{sender.name}'",
                        f"Emulate it (participants.{sender.name}.limits.uplink: lte) "
                        "or give bandwidth: 20mbit.",
                    )
                rate = parse_rate(given[hop])
            links.append(Link(rate, sender.limits.latency_s))
        return links

    def _clients(self, task: Stream) -> int:
        """Every replica of every participant whose playbook streams to ``task``'s last hop."""
        server = task.next[-1]
        senders = {name for name, t in self.playbook if isinstance(t, Stream) and t.next[-1:] == [server]}
        return max(sum(self.manifest.participants[name].size for name in senders), 1)


def _why(best: ChainEstimate, clients: int, first: Link) -> dict[str, float | str]:
    """What the head records of the choice (a ``split_plan`` metric)."""
    fps = best.frames_per_s(clients)
    shared = f", {clients} clients sharing the last participant" if clients > 1 else ""
    return {
        "reason": f"throughput: {fps:.1f} frames/s predicted{shared}",
        "objective": "throughput",
        "cuts": ",".join(map(str, best.cuts)),
        "predicted_fps": fps,
        "predicted_ms": best.total_ms,
        "cycle_ms": best.cycle_ms(clients),
        "clients": float(clients),
        "bandwidth_bps": first.bandwidth_bps if math.isfinite(first.bandwidth_bps) else 0.0,
    }
