"""Inputs of a run: seeded synthetic tensors, or images from a folder."""

from __future__ import annotations

import pytest
import torch
from torchvision.io import write_png

from splittracer.errors import ConfigError
from splittracer.participant.inputs import InputSource


def test_synthetic_inputs_are_seeded_per_index():
    source = InputSource((1, 3, 8, 8), seed=5)
    assert torch.equal(source.get(2), InputSource((1, 3, 8, 8), seed=5).get(2))
    assert not torch.equal(source.get(2), source.get(3))


def test_image_folder_is_resized_normalised_and_cycled(tmp_path):
    for i, value in enumerate((0, 255)):
        write_png(torch.full((3, 20, 30), value, dtype=torch.uint8), str(tmp_path / f"img{i}.png"))
    source = InputSource((1, 3, 16, 16), dataset=str(tmp_path))
    dark, bright, again = source.get(0), source.get(1), source.get(2)
    assert dark.shape == (1, 3, 16, 16)
    assert torch.allclose(dark[0, 0], torch.full((16, 16), -0.485 / 0.229), atol=1e-4)
    assert bright.mean() > dark.mean()
    assert torch.equal(again, dark)


def test_missing_or_empty_dataset_folder(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        InputSource((1, 3, 8, 8), dataset=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="holds no images"):
        InputSource((1, 3, 8, 8), dataset=str(tmp_path))
