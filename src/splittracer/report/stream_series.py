"""Streams over time and the latency-throughput trade-off, as pure functions of plain numbers.

* :func:`windowed`: a stream's frames, each ``(completion s, latency ms)``,
  cut into equal windows between the stream's start and its last
  completion: completed frames per second in each window, and the median
  and p95 latency of the frames completed in it. The window adapts to the
  run: about 20 windows, each expected to hold at least 3 frames, rounded
  to a round step (10 ms ... 5 min) and then stretched so the windows tile
  the stream exactly (no partial last window to inflate or deflate a rate).
* :func:`pareto_front`: which ``(throughput, latency)`` points no other
  point beats on both (higher throughput, lower latency).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .summary import percentile

__all__ = ["Windows", "choose_window", "pareto_front", "windowed", "windows_to_dict"]

_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_WINDOWS = 20  # about this many windows over a stream
_PER_WINDOW = 3  # and at least this many frames in an average window


@dataclass(frozen=True)
class Windows:
    """A stream's throughput and latency per window; ``end_s[i]`` closes window ``i``, which
    counts the frames completed in ``(end_s[i] - window_s, end_s[i]]``. A window where no frame
    completed has throughput 0 and latency NaN."""

    window_s: float
    end_s: tuple[float, ...]
    frames: tuple[int, ...]
    fps: tuple[float, ...]
    p50_ms: tuple[float, ...]
    p95_ms: tuple[float, ...]


def choose_window(duration_s: float, frames: int) -> float:
    """The round window for a stream of ``frames`` over ``duration_s``: the largest step not above
    ``max(duration / 20, 3 * duration / frames)`` (the smallest step when none is)."""
    target = max(duration_s / _WINDOWS, _PER_WINDOW * duration_s / max(frames, 1))
    return max([s for s in _STEPS if s <= target], default=_STEPS[0])


def windowed(completions: Sequence[tuple[float, float]], window_s: float | None = None) -> Windows:
    """Frames completed per second and their latency in windows over ``[0, last completion]``.

    ``completions``: ``(seconds since the stream began, latency ms)`` per frame.
    ``window_s``: the wanted window (default: :func:`choose_window`); the
    windows used are stretched to tile the stream, so ``Windows.window_s``
    may be a little longer.
    """
    if not completions:
        return Windows(0.0, (), (), (), (), ())
    duration = max(t for t, _ in completions)
    if duration <= 0:
        # One instant: a count, no rate.
        latencies = [ms for _, ms in completions]
        p50, p95 = percentile(latencies, 50), percentile(latencies, 95)
        return Windows(0.0, (0.0,), (len(completions),), (0.0,), (p50,), (p95,))
    step = window_s if window_s and window_s > 0 else choose_window(duration, len(completions))
    count = max(1, round(duration / step))
    width = duration / count
    bins: list[list[float]] = [[] for _ in range(count)]
    for t, ms in completions:
        bins[min(count - 1, max(0, math.ceil(t / width) - 1))].append(ms)
    return Windows(
        window_s=width,
        end_s=tuple(width * (i + 1) for i in range(count)),
        frames=tuple(len(b) for b in bins),
        fps=tuple(len(b) / width for b in bins),
        p50_ms=tuple(percentile(b, 50) if b else math.nan for b in bins),
        p95_ms=tuple(percentile(b, 95) if b else math.nan for b in bins),
    )


def windows_to_dict(windows: Windows) -> dict[str, Any]:
    """Compact JSON: the window and one list per series, rounded; an empty window's latency is null."""

    def rounded(values: tuple[float, ...], digits: int) -> list[float | None]:
        return [None if math.isnan(v) else round(v, digits) for v in values]

    return {
        "window_s": round(windows.window_s, 6),
        "end_s": rounded(windows.end_s, 4),
        "frames": list(windows.frames),
        "fps": rounded(windows.fps, 3),
        "p50_ms": rounded(windows.p50_ms, 3),
        "p95_ms": rounded(windows.p95_ms, 3),
    }


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Whether each ``(throughput, latency)`` point is on the front: no other point has throughput
    at least as high and latency at least as low, and is better in one of them.

    Equal points do not dominate each other (both stay on the front); a
    point with a NaN is never on it and dominates nothing.
    """

    def valid(p: tuple[float, float]) -> bool:
        return not (math.isnan(p[0]) or math.isnan(p[1]))

    def beats(a: tuple[float, float], b: tuple[float, float]) -> bool:
        return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])

    usable = [p for p in points if valid(p)]
    return [valid(p) and not any(beats(q, p) for q in usable) for p in points]
