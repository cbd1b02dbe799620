"""Inputs for inferences: seeded synthetic tensors, or images from a folder.

An image in a sub-folder of the dataset folder is labelled by that
sub-folder (``digits/7/img.png`` is a 7): through the manifest's
``model.labels`` mapping when given, else the folder name itself when every
class folder is a whole number, else the folder's position among the class
folders sorted by name (as torchvision's ``ImageFolder``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ConfigError
from ..models import example_input

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


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
        self.files = image_files(Path(dataset)) if dataset else []
        self.labels = file_labels(Path(dataset), self.files, labels) if dataset else []

    def label(self, index: int) -> int | None:
        """The label of input ``index``; None for synthetic inputs and unlabelled images."""
        return self.labels[index % len(self.labels)] if self.labels else None

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


def file_labels(folder: Path, files: list[Path], mapping: dict[str, int] | None) -> list[int | None]:
    """Each file's label from its class folder; ConfigError for a folder the mapping lacks."""
    classes = [
        p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in files
    ]
    names = sorted({c for c in classes if c is not None})
    if mapping is None:
        numbered = all(name.isdigit() for name in names)
        mapping = {name: int(name) if numbered else i for i, name in enumerate(names)}
    missing = [name for name in names if name not in mapping]
    if missing:
        raise ConfigError(
            f"class folder '{missing[0]}' of dataset '{folder}' is not in model.labels",
            key="model.labels",
            hint=f"map every class folder to an output index: {', '.join(names[:5])}...",
        )
    return [None if c is None else mapping[c] for c in classes]


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
