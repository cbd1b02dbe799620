"""One call from a model name to a ready :class:`SplitModel` and its input."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import ModelSpec, example_input, load_model
from .model import SplitModel


@dataclass(frozen=True)
class LoadedSplit:
    """A model source, its split engine and the example input it was captured on."""

    spec: ModelSpec
    split: SplitModel
    example: torch.Tensor


def load_split_model(
    source: str,
    *,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "leaf",
    override: str | Path | None = None,
    weights: str | Path | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LoadedSplit:
    """Build ``source``, make a synthetic input and capture it for splitting.

    Random weights are drawn from ``seed``, so every participant of a run
    builds the same model: a head on one device and a tail on another
    compute exactly what the whole model computes.

    The model is built on the CPU (the same random draws everywhere), then
    moved to ``device`` and captured there, so constants the capture bakes
    into the graph (an ``arange`` for anchors, say) live on that device too.
    """
    torch.manual_seed(seed)
    spec = load_model(source, input_shape=input_shape, weights=weights)
    x = example_input(spec.input_shape, seed=seed, vocab=spec.vocab).to(device)
    spec.module.to(device)
    return LoadedSplit(spec, SplitModel(spec.module, x, granularity=granularity, override=override), x)
