"""Two-device placement of a DAG-shaped model by minimum s-t cut (DADS, Hu et al. 2019).

Vertices are the model's layers, the input (layer 0, pinned to the first
device) and the output (layer L+1, pinned to the second); ``s`` stands
for the first device and ``t`` for the second. For each layer ``v``:

* ``s -> v`` costs ``v``'s time on the second device (cut when ``v`` runs there),
* ``v -> t`` costs ``v``'s time on the first device (cut when ``v`` runs there).

Each value made by layer ``u`` and read by layers ``c1..cn`` gets an
auxiliary vertex ``a``: ``u -> a`` costs the transfer of the value and
``a -> ci`` is infinite, so a tensor read by several layers on the far
side is paid for once. Infinite edges ``ci -> u`` forbid sending a value
back to the first device: the first device's layers are closed under
"comes before", so it runs all of them, sends every crossing tensor in one
message, and the second device runs the rest — one link latency, paid once.

A contiguous split after layer ``k`` is one such cut, so the minimum is
never worse than the best contiguous split; it can be better when a
branch is cheap on the first device but its input is large (see
``tests/unit/test_plan_dag.py``). The plan gives its first device's layers
as a placement the split engine builds (:meth:`SplitModel.place`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import SplitTracerError
from ..split.parts import compact
from .chain import Link
from .graph import ModelGraph

__all__ = ["DagPlan", "estimate_placement", "min_cut", "plan_dag", "top_placements"]


@dataclass(frozen=True)
class DagPlan:
    """Which layers run on the first device, what crosses, and the predicted latency."""

    first: tuple[int, ...]
    second: tuple[int, ...]
    sent: tuple[str, ...]
    bytes: int
    head_ms: float
    transfer_ms: float
    tail_ms: float
    reply_ms: float

    @property
    def total_ms(self) -> float:
        """End-to-end predicted latency."""
        return self.head_ms + self.transfer_ms + self.tail_ms + self.reply_ms

    @property
    def placement(self) -> str:
        """The first device's layers as ranges (``1-3,7``): what ``SplitModel.place`` and
        ``model inspect --placement`` read."""
        return compact(self.first)

    @property
    def contiguous(self) -> bool:
        """Whether the first device runs exactly layers 1..k (an ordinary split)."""
        return self.first == tuple(range(1, len(self.first) + 1))


def plan_dag(
    graph: ModelGraph,
    first_ms: Sequence[float],
    second_ms: Sequence[float],
    link: Link,
    *,
    reply: Link | None = None,
) -> DagPlan:
    """The placement of ``graph``'s layers on two devices with least predicted latency."""
    count = graph.num_layers
    if len(first_ms) != count or len(second_ms) != count:
        raise SplitTracerError(f"every device needs one cost per layer ({count})")
    source, sink, aux = count + 2, count + 3, count + 4
    edges: list[tuple[int, int, float]] = [(source, 0, math.inf), (count + 1, sink, math.inf)]
    for i in range(1, count + 1):
        edges += [(source, i, second_ms[i - 1]), (i, sink, first_ms[i - 1])]
    for n, value in enumerate(graph.values):
        a = aux + n
        size = math.inf if value.bytes is None else link.transfer_ms(value.bytes) - link.latency_s * 1000
        edges.append((value.layer, a, size))
        for c in value.consumers:
            edges += [(a, c, math.inf), (c, value.layer, math.inf)]
    _flow, side = min_cut(aux + len(graph.values), edges, source, sink)
    return _describe(graph, side, first_ms, second_ms, link, reply or Link())


def estimate_placement(
    graph: ModelGraph,
    first: Iterable[int],
    first_ms: Sequence[float],
    second_ms: Sequence[float],
    link: Link,
    *,
    reply: Link | None = None,
) -> DagPlan:
    """The predicted latency of a given placement (the first device's layers), priced as
    :func:`plan_dag` prices a cut: what a measured placement is compared with."""
    return _describe(graph, {0, *first}, first_ms, second_ms, link, reply or Link())


RATE_STEPS = tuple(2.0**i for i in range(-6, 7))  # 1/64 .. 64 times the link's rate


