"""The limits a run's participants ran under, and how much slower the first computed than the last.

``results show`` prints both: the CPU and memory limits in force (from the
run record) and, for a sweep that ran the whole model on each side (split 0:
all on the next participant; the last split: all on the first), the measured
ratio of the two whole-model compute times — how much slower the emulated
"phone" was than the "cloud" on the machine the run used.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..metrics.record import ParticipantRecord, RunRecord
from ..units import format_size
from .summary import SplitRow

__all__ = ["WholeModelRatio", "limits_lines", "whole_model_ratio"]


def limits_lines(record: RunRecord) -> list[str]:
    """``phone: cpu 0.1 (1 ms per 10 ms), memory 2 GiB``, one per participant with limits.

    Besides its own ``limits:``, a participant reports what its cgroups
    enforced (a lab host's ``--cpu``, a container's quota): shown where it is
    the only limit, or tighter than the participant's own.
    """
    lines = []
    for name, facts in record.participants.items():
        parts = _own_limits(facts) + _host_limits(facts)
        if parts:
            how = record.launch.get(name, "")
            lines.append(f"{name}: {', '.join(parts)}" + (f" [{how}]" if how else ""))
    return lines


def _own_limits(facts: ParticipantRecord) -> list[str]:
    parts = []
    if facts.cpu_limit is not None:
        period_ms = facts.cpu_period_us / 1000
        # A throttled participant says what enforced its limit; cgroups is the default mechanism.
        by = ", by signals" if facts.enforced_cpu_by == "signals" else ""
        share = f"{facts.cpu_limit * period_ms:g} ms per {period_ms:g} ms{by}"
        parts.append(f"cpu {facts.cpu_limit:g} ({share})")
    if facts.memory_limit_bytes is not None:
        parts.append(f"memory {format_size(facts.memory_limit_bytes)}")
    return parts


def _host_limits(facts: ParticipantRecord) -> list[str]:
    parts = []
    if facts.enforced_cpu is not None and _tighter(facts.enforced_cpu, facts.cpu_limit):
        parts.append(f"cpu {facts.enforced_cpu:.3g} (enforced on its host)")
    memory = facts.enforced_memory_bytes
    if memory is not None and _tighter(memory, facts.memory_limit_bytes):
        parts.append(f"memory {format_size(memory)} (enforced on its host)")
    return parts


def _tighter(enforced: float, own: float | None) -> bool:
    """Whether the host's limit says more than the participant's own (none, or 1% tighter)."""
    return own is None or enforced < own * 0.99


@dataclass(frozen=True)
class WholeModelRatio:
    """Median whole-model compute time of the first participant over the next one's."""

    first_ms: float  # the whole model on the first participant (the last split)
    next_ms: float  # the whole model on the next participant (split 0)

    @property
    def ratio(self) -> float:
        """How many times slower the first participant computed the whole model."""
        return self.first_ms / self.next_ms if self.next_ms > 0 else float("inf")


def whole_model_ratio(rows: tuple[SplitRow, ...], layers: tuple[str, ...]) -> WholeModelRatio | None:
    """The ratio, when the run measured split 0 and the split after the model's last layer."""
    by_split = {row.split: row for row in rows if not row.placement}  # a placement is no split
    last = len(layers) if layers else max(by_split, default=0)
    if last == 0 or 0 not in by_split or last not in by_split:
        return None
    return WholeModelRatio(by_split[last].head.median, by_split[0].tail.median)
