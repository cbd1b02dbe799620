"""Every layer's compute time on each participant, from what a run measured.

A sweep times *parts* of the model, not layers: the head computes layers
``1..k`` at split ``k``, the tail ``k+1..L``. Layer ``k``'s time on a
participant is then

* the difference of two parts that differ by layer ``k`` only: the head at
  splits ``k`` and ``k-1`` (parts ``a..k`` and ``a..k-1``), or the tail at
  splits ``k-1`` and ``k`` (parts ``k-1..b`` and ``k..b``);
* else its own compute span, when the participant ran layer ``k`` alone
  (which includes the fixed cost of a call).

A difference takes every pair of samples of the two parts, so its median
and interquartile range are those of the difference of two independent
draws. A fixed cost of each call (copying the input, dispatch) cancels out;
noise does not, so a layer much faster than the noise can come out negative.
Warm-up spans are left out.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..metrics.spans import Span
from .summary import Quantiles

__all__ = ["LayerTime", "describe_layer_times", "layer_times"]

Method = Literal["alone", "difference"]
Part = tuple[int, int]  # (start, end): layers start+1..end


@dataclass(frozen=True)
class LayerTime:
    """One layer's compute time on one participant, in ms, and how it was obtained."""

    layer: int
    time: Quantiles
    method: Method
    parts: tuple[Part, ...]  # the part timed alone, or the two parts whose difference it is
    samples: int  # spans behind it: of the part alone, or of the smaller of the two


def layer_times(spans: Iterable[Span]) -> dict[str, dict[int, LayerTime]]:
    """Per participant (the first device first), each layer it can give a time for."""
    parts, stage = _parts(spans)
    order = sorted(parts, key=lambda who: (stage[who], who))
    return {who: _layers(parts[who]) for who in order}


def _parts(spans: Iterable[Span]) -> tuple[dict[str, dict[Part, list[float]]], dict[str, int]]:
    found: defaultdict[str, defaultdict[Part, list[float]]] = defaultdict(lambda: defaultdict(list))
    stage: dict[str, int] = {}
    for s in spans:
        timed = s.kind == "compute" and 0 <= s.start_layer <= s.end_layer
        if timed and s.attrs.get("warmup") is not True:
            found[s.participant][s.start_layer, s.end_layer].append(s.duration_ms)
            stage[s.participant] = min(stage.get(s.participant, s.stage), s.stage)
    return {who: dict(by) for who, by in found.items()}, stage


def _layers(parts: dict[Part, list[float]]) -> dict[int, LayerTime]:
    last = max(end for _, end in parts)
    found = (_layer(k, parts) for k in range(1, last + 1))
    return {t.layer: t for t in found if t is not None}


def _layer(k: int, parts: dict[Part, list[float]]) -> LayerTime | None:
    # Differences first, so every bar of a sweep is measured the same way (call cost cancelled).
    pairs = [((a, k), (a, k - 1)) for a, end in parts if end == k and a <= k - 1 and (a, k - 1) in parts]
    pairs += [((k - 1, b), (k, b)) for start, b in parts if start == k - 1 and (k, b) in parts]
    if not pairs:
        alone = parts.get((k - 1, k))
        return LayerTime(k, Quantiles.of(alone), "alone", ((k - 1, k),), len(alone)) if alone else None
    # The pair with the most samples behind it; the prefix (head) first on a tie.
    more, less = max(pairs, key=lambda p: min(len(parts[p[0]]), len(parts[p[1]])))
    count = min(len(parts[more]), len(parts[less]))
    return LayerTime(k, _difference(parts[more], parts[less]), "difference", (more, less), count)


def _difference(longer: Sequence[float], shorter: Sequence[float]) -> Quantiles:
    """Quantiles of every ``x - y`` of a sample of the longer part and one of the shorter."""
    diffs: list[float] = np.subtract.outer(np.asarray(longer), np.asarray(shorter)).ravel().tolist()
    return Quantiles.of(diffs)


def describe_layer_times(times: dict[str, dict[int, LayerTime]], count: int) -> list[str]:
    """One line per participant saying how many of ``count`` layers it has and how, then the method."""
    if not times:
        return [
            "Per-layer compute times are not in this run (no layer was computed alone, and no two "
            "parts differ by one layer), so only the output sizes are shown."
        ]
    notes = []
    for who, by in times.items():
        alone = sorted(k for k, t in by.items() if t.method == "alone")
        derived = sorted(k for k, t in by.items() if t.method == "difference")
        how = [f"{len(alone)} timed alone ({_ranges(alone)})"] if alone else []
        how += [f"{len(derived)} from differences of two parts ({_ranges(derived)})"] if derived else []
        notes.append(f"{who}: {len(by)} of {count} layers — {'; '.join(how)}.")
    notes.append(
        "A layer not timed alone is the difference of two parts this participant ran that differ by "
        "that layer only: the head at splits k and k−1, or the tail at splits k−1 and k. Its median "
        "and IQR are those of every pairwise difference of their samples; a fixed per-call cost "
        "cancels out, noise does not (a very fast layer can come out negative)."
    )
    return notes


def _ranges(values: Sequence[int]) -> str:
    """[1, 2, 3, 7] -> 'layers 1-3, 7' (with an en dash)."""
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if v is not None:
            start = prev = v
    return ("layer " if parts == [str(values[0])] else "layers ") + ", ".join(parts)
