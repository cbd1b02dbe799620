"""Accuracy, agreement and bytes per (cuts, codec): what a smaller cut costs in quality.

Built from the ``prediction`` metric every measured inference of the
built-in roles records (:mod:`splittracer.metrics.accuracy`), joined with
the inference's cuts, its codec (``attrs['codec']`` of its ``inference``
span) and its forward ``transfer`` spans. Counted as the split table counts:
completed inferences only, warm-ups left out.

* agreement: the share of inferences whose top-1 class is the uncompressed
  full model's on the same input (None when the output is no classification);
* error: the median relative error of the output against that reference;
* top-1 / top-5 accuracy: against the dataset's labels (None without labels);
* bytes: the median bytes per inference crossing the cuts, raw and on the wire.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..metrics.accuracy import PREDICTION
from ..metrics.spans import Metric, Span
from .export import atomic_path
from .summary import counted_inferences

if TYPE_CHECKING:
    from ..metrics.store import ResultsStore
    from ..plan.codecs import CodecQuality

__all__ = [
    "AccuracyRow",
    "accuracy_informative",
    "accuracy_path",
    "accuracy_rows",
    "accuracy_rows_to_dicts",
    "codec_qualities",
    "export_run_accuracy",
    "quality",
]


@dataclass(frozen=True)
class AccuracyRow:
    """Every counted inference at one chain of cuts with one codec."""

    cuts: tuple[int, ...]
    codec: str
    count: int
    bytes_raw: int
    bytes_wire: int
    total_ms: float
    agreement: float | None
    rel_error: float
    top1: float | None = None
    top5: float | None = None
    labelled: int = 0

    @property
    def split(self) -> int:
        """The first cut."""
        return self.cuts[0]

    @property
    def cut_label(self) -> str:
        """'5', or '5→12' along a chain."""
        return "→".join(map(str, self.cuts))


@dataclass
class _Group:
    bytes_raw: list[int] = field(default_factory=list)
    bytes_wire: list[int] = field(default_factory=list)
    total_ms: list[float] = field(default_factory=list)
    agrees: list[bool] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    correct5: list[bool] = field(default_factory=list)


def accuracy_rows(spans: Sequence[Span], metrics: Iterable[Metric]) -> list[AccuracyRow]:
    """One row per (cuts, codec) of the counted inferences that recorded a prediction; [] when none did."""
    counted = counted_inferences(spans)
    codec, total, raw, wire = _per_inference(spans)
    groups: defaultdict[tuple[tuple[int, ...], str], _Group] = defaultdict(_Group)
    for m in metrics:
        cuts = counted.get((m.split, m.inference))
        if m.name != PREDICTION or cuts is None:
            continue
        group = groups[cuts, codec.get(m.inference, str(m.attrs.get("codec", "none")))]
        group.bytes_raw.append(raw[m.inference])
        group.bytes_wire.append(wire[m.inference])
        group.total_ms.append(total[m.inference])
        group.errors.append(float(m.attrs.get("rel_error", 0.0)))
        if "agrees" in m.attrs:
            group.agrees.append(bool(m.attrs["agrees"]))
        if "correct" in m.attrs:
            group.correct.append(bool(m.attrs["correct"]))
            group.correct5.append(bool(m.attrs.get("correct5")))
    # Codecs in the order the run used them (a sweep's own order), within each chain of cuts.
    order = {name: i for i, name in enumerate(dict.fromkeys(codec[i] for i in sorted(codec)))}
    return [
        _row(key, groups[key]) for key in sorted(groups, key=lambda k: (k[0], order.get(k[1], len(order))))
    ]


def _per_inference(
    spans: Sequence[Span],
) -> tuple[dict[int, str], dict[int, float], dict[int, int], dict[int, int]]:
    """Per inference id: its codec, its end-to-end ms, its forward bytes raw and on the wire."""
    codec: dict[int, str] = {}
    total: dict[int, float] = {}
    raw: defaultdict[int, int] = defaultdict(int)
    wire: defaultdict[int, int] = defaultdict(int)
    for s in spans:
        if s.kind == "inference":
            codec[s.inference] = str(s.attrs.get("codec", "none"))
            total[s.inference] = (s.end_ns - s.start_ns) / 1e6
        elif s.kind == "transfer" and s.attrs.get("direction", "forward") == "forward":
            raw[s.inference] += s.bytes_raw
            wire[s.inference] += s.bytes_wire
    return codec, total, raw, wire


def _share(values: list[bool]) -> float | None:
    return sum(values) / len(values) if values else None


def _row(key: tuple[tuple[int, ...], str], g: _Group) -> AccuracyRow:
    cuts, codec = key
    return AccuracyRow(
        cuts=cuts,
        codec=codec,
        count=len(g.errors),
        bytes_raw=round(statistics.median(g.bytes_raw)),
        bytes_wire=round(statistics.median(g.bytes_wire)),
        total_ms=statistics.median(g.total_ms),
        agreement=_share(g.agrees),
        rel_error=statistics.median(g.errors),
        top1=_share(g.correct),
        top5=_share(g.correct5),
        labelled=len(g.correct),
    )


def accuracy_rows_to_dicts(rows: Iterable[AccuracyRow]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (None where a quantity is unknown)."""
    return [
        {
            "split": r.split,
            "cuts": list(r.cuts),
            "codec": r.codec,
            "count": r.count,
            "bytes_raw": r.bytes_raw,
            "bytes_wire": r.bytes_wire,
            "total_ms": r.total_ms,
            "agreement": r.agreement,
            "rel_error": r.rel_error,
            "top1": r.top1,
            "top5": r.top5,
            "labelled": r.labelled,
        }
        for r in rows
    ]


