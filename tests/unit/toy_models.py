"""Small models that exercise the capture fallbacks and placements of branchy graphs."""

from __future__ import annotations

from pathlib import Path

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


def profile_toy_devices(results_dir: Path, names: tuple[str, ...] = ("toy-a", "toy-b")) -> None:
    """Store a profile of :func:`chain_of_opaque` (2x8 input, one thread), measured here, under
    each of ``names`` in a workspace's profile folder: devices to plan the toy model on."""
    from splittracer.plan.profiles import DeviceProfile, ProfileStore, default_profile_dir, profile_local

    store = ProfileStore(default_profile_dir(results_dir))
    for name in names:
        records = profile_local(
            ["tests.unit.toy_models:chain_of_opaque"], threads=1, repeats=2, warmup=1, input_shape=(2, 8)
        )
        store.save(DeviceProfile(name=name, threads=1).with_models(records))


def chain_of_opaque() -> nn.Module:
    """Factory used as ``tests.unit.toy_models:chain_of_opaque``."""
    return ChainOfOpaque()


class InceptionBlock(nn.Module):
    """Four parallel branches over one input, concatenated (GoogLeNet's Inception module)."""

    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, c, 1)
        self.b2 = nn.Sequential(nn.Conv2d(cin, c, 1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(cin, c, 1), nn.ReLU(), nn.Conv2d(c, c, 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), nn.Conv2d(cin, c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1))


class InceptionToy(nn.Module):
    """A stem, two Inception blocks and a classifier: a small DAG with branches to place."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.block1 = InceptionBlock(8, 4)
        self.block2 = InceptionBlock(16, 6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.block2(self.block1(self.stem(x)))), 1))


def inception_toy() -> nn.Module:
    """Factory used as ``tests.unit.toy_models:inception_toy`` (input 1,3,16,16)."""
    return InceptionToy()


class Join(nn.Module):
    """Concatenates two paths: a layer of its own, so the path before it stays one too."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, b], 1)


class TwoPath(nn.Module):
    """An input reduced twice: by a pool feeding a heavy stack, and later by a pool only the end reads.

    Every prefix cut sends the input (the second pool still needs it) or runs
    the heavy stack on the first device; the minimum cut runs both pools there.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reduce = nn.AvgPool2d(4)
        convs: list[nn.Module] = [nn.Conv2d(3, 128, 3, padding=1), nn.ReLU()]
        for _ in range(3):
            convs += [nn.Conv2d(128, 128, 3, padding=1), nn.ReLU()]
        self.heavy = nn.Sequential(*convs, nn.MaxPool2d(2))
        self.side = nn.MaxPool2d(8)
        self.join = Join()
        self.merge = nn.Conv2d(131, 16, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.heavy(self.reduce(x))
        s = self.side(x)
        return self.fc(torch.flatten(self.pool(self.merge(self.join(h, s))), 1))


def two_path() -> nn.Module:
    """Factory used as ``tests.unit.toy_models:two_path`` (input 1,3,224,224)."""
    return TwoPath()


class FlattenBetween(nn.Module):
    """A functional step between top-level modules and a branch on a value: no tracer captures it."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.classifier = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(self.features(x))
        if y.sum() > 1e9:  # never taken; makes the forward untraceable
            y = y * 0
        return self.classifier(torch.flatten(y, 1))


def flatten_batch(x: torch.Tensor) -> torch.Tensor:
    """What ``FlattenBetween`` does between pool and classifier, as a named function."""
    return torch.flatten(x, 1)


def halve(x: torch.Tensor) -> torch.Tensor:
    """A named function for ``call:`` steps."""
    return x / 2


def small_detector() -> nn.Module:
    """torchvision's smallest Faster R-CNN, random weights, keeping every box (score threshold 0)."""
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    torch.manual_seed(0)
    model = fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, box_score_thresh=0.0, box_detections_per_img=20, min_size=160,
        max_size=160,
    )  # fmt: skip
    model.example_input_shape = (1, 3, 128, 128)
    return model


class Residual(nn.Module):
    """A branch on a value and an in-place residual add in the forward's own code."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.b = nn.Linear(8, 8)
        self.c = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        y += x
        if y.mean() > 10:  # a Python branch on a value
            y = y * 0
        return self.c(torch.relu(self.b(y)) + y)


class FixedBatch(nn.Module):
    """Reshapes to a batch of one: no graph of it can run another batch size."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a(x).view(1, 4)


class PassThrough(nn.Module):
    """A layer that returns its input object (Dropout in eval), whose input is read again later."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(8, 8)
        self.drop = nn.Dropout(0.5)
        self.b = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        z = self.b(self.drop(y))
        return z + y
