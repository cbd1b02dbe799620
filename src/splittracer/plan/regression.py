"""Per-kind latency regression (Neurosurgeon, Kang et al. 2017), fitted on device profiles.

Every unit kind (:data:`~splittracer.plan.features.KINDS`) gets a
non-negative linear model of its latency in a few features: a constant
(the per-call overhead), MACs, bytes read, bytes written and parameter
bytes. A layer's latency is the sum of its units', so the models are
fitted jointly on the measured layers with non-negative least squares,
each layer weighted by the inverse of its time: the fit minimises relative
error, which is what a split decision over layers of very different sizes
needs.

A kind the training profiles never saw borrows a related kind's model
(depthwise from conv, attention from linear, elementwise from activation);
:attr:`LatencyModel.borrowed` says which did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..errors import SplitTracerError
from .features import KINDS, UnitFeatures
from .profiles import LayerRecord, ModelRecord

__all__ = ["FEATURES", "LatencyModel", "fit_latency_model", "nnls", "unit_features"]

FEATURES: tuple[str, ...] = ("calls", "mmacs", "in_mb", "out_mb", "param_mb")
"""Regression inputs per unit: 1, MACs / 1e6, input, output and parameter megabytes."""

_FALLBACK = {
    "depthwise": "conv",
    "attention": "linear",
    "elementwise": "activation",
    "norm": "activation",
    "pooling": "activation",
    "activation": "other",
    "conv": "linear",
    "linear": "conv",
}
_FLOOR_MS = 0.005  # layers faster than 5 us weigh as 5 us: below it the clock's noise rules


def unit_features(unit: UnitFeatures) -> NDArray[np.float64]:
    """The :data:`FEATURES` vector of one unit."""
    mb = 1e-6
    return np.array(
        [1.0, unit.macs * 1e-6, unit.in_bytes * mb, unit.out_bytes * mb, unit.param_bytes * mb],
        dtype=np.float64,
    )


@dataclass(frozen=True)
class LatencyModel:
    """Fitted coefficients (ms per :data:`FEATURES` unit) of every kind seen in training."""

    coefficients: dict[str, tuple[float, ...]]
    trained_on: tuple[str, ...]
    samples: int

    @property
    def borrowed(self) -> dict[str, str]:
        """Kinds without training data and the kind whose model they use."""
        return {k: self._resolve(k) for k in KINDS if k not in self.coefficients}

    def predict_unit(self, unit: UnitFeatures) -> float:
        """Predicted milliseconds of one unit."""
        coef = self.coefficients.get(self._resolve(unit.kind))
        if coef is None:
            return 0.0
        return float(np.dot(np.asarray(coef), unit_features(unit)))

    def predict_layer(self, units: Iterable[UnitFeatures]) -> float:
        """Predicted milliseconds of a layer: the sum of its units."""
        return sum(self.predict_unit(u) for u in units)

    def _resolve(self, kind: str) -> str:
        seen = {kind}
        while kind not in self.coefficients and kind in _FALLBACK:
            kind = _FALLBACK[kind]
            if kind in seen:
                break
            seen.add(kind)
        return kind if kind in self.coefficients else "other"


def fit_latency_model(records: Sequence[ModelRecord]) -> LatencyModel:
    """Fit every kind's model on the layers of ``records`` (one device's profiles)."""
    layers = [layer for record in records for layer in record.layers if layer.units]
    if not layers:
        raise SplitTracerError(
            "cannot fit a latency model: the profile has no measured layers",
            hint="Profile a few models first: "
            "splittracer profile NAME torchvision:alexnet torchvision:resnet18",
        )
    kinds = [k for k in KINDS if any(u.kind == k for layer in layers for u in layer.units)]
    design = np.stack([_row(layer, kinds) for layer in layers])
    target = np.array([layer.median_ms for layer in layers])
    weight = 1.0 / np.maximum(target, _FLOOR_MS)
    weighted = design * weight[:, None]
    scale = np.sqrt((weighted**2).mean(axis=0))
    scale[scale == 0] = 1.0
    solution = nnls(weighted / scale, target * weight) / scale
    width = len(FEATURES)
    coefficients = {
        kind: tuple(float(c) for c in solution[i * width : (i + 1) * width]) for i, kind in enumerate(kinds)
    }
    return LatencyModel(coefficients, tuple(r.source for r in records), len(layers))


def _row(layer: LayerRecord, kinds: list[str]) -> NDArray[np.float64]:
    width = len(FEATURES)
    row = np.zeros(len(kinds) * width)
    for unit in layer.units:
        i = kinds.index(unit.kind)
        row[i * width : (i + 1) * width] += unit_features(unit)
    return row


def nnls(a: NDArray[np.float64], b: NDArray[np.float64], *, tol: float = 1e-10) -> NDArray[np.float64]:
    """argmin ||a x - b|| subject to x >= 0 (Lawson and Hanson's active-set method)."""
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, dtype=bool)
    gradient = a.T @ (b - a @ x)
    for _ in range(3 * n + 10):
        candidates = np.where(~passive, gradient, -np.inf)
        if passive.all() or candidates.max() <= tol:
            break
        passive[int(candidates.argmax())] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > tol).all():
                x = z
                break
            blocking = passive & (z <= tol) & (x > z)
            alpha = float(np.min(x[blocking] / (x[blocking] - z[blocking]))) if blocking.any() else 0.0
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        gradient = a.T @ (b - a @ x)
    return x
