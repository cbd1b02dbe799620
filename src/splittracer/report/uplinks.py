"""A sweep repeated over several uplinks: one per-split summary per link, and its best split.

A :class:`~splittracer.builtin.Sweep` with ``uplinks: [3g, lte, wifi]`` tags
every ``inference`` span with ``attrs['uplink']``; the other spans of that
inference (compute, transfers, on every participant) share its id. Grouping
the inference ids by that tag and summarising each group apart gives one
table, and one chart, per link — Neurosurgeon's figure once for each network.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..metrics.spans import Span
from .summary import SplitRow, summarize

__all__ = ["UplinkSweep", "best_row", "summarize_by_uplink"]


@dataclass(frozen=True)
class UplinkSweep:
    """The per-split rows measured over one uplink, and the split with the lowest median total."""

    uplink: str
    rows: tuple[SplitRow, ...]

    @property
    def best(self) -> SplitRow:
        """The row with the lowest median end-to-end time."""
        return best_row(self.rows)


def best_row(rows: Sequence[SplitRow]) -> SplitRow:
    """The row with the lowest median total (the first of equals)."""
    if not rows:
        raise ValueError("no rows to choose from")
    return min(rows, key=lambda r: r.total.median)


def summarize_by_uplink(spans: Iterable[Span]) -> tuple[UplinkSweep, ...]:
    """One :class:`UplinkSweep` per uplink tag, in the order the run swept them; empty when none is tagged."""
    spans = list(spans)
    links: dict[int, str] = {}
    for span in spans:
        if span.kind == "inference" and "uplink" in span.attrs:
            links[span.inference] = str(span.attrs["uplink"])
    order = list(dict.fromkeys(links[i] for i in sorted(links)))
    sweeps = []
    for link in order:
        ids = {i for i, name in links.items() if name == link}
        rows = summarize(s for s in spans if s.inference in ids)
        if rows:
            sweeps.append(UplinkSweep(link, tuple(rows)))
    return tuple(sweeps)
