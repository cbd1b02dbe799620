"""Inputs for inferences: seeded synthetic tensors, or images of the manifest's dataset.

The dataset (an image folder, or a CSV of ``file,label``) and its labels are
read by :mod:`.dataset`; here images are decoded, resized to the model's
input and normalised.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..models import example_input
from .dataset import IMAGE_SUFFIXES, image_files, load_dataset

__all__ = ["IMAGE_SUFFIXES", "InputSource", "image_files"]


class InputSource:
    """Input number ``i`` of a run: the same ``i`` gives the same tensor on every run."""

    def __init__(
        self,
        shape: tuple[int, ...],
        *,
        seed: int = 0,
        dataset: str | None = None,
        vocab: int | None = None,
        labels: dict[str, int] | None = None,
    ) -> None:
        self.shape = shape
        self.seed = seed
        self.vocab = vocab  # a language model's inputs are token ids below it
        found = load_dataset(Path(dataset), labels) if dataset else None
        self.files = list(found.files) if found else []
        self.labels = list(found.labels) if found and found.labelled else []

    def label(self, index: int) -> int | None:
        """The label of input ``index``; None for synthetic inputs and unlabelled images."""
        return self.labels[index % len(self.labels)] if self.labels else None

    def get(self, index: int) -> torch.Tensor:
        """A tensor of ``shape``: image ``index`` (cycling) or synthetic noise."""
        if not self.files:
            return example_input(self.shape, seed=self.seed + index, vocab=self.vocab)
        return _load_image(self.files[index % len(self.files)], self.shape)


def _load_image(path: Path, shape: tuple[int, ...]) -> torch.Tensor:
    """Decode, resize to the model's input and normalise with ImageNet statistics."""
    from torchvision.io import ImageReadMode, decode_image
    from torchvision.transforms.v2 import functional as tvf

    image = decode_image(str(path), mode=ImageReadMode.RGB)
    image = tvf.resize(image, list(shape[-2:]), antialias=True)
    tensor = tvf.to_dtype(image, torch.float32, scale=True)
    tensor = tvf.normalize(tensor, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    batch = shape[0] if len(shape) == 4 else 1
    batched: torch.Tensor = tensor.unsqueeze(0).expand(batch, -1, -1, -1).contiguous()
    return batched
