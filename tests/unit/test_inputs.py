"""Inputs of a run: seeded synthetic tensors, or images from a folder."""

from __future__ import annotations

from pathlib import Path

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


def _images(root: Path, names: list[str]) -> None:
    from PIL import Image

    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(root / name)


def test_images_are_labelled_by_their_class_folder(tmp_path: Path) -> None:
    _images(tmp_path / "named", ["dog/a.png", "cat/b.png", "cat/c.png", "loose.png"])
    named = InputSource((1, 3, 4, 4), dataset=str(tmp_path / "named"))
    assert [named.label(i) for i in range(4)] == [0, 0, 1, None]  # cat/b, cat/c, dog/a, loose
    mapped = InputSource((1, 3, 4, 4), dataset=str(tmp_path / "named"), labels={"cat": 7, "dog": 3})
    assert [mapped.label(i) for i in range(5)] == [7, 7, 3, None, 7]  # cycling, as the images do
    _images(tmp_path / "digits", ["2/a.png", "10/b.png"])
    assert [InputSource((1, 3, 4, 4), dataset=str(tmp_path / "digits")).label(i) for i in range(2)] == [10, 2]
    assert InputSource((1, 3, 4, 4)).label(0) is None
    with pytest.raises(ConfigError, match="'dog'") as info:
        InputSource((1, 3, 4, 4), dataset=str(tmp_path / "named"), labels={"cat": 0})
    assert info.value.key == "model.labels"
