"""Cut any PyTorch model after any layer, or place its layers on two devices."""

from .capture import Attempt, capture
from .layers import Granularity
from .model import GraphValues, Layer, Placement, SplitModel, SplitPoint, TensorInfo
from .override import SplitOverride, load_override
from .parts import Part

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