def top_placements(
    graph: ModelGraph,
    first_ms: Sequence[float],
    second_ms: Sequence[float],
    link: Link,
    k: int,
    *,
    reply: Link | None = None,
) -> list[DagPlan]:
    """The ``k`` placements predicted fastest on ``link``, fastest first.

    The candidates are every allowed prefix cut and the minimum-cut placement
    at the link's rate and at 1/64 to 64 times it (each a placement that is
    best for some rate), all priced on ``link``; the first is the minimum cut
    itself. Enumerating every closed layer set is exponential, so the rest are
    the best of these, not necessarily the k best of all.
    """
    sides: dict[tuple[int, ...], None] = {}
    for factor in RATE_STEPS:
        scaled = Link(link.bandwidth_bps * factor, link.latency_s)
        sides[plan_dag(graph, first_ms, second_ms, scaled).first] = None
    for cut, allowed in enumerate(graph.allowed):
        if allowed:
            sides[tuple(range(1, cut + 1))] = None
    priced = [estimate_placement(graph, side, first_ms, second_ms, link, reply=reply) for side in sides]
    finite = [p for p in priced if math.isfinite(p.total_ms) and all(_sendable(graph, p))]
    return sorted(finite, key=lambda p: (p.total_ms, len(p.first)))[:k]


def _sendable(graph: ModelGraph, plan: DagPlan) -> list[bool]:
    sizes = {v.name: v.bytes for v in graph.values}
    return [sizes.get(name) is not None for name in plan.sent]


def _describe(
    graph: ModelGraph,
    side: set[int],
    first_ms: Sequence[float],
    second_ms: Sequence[float],
    link: Link,
    reply: Link,
) -> DagPlan:
    count = graph.num_layers
    first = tuple(i for i in range(1, count + 1) if i in side)
    second = tuple(i for i in range(1, count + 1) if i not in side)
    crossing = [v for v in graph.values if v.layer in side and any(c not in side for c in v.consumers)]
    size = sum(v.bytes or 0 for v in crossing)
    return DagPlan(
        first=first,
        second=second,
        sent=tuple(v.name for v in crossing),
        bytes=size,
        head_ms=sum(first_ms[i - 1] for i in first),
        transfer_ms=link.transfer_ms(size),
        tail_ms=sum(second_ms[i - 1] for i in second),
        reply_ms=reply.transfer_ms(graph.output_bytes),
    )


def min_cut(
    size: int, edges: Iterable[tuple[int, int, float]], source: int, sink: int
) -> tuple[float, set[int]]:
    """Maximum flow value and the source side of a minimum cut (Edmonds and Karp).

    Vertices are ``0..size-1``; parallel edges add up; ``math.inf`` is an
    edge that may not be cut. Raises SplitTracerError when every cut is infinite.
    """
    residual: list[dict[int, float]] = [{} for _ in range(size)]
    for u, v, capacity in edges:
        residual[u][v] = residual[u].get(v, 0.0) + capacity
        residual[v].setdefault(u, 0.0)
    flow = 0.0
    while True:
        parent = _reachable(residual, source)
        if sink not in parent:
            return flow, set(parent)
        path = _path(parent, sink)
        pushed = min(residual[u][v] for u, v in path)
        if math.isinf(pushed):
            raise SplitTracerError("no finite cut separates the two devices")
        for u, v in path:
            residual[u][v] -= pushed
            residual[v][u] += pushed
        flow += pushed


_EPS = 1e-12


def _reachable(residual: list[dict[int, float]], source: int) -> dict[int, int]:
    """Breadth-first search over edges with capacity left; vertex -> its parent."""
    parent = {source: source}
    queue = deque([source])
    while queue:
        u = queue.popleft()
        for v, left in residual[u].items():
            if left > _EPS and v not in parent:
                parent[v] = u
                queue.append(v)
    return parent


def _path(parent: dict[int, int], sink: int) -> list[tuple[int, int]]:
    path = []
    v = sink
    while parent[v] != v:
        path.append((parent[v], v))
        v = parent[v]
    return path
