"""Train the digits CNN on scikit-learn's bundled digits and lay out a labelled experiment.

    python -m splittracer.examples.digits.train --workspace WS

writes, under ``WS/digits/``: ``weights.pt`` (the trained state dict) and
``test/<digit>/<n>.png`` (the held-out fifth of the digits, one folder per
class); and ``WS/experiments/digits.yaml``, a sweep of every split x codec
that measures accuracy on those images. It trains in seconds on a CPU and
needs scikit-learn (``pip install scikit-learn``); nothing is downloaded:
the digits ship inside scikit-learn.

The images are preprocessed exactly as a run reads a dataset (RGB, scaled to
0..1, normalised with ImageNet statistics), so the accuracy printed here is
the accuracy a run with codec ``none`` measures.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import build

_MEAN = torch.tensor([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)

EXPERIMENT = """\
# Written by: python -m splittracer.examples.digits.train --workspace .
# Accuracy of a trained digits CNN per split x codec on the held-out digits.
name: digits
description: digits CNN, every split x codec, top-1 accuracy and agreement on {count} held-out digits
model:
  source: "splittracer.examples.digits:build"
  input_shape: [1, 3, 8, 8]
  weights: ../digits/weights.pt
  dataset: ../digits/test
participants:
  phone: {{role: "splittracer.builtin:SplitHead", limits: {{threads: 1}}}}
  cloud: {{role: "splittracer.builtin:SplitTail", limits: {{threads: 1}}}}
playbook:
  phone:
    - task: Sweep
      params:
        splits: all
        codecs: [none, fp16, bf16, int8, int8-channel, int4]
        next: [cloud]
        repeats: {count}     # every held-out digit once per split and codec
        warmup: 2
"""


@dataclass(frozen=True)
class Trained:
    """What :func:`train` wrote and how well the model does on the held-out digits."""

    weights: Path
    dataset: Path
    experiment: Path
    test_accuracy: float
    test_images: int


def pixels(images: np.ndarray) -> np.ndarray:
    """Digits (0..16) as 8-bit grey images."""
    return np.rint(images * (255 / 16)).astype(np.uint8)


def model_input(grey: np.ndarray) -> torch.Tensor:
    """8-bit grey images as the model's input: RGB in 0..1, normalised as a run reads images."""
    x = torch.from_numpy(grey).float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
    return (x - _MEAN) / _STD


def train(workspace: Path, *, seed: int = 0, epochs: int = 15) -> Trained:
    """Train on four fifths of the digits, write weights, test images and the experiment."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    grey, labels = pixels(digits.images), digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(labels))
    cut = len(order) * 4 // 5
    train_idx, test_idx = order[:cut], order[cut:]
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small trains fastest on one thread
    model = build()
    _fit(model, model_input(grey[train_idx]), torch.from_numpy(labels[train_idx]), epochs)
    accuracy = _accuracy(model, model_input(grey[test_idx]), torch.from_numpy(labels[test_idx]))
    torch.set_num_threads(threads)
    home = workspace / "digits"
    home.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), home / "weights.pt")
    dataset = _write_images(home / "test", grey[test_idx], labels[test_idx])
    experiment = workspace / "experiments" / "digits.yaml"
    experiment.parent.mkdir(parents=True, exist_ok=True)
    experiment.write_text(EXPERIMENT.format(count=len(test_idx)))
    return Trained(home / "weights.pt", dataset, experiment, accuracy, len(test_idx))


def _fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> None:
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        for batch in torch.split(torch.randperm(len(y), generator=generator), 64):
            optimiser.zero_grad()
            loss(model(x[batch]), y[batch]).backward()
            optimiser.step()
    model.eval()


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def _write_images(folder: Path, grey: np.ndarray, labels: np.ndarray) -> Path:
    from PIL import Image

    for digit in range(10):
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
    for n, (image, label) in enumerate(zip(grey, labels)):
        Image.fromarray(image).save(folder / str(label) / f"{n:04d}.png")
    return folder


def main() -> None:
    """Command line: train into ``--workspace`` and say what was written."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=Path("."), help="the workspace to write into")
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    done = train(args.workspace, epochs=args.epochs)
    print(f"test accuracy {done.test_accuracy:.1%} on {done.test_images} held-out digits")
    print(f"wrote {done.weights}, {done.dataset}/<digit>/*.png and {done.experiment}")
    print("run it: splittracer run digits")


if __name__ == "__main__":
    main()
