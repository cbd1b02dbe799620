"""Cut any PyTorch model after any layer, or place its layers on two devices."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .capture import Attempt, capture
    from .layers import Granularity
    from .model import GraphValues, Layer, Placement, SplitModel, SplitPoint, TensorInfo
    from .override import SplitOverride, load_override
    from .parts import Part

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("Attempt", "capture"), ".capture"),
        **dict.fromkeys(("Granularity",), ".layers"),
        **dict.fromkeys(
            ("GraphValues", "Layer", "Placement", "SplitModel", "SplitPoint", "TensorInfo"), ".model"
        ),
        **dict.fromkeys(("SplitOverride", "load_override"), ".override"),
        **dict.fromkeys(("Part",), ".parts"),
    },
)

__all__ = [
    "Attempt",
    "Granularity",
    "GraphValues",
    "Layer",
    "Part",
    "Placement",
    "SplitModel",
    "SplitOverride",
    "SplitPoint",
    "TensorInfo",
    "capture",
    "load_override",
]
