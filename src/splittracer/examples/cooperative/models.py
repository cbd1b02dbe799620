"""Tiny models for the cooperative examples, built offline with random weights.

Each factory's module carries ``example_input_shape``, the input it is
captured with and fed by ``ctx.example``.
"""

from torch import nn

EMBEDDING = 8  # what each sensor sends the hub


def _shaped(module: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    module.example_input_shape = shape  # type: ignore[assignment]
    return module


def microphone() -> nn.Module:
    """An audio sensor: 1 channel x 64 samples -> an 8-wide embedding."""
    return _shaped(
        nn.Sequential(
            nn.Conv1d(1, 4, 5), nn.ReLU(), nn.AdaptiveAvgPool1d(4), nn.Flatten(), nn.Linear(16, EMBEDDING)
        ),
        (1, 1, 64),
    )


def camera() -> nn.Module:
    """A camera sensor: a 3x16x16 frame -> an 8-wide embedding."""
    return _shaped(
        nn.Sequential(
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, EMBEDDING)
        ),
        (1, 3, 16, 16),
    )


def fusion() -> nn.Module:
    """The hub: both sensors' embeddings side by side -> 5 household events."""
    return _shaped(
        nn.Sequential(nn.Linear(2 * EMBEDDING, 12), nn.ReLU(), nn.Linear(12, 5)), (1, 2 * EMBEDDING)
    )


def speech_to_text() -> nn.Module:
    """Model A on the phone: 1 channel x 128 samples of speech -> 16 'token' scores."""
    return _shaped(
        nn.Sequential(
            nn.Conv1d(1, 8, 9, stride=4), nn.ReLU(), nn.AdaptiveAvgPool1d(2), nn.Flatten(), nn.Linear(16, 16)
        ),
        (1, 1, 128),
    )


def translation() -> nn.Module:
    """Model B in the cloud: 16 token scores -> 32 scores in the other language."""
    return _shaped(nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 32)), (1, 16))
