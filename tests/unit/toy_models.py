"""Small models that exercise the capture fallbacks."""

from __future__ import annotations

import torch
from torch import nn


class DataDependent(nn.Module):
    """Python control flow on a tensor value: neither export nor fx can trace it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x - 1


class ChainOfOpaque(nn.Module):
    """Top-level modules form a chain, so the hooks fallback can split it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = DataDependent()
        self.c = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.b(self.a(x)))


class Uncapturable(nn.Module):
    """Data-dependent branching in forward and a skip around it: nothing captures it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        if y.sum() > 0:
            y = self.b(y)
        return y + x


def chain_of_opaque() -> nn.Module:
    """Factory used as ``tests.unit.toy_models:chain_of_opaque``."""
    return ChainOfOpaque()
