"""Per-layer latency of a model on a device: measured when the profile has it, else predicted."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ..errors import SplitTracerError
from .energy import compute_energy
from .profiles import DeviceProfile
from .regression import fit_latency_model

if TYPE_CHECKING:  # a graph arrives built; planning from it needs no torch
    from .graph import ModelGraph

__all__ = ["ESTIMATORS", "Estimator", "LayerCosts", "ModelKey", "layer_costs", "with_energy"]

Estimator = Literal["auto", "measured", "regression"]
ESTIMATORS: tuple[str, ...] = ("auto", "measured", "regression")

ModelKey = tuple[str, tuple[int, ...], str]
"""(source, input shape, granularity) of the model being planned."""


@dataclass(frozen=True)
class LayerCosts:
    """Milliseconds of every layer (``ms[i - 1]`` is layer ``i``) on one device profile.

    ``method`` is ``measured`` (the profile's own medians for this model) or
    ``regression`` (predicted from the profile's other models, listed in
    ``trained_on``). ``energy_mj`` (per layer, when asked for with
    :func:`with_energy`) says how it was obtained in ``energy_method``.
    """

    profile: str
    ms: tuple[float, ...]
    method: str
    trained_on: tuple[str, ...] = ()
    energy_mj: tuple[float, ...] | None = None
    energy_method: str = ""

    @property
    def total_ms(self) -> float:
        """The whole model on this device."""
        return sum(self.ms)


def layer_costs(
    profile: DeviceProfile, graph: ModelGraph, key: ModelKey, estimator: Estimator = "auto"
) -> LayerCosts:
    """Per-layer cost of the model ``key`` (described by ``graph``) on ``profile``'s device.

    ``auto`` uses the measured medians when the profile holds this model
    with the same layers, and the regression otherwise; ``regression``
    always predicts, leaving this model out of the training set so the
    prediction is one for a model the device never ran.
    """
    record = profile.find(*key)
    names = tuple(layer.name for layer in graph.layers)
    matches = record is not None and tuple(layer.name for layer in record.layers) == names
    if estimator != "regression" and record is not None and matches:
        return LayerCosts(profile.name, tuple(layer.median_ms for layer in record.layers), "measured")
    if estimator == "measured":
        raise SplitTracerError(
            f"profile '{profile.name}' has no measurement of {key[0]} "
            f"(input {'x'.join(map(str, key[1]))}, granularity {key[2]})",
            hint=f"Profile it: splittracer profile {profile.name} {key[0]}, or use --estimator regression.",
        )
    training = [m for m in profile.models if m.key != key]
    if not training:
        raise SplitTracerError(
            f"profile '{profile.name}' holds no other model to predict {key[0]} from",
            hint=f"Profile a few models: splittracer profile {profile.name} torchvision:alexnet "
            "torchvision:resnet18 torchvision:mobilenet_v2",
        )
    model = fit_latency_model(training)
    ms = tuple(model.predict_layer(layer.units) for layer in graph.layers)
    return LayerCosts(profile.name, ms, "regression", model.trained_on)


def with_energy(costs: LayerCosts, profile: DeviceProfile, key: ModelKey) -> LayerCosts:
    """``costs`` with every layer's millijoules on ``profile``'s device (see :mod:`.energy`)."""
    record = profile.find(*key) if costs.method == "measured" else None
    energy, method = compute_energy(profile, record, costs.ms)
    return dataclasses.replace(costs, energy_mj=energy, energy_method=method)


def check_profiles(profiles: Sequence[DeviceProfile]) -> None:
    """Refuse fewer than two devices: a plan splits a model between devices."""
    if len(profiles) < 2:
        raise SplitTracerError(
            "a plan needs at least two devices",
            hint="Name them in order, first device first: --devices local-1t,local-2t",
        )