def accuracy_path(path: str | Path) -> Path:
    """Where the accuracy table goes beside a spans file: ``runs.csv`` -> ``runs-accuracy.csv``."""
    target = Path(path)
    return target.with_name(f"{target.stem}-accuracy{target.suffix}")


def export_run_accuracy(
    store: ResultsStore, run_id: str, path: str | Path, fmt: str | None = None
) -> Path | None:
    """Write a run's accuracy rows (CSV or Parquet); None (and no file) when it recorded no predictions."""
    rows = accuracy_rows(store.spans(run_id), store.metrics(run_id))
    if not rows:
        return None
    import pandas as pd

    frame = pd.DataFrame.from_records(accuracy_rows_to_dicts(rows))
    frame["cuts"] = ["→".join(map(str, cuts)) for cuts in frame["cuts"]]
    target = Path(path)
    with atomic_path(target) as temp:
        if (fmt or target.suffix.lstrip(".")) == "parquet":
            frame.to_parquet(temp, index=False)
        else:
            frame.to_csv(temp, index=False)
    return target


def quality(row: AccuracyRow) -> tuple[float | None, str]:
    """Top-1 accuracy when labelled, else agreement; and which of the two it is."""
    if row.top1 is not None:
        return row.top1, "top-1 accuracy"
    return row.agreement, "top-1 agreement with the uncompressed model"


def codec_qualities(rows: Sequence[AccuracyRow]) -> list[CodecQuality]:
    """Per (split, codec) of a profile run: bytes on the wire relative to none, and the drop
    of :func:`quality` against none at the same split (what the planner weighs)."""
    from ..plan.codecs import CodecQuality

    plain = {r.split: r for r in rows if r.codec == "none" and len(r.cuts) == 1}
    out = []
    for r in rows:
        base = plain.get(r.split)
        if base is None or r.codec == "none" or len(r.cuts) != 1:
            continue
        ours, theirs = quality(r)[0], quality(base)[0]
        if ours is None or theirs is None or not base.bytes_wire:
            continue
        out.append(CodecQuality(r.split, r.codec, r.bytes_wire / base.bytes_wire, max(theirs - ours, 0.0)))
    return out


def accuracy_informative(rows: Sequence[AccuracyRow]) -> bool:
    """Whether the accuracy table says more than "the model agreed with itself".

    It does when inputs had labels, when a codec other than ``none`` was used,
    or when some output differs from the uncompressed model's (a top-1 class,
    or a relative error above 1e-3: below, it is float rounding between
    thread counts). A plain split sweep has none of these; its table and
    charts would be 100 % everywhere, so they are left out of what is shown
    (never out of ``--json`` and the exports).
    """
    return any(
        r.top1 is not None
        or r.codec != "none"
        or (r.agreement is not None and r.agreement < 1.0)
        or r.rel_error > 1e-3
        for r in rows
    )
