"""Per-layer timing of a split model, and the check that every split (or placement) is exact.

Profiling runs the model as a chain of one-layer parts — the same parts a
split run executes — and reads the clock between them. Nothing is hooked
or synchronised inside a layer, so the sum of the per-layer medians stays
within a few percent of a plain ``model(x)`` (``bench/profile_overhead.py``
measures this).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils import _pytree as pytree

from ..errors import SplitError
from .model import Placement, SplitModel
from .placement import PlacementSpec


@dataclass(frozen=True)
class LayerTiming:
    """Median and quartiles of one layer's compute time, and its output size."""

    index: int
    name: str
    type: str
    median_ms: float
    p25_ms: float
    p75_ms: float
    output_bytes: int


@dataclass(frozen=True)
class ModelProfile:
    """Per-layer timings plus a plain forward measured in the same run."""

    layers: list[LayerTiming]
    repeats: int
    warmup: int
    forward_median_ms: float

    @property
    def layers_total_ms(self) -> float:
        """Sum of the per-layer medians."""
        return sum(t.median_ms for t in self.layers)


@dataclass(frozen=True)
class SplitCheck:
    """How far the split model's output at one split is from the full model's."""

    index: int
    after: str
    max_abs_diff: float
    ok: bool


def profile_layers(
    sm: SplitModel,
    x: torch.Tensor,
    *,
    repeats: int = 20,
    warmup: int = 3,
    progress: Callable[[int, int], None] | None = None,
) -> ModelProfile:
    """Median time of every layer over ``repeats`` runs after ``warmup`` runs."""
    parts = [sm.part(k - 1, k) for k in range(1, sm.num_layers + 1)]
    samples: list[list[int]] = [[] for _ in parts]
    forward: list[int] = []
    total = warmup + repeats
    with torch.no_grad():
        for run in range(total):
            per_layer = _timed_chain(parts, x.clone())
            forward_ns = _timed_forward(sm.model, x.clone())
            if run >= warmup:
                for bucket, ns in zip(samples, per_layer):
                    bucket.append(ns)
                forward.append(forward_ns)
            if progress:
                progress(run + 1, total)
    layers = [
        LayerTiming(
            layer.index,
            layer.name,
            layer.type,
            *_median_quartiles(bucket),
            layer.output.bytes if layer.output else 0,
        )
        for layer, bucket in zip(sm.layers, samples)
    ]
    return ModelProfile(layers, repeats, warmup, statistics.median(forward) / 1e6)


def verify_splits(
    sm: SplitModel, x: torch.Tensor, *, tolerance: float = 1e-4, splits: Sequence[int] | None = None
) -> list[SplitCheck]:
    """Run head then tail at every allowed split (or at ``splits``) and compare with the full model.

    A chosen split outside ``0..num_layers``, or one the model does not allow, is a
    :class:`SplitError` naming it.
    """
    chosen = set(range(sm.num_layers + 1)) if splits is None else _checked_splits(sm, splits)
    with torch.no_grad():
        expected = sm.model(x)
    reference = _tensor_leaves(expected)
    checks = []
    for point in sm.points:
        if not point.allowed or point.index not in chosen:
            continue
        got = sm.run_split(point.index, x)
        diff = _max_diff(reference, _tensor_leaves(got)) if same_structure(expected, got) else float("inf")
        checks.append(SplitCheck(point.index, point.after, diff, diff <= tolerance))
    return checks


def placement_diff(sm: SplitModel, x: torch.Tensor, spec: PlacementSpec | Placement) -> float:
    """Largest absolute difference between the full model's output and a placement's head then tail.

    The verification :func:`verify_splits` makes at a split, for any
    placement (``inf`` when the outputs differ in structure or shape).
    """
    with torch.no_grad():
        reference = _tensor_leaves(sm.model(x))
    return _max_diff(reference, _tensor_leaves(sm.run_placement(spec, x)))


def _checked_splits(sm: SplitModel, splits: Sequence[int]) -> set[int]:
    last = sm.num_layers
    outside = [s for s in splits if not 0 <= s <= last]
    if outside:
        raise SplitError(
            f"split {outside[0]} is not a split point of this model (it has 0..{last})",
            hint=f"Choose splits between 0 (send the input) and {last} (all on the first device).",
        )
    refused = [sm.points[s] for s in splits if not sm.points[s].allowed]
    if refused:
        raise SplitError(f"split {refused[0].index} is not allowed: {refused[0].reason}")
    return set(splits)


def _timed_chain(parts: list[Any], x: torch.Tensor) -> list[int]:
    clock = time.perf_counter_ns
    values: Any = (x,)
    stamps = [clock()]
    for part in parts:
        values = part(*values)
        stamps.append(clock())
    return [b - a for a, b in itertools.pairwise(stamps)]


def _timed_forward(model: torch.nn.Module, x: torch.Tensor) -> int:
    start = time.perf_counter_ns()
    model(x)
    return time.perf_counter_ns() - start


def _median_quartiles(samples: list[int]) -> tuple[float, float, float]:
    ms = sorted(s / 1e6 for s in samples)
    if len(ms) < 2:
        return ms[0], ms[0], ms[0]
    q1, _q2, q3 = statistics.quantiles(ms, n=4)
    return statistics.median(ms), q1, q3


def same_structure(a: Any, b: Any) -> bool:
    """Whether two outputs nest alike (the same lists, tuples and dict keys).

    Leaves compared in order are then the same quantities: a detector's
    boxes with boxes, labels with labels, scores with scores.
    """
    return bool(pytree.tree_structure(a) == pytree.tree_structure(b))


def _tensor_leaves(value: Any) -> list[torch.Tensor]:
    return [leaf for leaf in pytree.tree_leaves(value) if isinstance(leaf, torch.Tensor)]


def _max_diff(reference: list[torch.Tensor], leaves: list[torch.Tensor]) -> float:
    if len(reference) != len(leaves) or any(a.shape != b.shape for a, b in zip(reference, leaves)):
        return float("inf")
    if not reference:
        return 0.0
    return max(
        float((a.float() - b.float()).abs().max()) if a.numel() else 0.0 for a, b in zip(reference, leaves)
    )
