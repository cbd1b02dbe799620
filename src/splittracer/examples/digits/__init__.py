"""A small CNN for scikit-learn's bundled handwritten digits (8x8 images, 10 classes).

``build()`` is the model (``model: {source: "splittracer.examples.digits:build"}``);
``python -m splittracer.examples.digits.train --workspace WS`` trains it in
seconds on a CPU and writes its weights, a labelled image folder of the
held-out digits and the ``digits`` experiment into the workspace.
"""

from __future__ import annotations

from torch import nn

INPUT_SHAPE = (1, 3, 8, 8)
"""What the model takes: one digit as an RGB 8x8 image, normalised as every dataset image is."""


def build() -> nn.Module:
    """The digits CNN, randomly initialised (load trained weights with ``model.weights``)."""
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )
