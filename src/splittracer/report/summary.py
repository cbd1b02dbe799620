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

A placement that is not a prefix cut (its ``inference`` span carries
``attrs['placement']``, the first device's layers as ``1-3,7-9``) is a row of
its own, labelled by the placement; its ``split`` tag is how many layers the
first device ran.

In a chain of three or more participants a row is one chain of cuts: the
split tag (the first cut) and where each middle participant's compute ended.
Its :class:`Hop` entries give each link's transfer (both directions) and
forward bytes; a link is named by the participants of its forward transfer.

An inference is a sample only when it *completed*: its ``inference`` span
(recorded by the participant that started it, once the answer came back)
exists without ``attrs['error']``, which the recorder sets when the block
raised. One that failed (its span carries the error) or was cut short (no
``inference`` span at all: the run ended first) is no sample; :func:`incomplete`
lists them so a report can say how many and why. Warm-up inferences (any
span tagged ``attrs['warmup'] = True``) are never samples either.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..metrics.spans import Span


@dataclass(frozen=True)
class Quantiles:
    """Median and interquartile range of one quantity, in milliseconds."""

    median: float
    p25: float
    p75: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Quantiles:
        """Quantiles of ``values`` (linear interpolation, as numpy's default percentile).

        The standard library's ``inclusive`` method is that interpolation; numpy is
        not imported for it (``results ls`` and the summary stay quick to start).
        """
        data = [float(v) for v in values]
        if len(data) == 1:
            return cls(data[0], data[0], data[0])
        p25, median, p75 = statistics.quantiles(data, n=4, method="inclusive")
        return cls(median, p25, p75)


@dataclass(frozen=True)
class Hop:
    """One link of a row's chain: its transfer (forward and reply) and its median forward bytes."""

    sender: str
    receiver: str
    transfer: Quantiles
    bytes_raw: int
    bytes_wire: int


@dataclass(frozen=True)
class SplitRow:
    """The summary of every measured inference at one split point.

    ``stages[s]`` is the compute time of stage ``s`` (one entry per device in
    the chain); ``other_ms`` is the median total less the median head,
    transfer, tail and queue: the overhead no span accounts for (dispatch).
    ``queue`` is the time the inference's tasks waited in inboxes (``queue`` spans).
    ``transfer`` covers forward and reply transfers; ``bytes_raw`` and
    ``bytes_wire`` are the median bytes of the forward transfers alone.
    ``cuts`` is every cut of the chain (``(split,)`` with two participants)
    and ``hops`` its links in chain order.
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
    cuts: tuple[int, ...] = ()
    hops: tuple[Hop, ...] = ()
    placement: str = ""  # the first device's layers ('1-3,7-9') when the row ran a placement
    placement_layers: str = ""  # the same with the layer names at the ranges' ends
    placement_tensors: int = 0  # tensors crossing the placement
    queue: Quantiles = Quantiles(0.0, 0.0, 0.0)

    @property
    def cut_label(self) -> str:
        """Every cut of the row: '5' or '5→12'; a placement's layers: '[1-3,7-9]'."""
        if self.placement:
            return f"[{self.placement}]"
        return "→".join(str(k) for k in self.cuts or (self.split,))


@dataclass
class _Link:
    # One link's share of one inference.
    stage: int = 1 << 30  # of its forward sender: orders the links along the chain
    ms: float = 0.0
    bytes_raw: int = 0
    bytes_wire: int = 0


@dataclass
class _Inference:
    # Accumulated per (split, inference) while scanning spans once.
    stage_ms: defaultdict[int, float] = field(default_factory=lambda: defaultdict(float))
    transfer_ms: float = 0.0
    queue_ms: float = 0.0
    total_ms: float | None = None
    bytes_raw: int = 0
    bytes_wire: int = 0
    warmup: bool = False
    ends: dict[int, int] = field(default_factory=dict)  # stage -> last layer it computed
    links: defaultdict[tuple[str, str], _Link] = field(default_factory=lambda: defaultdict(_Link))
    error: str = ""  # the exception type an errored ``inference`` span recorded
    placement: tuple[str, str, int] = ("", "", 0)  # label, named ranges, tensors: the inference span's

    def cuts(self, split: int) -> tuple[int, ...]:
        """The split, then where each middle stage's compute ended."""
        last = max(self.ends, default=0)
        return (split, *(self.ends[s] for s in range(1, last) if s in self.ends))


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
    """One row per chain of cuts with completed, non-warm-up inferences, sorted by its cuts."""
    by_cuts: defaultdict[tuple[tuple[int, ...], tuple[str, str, int]], list[_Inference]] = defaultdict(list)
    for (split, _), inference in _counted(spans).items():
        by_cuts[inference.cuts(split), inference.placement].append(inference)
    return [_placed_row(_row(cuts, by_cuts[cuts, p]), p) for cuts, p in sorted(by_cuts)]


def _placed_row(row: SplitRow, placement: tuple[str, str, int]) -> SplitRow:
    label, layers, tensors = placement
    if not label:
        return row
    return dataclasses.replace(row, placement=label, placement_layers=layers, placement_tensors=tensors)


def counted_inferences(spans: Iterable[Span]) -> dict[tuple[int, int], tuple[int, ...]]:
    """``(split, inference)`` -> cuts, of every inference :func:`summarize` counts."""
    return {key: inference.cuts(key[0]) for key, inference in _counted(spans).items()}


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


def _counted(spans: Iterable[Span]) -> dict[tuple[int, int], _Inference]:
    return {
        key: inference
        for key, inference in _collect(spans).items()
        if inference.total_ms is not None and not inference.warmup
    }


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
        inference.ends[span.stage] = max(inference.ends.get(span.stage, -1), span.end_layer)
    elif span.kind == "queue":
        inference.queue_ms += span.duration_ms
    elif span.kind == "transfer":
        inference.transfer_ms += span.duration_ms
        _accumulate_link(inference, span)
        if span.attrs.get("direction") != "reply":
            inference.bytes_raw += span.bytes_raw
            inference.bytes_wire += span.bytes_wire
    elif span.kind == "inference":
        if "placement" in span.attrs:
            a = span.attrs
            inference.placement = (
                str(a["placement"]),
                str(a.get("placement_layers", "")),
                int(a.get("placement_tensors", 0)),
            )
        error = span.attrs.get("error")
        if error:
            inference.error = str(error)
        else:
            # Recorded once per inference; should a retry record it twice, the
            # longer one is the one the user waited for.
            inference.total_ms = max(inference.total_ms or 0.0, span.duration_ms)


def _accumulate_link(inference: _Inference, span: Span) -> None:
    sender, receiver = str(span.attrs.get("from", "?")), str(span.attrs.get("to", span.participant))
    if span.attrs.get("direction") == "reply":
        inference.links[receiver, sender].ms += span.duration_ms
        return
    link = inference.links[sender, receiver]
    link.stage = min(link.stage, span.stage)
    link.ms += span.duration_ms
    link.bytes_raw += span.bytes_raw
    link.bytes_wire += span.bytes_wire


def _hops(inferences: list[_Inference]) -> tuple[Hop, ...]:
    stage: dict[tuple[str, str], int] = {}
    for i in inferences:
        for key, link in i.links.items():
            stage[key] = min(stage.get(key, link.stage), link.stage)
    empty = _Link()
    return tuple(
        Hop(
            sender=key[0],
            receiver=key[1],
            transfer=Quantiles.of([i.links.get(key, empty).ms for i in inferences]),
            bytes_raw=_median_int([i.links.get(key, empty).bytes_raw for i in inferences]),
            bytes_wire=_median_int([i.links.get(key, empty).bytes_wire for i in inferences]),
        )
        for key in sorted(stage, key=lambda k: (stage[k], k))
    )


def _row(cuts: tuple[int, ...], inferences: list[_Inference]) -> SplitRow:
    stage_count = 1 + max((max(i.stage_ms, default=0) for i in inferences), default=0)
    stages = tuple(Quantiles.of([i.stage_ms.get(s, 0.0) for i in inferences]) for s in range(stage_count))
    head = Quantiles.of([i.stage_ms.get(0, 0.0) for i in inferences])
    transfer = Quantiles.of([i.transfer_ms for i in inferences])
    tail = Quantiles.of([sum(ms for s, ms in i.stage_ms.items() if s >= 1) for i in inferences])
    total = Quantiles.of([i.total_ms or 0.0 for i in inferences])
    queue = Quantiles.of([i.queue_ms for i in inferences])
    return SplitRow(
        split=cuts[0],
        count=len(inferences),
        head=head,
        transfer=transfer,
        tail=tail,
        total=total,
        stages=stages,
        other_ms=total.median - (head.median + transfer.median + tail.median + queue.median),
        bytes_raw=_median_int([i.bytes_raw for i in inferences]),
        bytes_wire=_median_int([i.bytes_wire for i in inferences]),
        cuts=cuts,
        hops=_hops(inferences),
        queue=queue,
    )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of ``values`` (0..100), interpolated linearly as numpy's default."""
    data = sorted(float(v) for v in values)
    if not data:
        raise ValueError("no values to take a percentile of")
    position = (len(data) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(data) - 1)
    return data[low] + (position - low) * (data[high] - data[low])


def _median_int(values: list[int]) -> int:
    return round(float(statistics.median(values)))


def summary_to_dicts(rows: Iterable[SplitRow]) -> list[dict[str, Any]]:
    """Rows as flat JSON-ready dicts (``head_ms``, ``head_p25_ms``, ...)."""
    return [_row_dict(row) for row in rows]


def _row_dict(row: SplitRow) -> dict[str, Any]:
    flat: dict[str, Any] = {"split": row.split, "count": row.count}
    parts = {
        "head": row.head,
        "transfer": row.transfer,
        "tail": row.tail,
        "queue": row.queue,
        "total": row.total,
    }
    for name, q in parts.items():
        flat |= {f"{name}_ms": q.median, f"{name}_p25_ms": q.p25, f"{name}_p75_ms": q.p75}
    flat["other_ms"] = row.other_ms
    flat["bytes_raw"], flat["bytes_wire"] = row.bytes_raw, row.bytes_wire
    flat["stages"] = [
        {"stage": s, "compute_ms": q.median, "compute_p25_ms": q.p25, "compute_p75_ms": q.p75}
        for s, q in enumerate(row.stages)
    ]
    flat["cuts"] = list(row.cuts)
    if row.placement:
        flat["placement"], flat["placement_layers"] = row.placement, row.placement_layers
        flat["placement_tensors"] = row.placement_tensors
    flat["hops"] = [_hop_dict(h) for h in row.hops]
    return flat


def _hop_dict(hop: Hop) -> dict[str, Any]:
    q = hop.transfer
    return {
        "from": hop.sender,
        "to": hop.receiver,
        "transfer_ms": q.median,
        "transfer_p25_ms": q.p25,
        "transfer_p75_ms": q.p75,
        "bytes_raw": hop.bytes_raw,
        "bytes_wire": hop.bytes_wire,
    }
