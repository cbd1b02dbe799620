"""Datasets: an image folder, or a CSV of file,label; every mistake located, before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from splittracer.controller.preflight import check_manifest
from splittracer.deploy.ssh import dataset_uploads
from splittracer.errors import ConfigError
from splittracer.manifest import load_manifest
from splittracer.participant.dataset import dataset_files, load_dataset, remote_dataset
from splittracer.participant.inputs import InputSource


def _images(root: Path, names: list[str]) -> None:
    from PIL import Image

    for i, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4), (40 * i, 0, 0)).save(root / name)


def _csv(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_csv_lists_images_in_row_order_with_index_labels(tmp_path: Path) -> None:
    _images(tmp_path, ["img/b.png", "img/a.png", "other/c.jpg"])
    csv = _csv(tmp_path / "val.csv", "file,label\nimg/b.png,3\nother/c.jpg,\nimg/a.png,0\n")
    found = load_dataset(csv)
    assert [p.relative_to(tmp_path).as_posix() for p in found.files] == [
        "img/b.png",
        "other/c.jpg",
        "img/a.png",
    ]
    assert found.labels == (3, None, 0)
    source = InputSource((1, 3, 4, 4), dataset=str(csv))
    assert [source.label(i) for i in range(4)] == [3, None, 0, 3]  # cycling
    assert source.get(0).mean() < source.get(2).mean()  # b.png (the darker) is read first


def test_csv_class_names_map_through_labels_or_in_sorted_order(tmp_path: Path) -> None:
    _images(tmp_path, ["x.png", "y.png", "z.png"])
    csv = _csv(tmp_path / "d.csv", "label,file\ndog,x.png\ncat,y.png\ndog,z.png\n")  # any column order
    assert load_dataset(csv).labels == (1, 0, 1)
    assert load_dataset(csv, {"cat": 281, "dog": 207}).labels == (207, 281, 207)
    with pytest.raises(ConfigError, match="class 'dog'") as caught:
        load_dataset(csv, {"cat": 281})
    assert caught.value.key == "model.labels"
    unlabelled = _csv(tmp_path / "u.csv", "file\nx.png\ny.png\n")
    assert load_dataset(unlabelled).labels == (None, None)
    assert InputSource((1, 3, 4, 4), dataset=str(unlabelled)).label(0) is None


@pytest.mark.parametrize(
    ("text", "line", "phrase"),
    [
        ("path,label\nx.png,1\n", 1, "no 'file' column"),
        ("file,label\n", 1, "lists no images"),
        ("file,label\nx.png,1\nnope.png,2\n", 3, "no such file"),
        ("file,label\nx.png,1\n../x.png,2\n", 3, "relative to the CSV's folder"),
        ("file,label\n/etc/passwd.png,2\n", 2, "relative to the CSV's folder"),
        ("file,label\nnotes.txt,2\n", 2, "not an image"),
        ("file,label\n,2\n", 2, "no file is given"),
        ("file,label\nx.png,1\nx.png,cat\n", 2, "mix output indices and class names"),
    ],
)
def test_csv_mistakes_name_the_file_and_line(tmp_path: Path, text: str, line: int, phrase: str) -> None:
    _images(tmp_path / "data", ["x.png"])
    (tmp_path / "data" / "notes.txt").write_text("not an image")
    csv = _csv(tmp_path / "data" / "val.csv", text)
    with pytest.raises(ConfigError) as caught:
        load_dataset(csv)
    error = caught.value
    assert (error.path, error.line) == (str(csv), line), error.render()
    assert phrase in error.render() and error.exit_code == 2


def test_what_a_device_gets_of_a_csv_dataset(tmp_path: Path) -> None:
    _images(tmp_path / "data", ["img/a.png", "b.png", "unused.png"])
    csv = _csv(tmp_path / "data" / "val.csv", "file,label\nimg/a.png,1\nb.png,2\nimg/a.png,1\n")
    assert dataset_files(csv)[0] == csv
    sent = dataset_uploads(csv)
    assert sorted(rel for _, rel in sent) == ["data/b.png", "data/img/a.png", "data/val.csv"]  # once each
    assert remote_dataset(csv) == "data/val.csv" and remote_dataset(tmp_path / "data") == "data"


MANIFEST = """\
name: acc
model:
  source: torchvision:alexnet
  dataset: {dataset}
participants:
  phone: {{role: "splittracer.builtin:SplitHead"}}
  cloud: {{role: "splittracer.builtin:SplitTail"}}
playbook:
  phone:
    - task: Sweep
      params: {{splits: [0], next: [cloud]}}
"""


def test_a_dataset_mistake_is_found_before_the_model_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(MANIFEST.format(dataset="data/missing"))
    with pytest.raises(ConfigError, match="does not exist") as caught:
        check_manifest(load_manifest(tmp_path / "m.yaml"), tmp_path)
    assert (caught.value.path, caught.value.line, caught.value.key) == (
        str(tmp_path / "m.yaml"),
        4,
        "model.dataset",
    )
    _images(tmp_path / "data", ["x.png"])
    _csv(tmp_path / "data" / "val.csv", "file,label\nx.png,1\ny.png,2\n")
    (tmp_path / "m.yaml").write_text(MANIFEST.format(dataset="data/val.csv"))
    with pytest.raises(ConfigError, match="no such file") as caught:
        check_manifest(load_manifest(tmp_path / "m.yaml"), tmp_path)
    assert (caught.value.path, caught.value.line) == (str(tmp_path / "data" / "val.csv"), 3)
    assert torch.is_tensor(InputSource((1, 3, 4, 4), dataset=str(tmp_path / "data")).get(0))
