"""Choosing split and codec together, within an accuracy budget.

A codec on the cut scales the bytes a transfer carries and may cost
accuracy. Both are measured, not modelled: a profile run (a ``Sweep`` with
``codecs:`` on a labelled or agreement set) gives, per split and codec, the
bytes on the wire relative to ``none`` and the accuracy drop against
``none`` at the same split (:class:`CodecQuality`). :func:`plan_codecs`
applies them to the chain plan's per-split predictions: the first hop's
transfer is predicted again for the smaller cut, and every (split, codec)
whose drop is within ``max_drop`` is ranked by total latency. ``none`` is
always allowed (it drops nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .chain import ChainEstimate, Link

__all__ = ["CodecChoice", "CodecQuality", "parse_drop", "plan_codecs"]


@dataclass(frozen=True)
class CodecQuality:
    """What one codec did at one split of a profile run."""

    split: int
    codec: str
    wire_ratio: float  # bytes on the wire / bytes on the wire with codec none, same split
    drop: float  # accuracy (or agreement) with none minus with this codec, 0..1


@dataclass(frozen=True)
class CodecChoice:
    """One (split, codec) predicted: its latency and the accuracy it gives up."""

    cuts: tuple[int, ...]
    codec: str
    total_ms: float
    transfer_ms: float
    bytes: int
    drop: float

    @property
    def split(self) -> int:
        """The first cut."""
        return self.cuts[0]


def plan_codecs(
    rows: Sequence[ChainEstimate], link: Link, measured: Sequence[CodecQuality], max_drop: float
) -> list[CodecChoice]:
    """Every (split, codec) within ``max_drop``, fastest first; ``none`` at every split.

    ``rows`` are the chain plan's predictions (their first hop crosses
    ``link``); a split the profile run did not measure keeps ``none`` only.
    """
    by_split: dict[int, list[CodecQuality]] = {}
    for quality in measured:
        by_split.setdefault(quality.split, []).append(quality)
    choices = []
    for row in rows:
        allowed = [CodecQuality(row.cuts[0], "none", 1.0, 0.0)]
        allowed += [q for q in by_split.get(row.cuts[0], []) if q.codec != "none" and q.drop <= max_drop]
        for quality in allowed:
            nbytes = round(row.bytes[0] * quality.wire_ratio)
            transfer = link.transfer_ms(nbytes)
            total = row.total_ms - row.transfers_ms[0] + transfer
            choices.append(CodecChoice(row.cuts, quality.codec, total, transfer, nbytes, quality.drop))
    return sorted(choices, key=lambda c: (c.total_ms, c.drop))


def parse_drop(text: str | float) -> float:
    """``1%``, ``"0.01"`` or ``0.01`` as a share of accuracy (0..1); ValueError for anything else."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ValueError(f"{text!r} is not an accuracy drop: expected a share such as 1% or 0.01")
    return value
