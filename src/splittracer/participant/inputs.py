"""Inputs for inferences: seeded synthetic tensors, or images from a folder."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from ..models import example_input

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class InputSource:
    """Input number ``i`` of a run: the same ``i`` gives the same tensor on every run."""

    def __init__(
        self, shape: tuple[int, ...], *, seed: int = 0, dataset: str | None = None, vocab: int | None = None
    ) -> None:
        self.shape = shape
        self.seed = seed
        self.vocab = vocab  # a language model's inputs are token ids below it
        self.files = image_files(Path(dataset)) if dataset else []

    def get(self, index: int) -> torch.Tensor:
        """A tensor of ``shape``: image ``index`` (cycling) or synthetic noise."""
        if not self.files:
            return example_input(self.shape, seed=self.seed + index, vocab=self.vocab)
        return _load_image(self.files[index % len(self.files)], self.shape)


def image_files(folder: Path) -> list[Path]:
    """The images in ``folder`` and below, in the order inputs are numbered; ConfigError if none."""
    if not folder.is_dir():
        raise ConfigError(f"dataset folder '{folder}' does not exist", key="model.dataset")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(
            f"dataset folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})",
            key="model.dataset",
        )
    return files


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
