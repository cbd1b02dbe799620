"""Per-split summary of a split-inference sweep: head, transfer, tail, total.

Every span of inference ``i`` at split ``k`` is tagged ``inference=i,
split=k``. Per inference:

* head = sum of ``compute`` spans at stage 0 (the phone);
* tail = sum of ``compute`` spans at stage >= 1 (the cloud, or every later hop);
* transfer = sum of every ``transfer`` span (sender's serialise start to
  receiver's deserialise end, recorded by the receiver), both the forward
  transfer of the cut's tensors and the ``reply`` bringing the result back,
  since the user waits for both;
* bytes = bytes of the ``forward`` transfers only: what crosses the cut. A
  reply (``attrs['direction'] == 'reply'``) is the same result at every split,
  so counting it would blur the comparison; a transfer without a direction is
  taken as forward. In a longer chain the forward hops add up;
* total = the ``inference`` span, recorded once, end to end.

An inference is a sample only when it *completed*: its ``inference`` span
(recorded by the participant that started it, once the answer came back)
exists without ``attrs['error']``, which the recorder sets when the block
raised. One that failed (its span carries the error) or was cut short (no
``inference`` span at all: the run ended first) is no sample; :func:`incomplete`
lists them so a report can say how many and why. Warm-up inferences (any
span tagged ``attrs['warmup'] = True``) are never samples either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..metrics.spans import Span


@dataclass(frozen=True)
class Quantiles:
    """Median and interquartile range of one quantity, in milliseconds."""

    median: float
    p25: float
    p75: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Quantiles:
        """Quantiles of ``values`` (linear interpolation, as numpy's default)."""
        p25, median, p75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
        return cls(float(median), float(p25), float(p75))


@dataclass(frozen=True)
class SplitRow:
    """The summary of every measured inference at one split point.

    ``stages[s]`` is the compute time of stage ``s`` (one entry per device in
    the chain); ``other_ms`` is the median total less the median head,
    transfer and tail: the overhead no span accounts for (dispatch, queues).
    ``transfer`` covers forward and reply transfers; ``bytes_raw`` and
    ``bytes_wire`` are the median bytes of the forward transfers alone.
    """

    split: int
    count: int
    head: Quantiles
    transfer: Quantiles
    tail: Quantiles
    total: Quantiles
    stages: tuple[Quantiles, ...]
    other_ms: float
    bytes_raw: int
    bytes_wire: int


@dataclass
class _Inference:
    # Accumulated per (split, inference) while scanning spans once.
    stage_ms: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    transfer_ms: float = 0.0
    total_ms: float | None = None
    bytes_raw: int = 0
    bytes_wire: int = 0
    warmup: bool = False
    error: str = ""  # the exception type an errored ``inference`` span recorded


@dataclass(frozen=True)
class Incomplete:
    """An inference that started but did not complete, so it is no sample.

    ``error`` is the exception type its ``inference`` span recorded; empty
    when no ``inference`` span was recorded at all (the run ended first).
    """

    split: int
    inference: int
    error: str
    warmup: bool


def summarize(spans: Iterable[Span]) -> list[SplitRow]:
    """One row per split with completed, non-warm-up inferences, sorted by split."""
    by_split: defaultdict[int, list[_Inference]] = defaultdict(list)
    for (split, _), inference in _collect(spans).items():
        if inference.total_ms is not None and not inference.warmup:
            by_split[split].append(inference)
    return [_row(split, by_split[split]) for split in sorted(by_split)]


def incomplete(spans: Iterable[Span]) -> list[Incomplete]:
    """Every inference (warm-ups included) that did not complete, in inference order."""
    found = _collect(spans)
    return [
        Incomplete(split, index, inference.error, inference.warmup)
        for (split, index), inference in sorted(found.items(), key=lambda item: item[0][::-1])
        if inference.total_ms is None
    ]


def completed_inferences(spans: Iterable[Span]) -> set[int]:
    """The ids of the inferences (warm-ups included) whose ``inference`` span closed without an error."""
    return {index for (_, index), inference in _collect(spans).items() if inference.total_ms is not None}


def _collect(spans: Iterable[Span]) -> dict[tuple[int, int], _Inference]:
    found: defaultdict[tuple[int, int], _Inference] = defaultdict(_Inference)
    for span in spans:
        if span.inference >= 0 and span.split >= 0:
            _accumulate(found[span.split, span.inference], span)
    return found


def _accumulate(inference: _Inference, span: Span) -> None:
    inference.warmup = inference.warmup or span.attrs.get("warmup") is True
    if span.kind == "compute":
        inference.stage_ms[span.stage] += span.duration_ms
    elif span.kind == "transfer":
        inference.transfer_ms += span.duration_ms
        if span.attrs.get("direction") != "reply":
            inference.bytes_raw += span.bytes_raw
            inference.bytes_wire += span.bytes_wire
    elif span.kind == "inference":
        error = span.attrs.get("error")
        if error:
            inference.error = str(error)
        else:
            # Recorded once per inference; should a retry record it twice, the
            # longer one is the one the user waited for.
            inference.total_ms = max(inference.total_ms or 0.0, span.duration_ms)


def _row(split: int, inferences: list[_Inference]) -> SplitRow:
    stage_count = 1 + max((max(i.stage_ms, default=0) for i in inferences), default=0)
    stages = tuple(Quantiles.of([i.stage_ms.get(s, 0.0) for i in inferences]) for s in range(stage_count))
    head = Quantiles.of([i.stage_ms.get(0, 0.0) for i in inferences])
    transfer = Quantiles.of([i.transfer_ms for i in inferences])
    tail = Quantiles.of([sum(ms for s, ms in i.stage_ms.items() if s >= 1) for i in inferences])
    total = Quantiles.of([i.total_ms or 0.0 for i in inferences])
    return SplitRow(
        split=split,
        count=len(inferences),
        head=head,
        transfer=transfer,
        tail=tail,
        total=total,
        stages=stages,
        other_ms=total.median - (head.median + transfer.median + tail.median),
        bytes_raw=_median_int([i.bytes_raw for i in inferences]),
        bytes_wire=_median_int([i.bytes_wire for i in inferences]),
    )


def _median_int(values: list[int]) -> int:
    return round(float(np.median(values)))


def summary_to_dicts(rows: Iterable[SplitRow]) -> list[dict[str, Any]]:
    """Rows as flat JSON-ready dicts (``head_ms``, ``head_p25_ms``, ...)."""
    return [_row_dict(row) for row in rows]


def _row_dict(row: SplitRow) -> dict[str, Any]:
    flat: dict[str, Any] = {"split": row.split, "count": row.count}
    parts = {"head": row.head, "transfer": row.transfer, "tail": row.tail, "total": row.total}
    for name, q in parts.items():
        flat |= {f"{name}_ms": q.median, f"{name}_p25_ms": q.p25, f"{name}_p75_ms": q.p75}
    flat["other_ms"] = row.other_ms
    flat["bytes_raw"], flat["bytes_wire"] = row.bytes_raw, row.bytes_wire
    flat["stages"] = [
        {"stage": s, "compute_ms": q.median, "compute_p25_ms": q.p25, "compute_p75_ms": q.p75}
        for s, q in enumerate(row.stages)
    ]
    return flat
