"""Metrics a handler records with ``ctx.record``, summarised like the spans.

A sample recorded inside an inference carries its id and split; it counts
toward the row of that inference's chain of cuts when the inference itself
counts (completed, not warm-up), exactly as in :func:`.summary.summarize`.
Samples tied to no inference (recorded in ``setup`` or between inferences)
are summarised apart, with ``cuts`` empty. Rows are per metric name,
participant, chain of cuts and set of attribute values, so a metric recorded
with ``cls="dog"`` and ``cls="cat"`` gives one row for each.

Readings of the system and energy samplers, the built-in ``split_plan``
decisions, clock offsets and predictions (:mod:`.accuracy`) have their own
sections and are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..metrics.accuracy import PREDICTION
from ..metrics.names import ENERGY_METRICS, SYSTEM_METRICS
from ..metrics.spans import AttrValue, Metric, Span
from .summary import Quantiles, counted_inferences

__all__ = ["MetricRow", "custom_metrics", "metric_rows_to_dicts", "summarize_metrics"]

# Not the user's own: shown in their own sections, or attrs every sample has.
_NOT_CUSTOM = frozenset(
    {*SYSTEM_METRICS, *ENERGY_METRICS.values(), "split_plan", "clock_offset_ns", PREDICTION}
)
_NOT_GROUPED = frozenset({"inference", "warmup"})

_Key = tuple[str, str, tuple[int, ...], tuple[tuple[str, AttrValue], ...]]  # name, participant, cuts, attrs


@dataclass(frozen=True)
class MetricRow:
    """One custom metric at one chain of cuts (``()``: outside any inference), for one set of attrs."""

    name: str
    participant: str
    cuts: tuple[int, ...]
    attrs: tuple[tuple[str, AttrValue], ...]
    count: int
    value: Quantiles
    mean: float

    @property
    def cut_label(self) -> str:
        """'5', '5→12', or '—' for samples outside any inference."""
        return "→".join(map(str, self.cuts)) if self.cuts else "—"

    @property
    def attrs_label(self) -> str:
        """The attrs as 'key=value' pairs, '' when there are none."""
        return ", ".join(f"{k}={v}" for k, v in self.attrs)


def custom_metrics(metrics: Iterable[Metric]) -> list[Metric]:
    """The samples handlers recorded, without the samplers' readings and the split plans."""
    return [m for m in metrics if m.name not in _NOT_CUSTOM]


def summarize_metrics(metrics: Iterable[Metric], spans: Iterable[Span]) -> list[MetricRow]:
    """One row per (name, participant, cuts, attrs) of the counted custom samples."""
    counted = counted_inferences(spans)
    groups: defaultdict[_Key, list[float]] = defaultdict(list)
    for m in custom_metrics(metrics):
        cuts = _cuts_of(m, counted)
        if cuts is None:
            continue
        attrs = tuple(sorted((k, v) for k, v in m.attrs.items() if k not in _NOT_GROUPED))
        groups[m.name, m.participant, cuts, attrs].append(m.value)
    return [_row(key, groups[key]) for key in sorted(groups, key=_order)]


def _cuts_of(m: Metric, counted: dict[tuple[int, int], tuple[int, ...]]) -> tuple[int, ...] | None:
    """The cuts of the sample's inference; () outside any; None when that inference does not count."""
    if m.inference < 0:
        return ()
    return counted.get((m.split, m.inference))


def _order(key: _Key) -> tuple[Any, ...]:
    name, participant, cuts, attrs = key
    return (name, participant, cuts, [(k, str(v)) for k, v in attrs])


def _row(key: _Key, values: Sequence[float]) -> MetricRow:
    name, participant, cuts, attrs = key
    mean = sum(values) / len(values)
    return MetricRow(name, participant, cuts, attrs, len(values), Quantiles.of(values), mean)


def metric_rows_to_dicts(rows: Iterable[MetricRow]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts; ``split`` and ``cuts`` are null and [] outside any inference."""
    return [
        {
            "name": r.name,
            "participant": r.participant,
            "split": r.cuts[0] if r.cuts else None,
            "cuts": list(r.cuts),
            "attrs": dict(r.attrs),
            "count": r.count,
            "median": r.value.median,
            "p25": r.value.p25,
            "p75": r.value.p75,
            "mean": r.mean,
        }
        for r in rows
    ]
