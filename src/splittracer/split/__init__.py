"""Cut any PyTorch model after any layer: capture, layers, live sets, parts."""

from .capture import Attempt, capture
from .layers import Granularity
from .model import GraphValues, Layer, SplitModel, SplitPoint, TensorInfo
from .override import SplitOverride, load_override
from .parts import Part

__all__ = [
    "Attempt",
    "Granularity",
    "GraphValues",
    "Layer",
    "Part",
    "SplitModel",
    "SplitOverride",
    "SplitPoint",
    "TensorInfo",
    "capture",
    "load_override",
]
