"""A run's dataset: an image folder with one sub-folder per class, or a CSV of ``file,label``.

An image in a sub-folder of the dataset folder is labelled by that
sub-folder (``digits/7/img.png`` is a 7): through the manifest's
``model.labels`` mapping when given, else the folder name itself when every
class folder is a whole number, else the folder's position among the class
folders sorted by name (as torchvision's ``ImageFolder``).

A CSV (``model.dataset: val.csv``) has a header row naming a ``file`` column
and, optionally, a ``label`` column; each file is a path relative to the
CSV's folder (it must stay inside it: that folder is what is sent to a
device) and each label a whole number (the output index) or a class name
(mapped by ``model.labels``, else numbered in sorted order as folders are).
An empty label leaves that image unlabelled. Inputs are numbered in the
CSV's row order.

Torch-free, so the controller checks a dataset before anything starts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import ConfigError

__all__ = [
    "IMAGE_SUFFIXES",
    "Dataset",
    "dataset_files",
    "dataset_root",
    "image_files",
    "is_csv",
    "load_dataset",
    "remote_dataset",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
_KEY = "model.dataset"


@dataclass(frozen=True)
class Dataset:
    """The images of a dataset in input order, and each one's label (None: unlabelled)."""

    files: tuple[Path, ...]
    labels: tuple[int | None, ...]
    source: Path  # the folder or the CSV file

    @property
    def labelled(self) -> bool:
        """Whether any image has a label."""
        return any(label is not None for label in self.labels)


def is_csv(path: Path) -> bool:
    """Whether ``path`` names a CSV dataset (rather than an image folder)."""
    return path.suffix.lower() == ".csv"


def dataset_root(path: Path) -> Path:
    """The folder a dataset's files live in: the image folder, or the CSV's folder."""
    return path.parent if is_csv(path) else path


def remote_dataset(path: Path) -> str:
    """Where a device's participant finds the dataset, relative to its run folder.

    The dataset's folder (the image folder, or the CSV's folder) is sent under its base name.
    """
    root = dataset_root(path).name
    return f"{root}/{path.name}" if is_csv(path) else root


def dataset_files(path: Path) -> list[Path]:
    """Every file a participant reads for the dataset (a CSV included); ConfigError if one is wrong."""
    if not is_csv(path):
        return image_files(path)
    return [path, *(_csv_file(path.parent, path, line, name) for line, name, _ in _csv_rows(path))]


def load_dataset(path: Path, mapping: dict[str, int] | None = None) -> Dataset:
    """The dataset at ``path`` (a folder or a CSV); ConfigError, located, on any mistake."""
    if is_csv(path):
        return _csv_dataset(path, mapping)
    files = image_files(path)
    return Dataset(tuple(files), tuple(file_labels(path, files, mapping)), path)


def image_files(folder: Path) -> list[Path]:
    """The images in ``folder`` and below, in the order inputs are numbered; ConfigError if none."""
    if not folder.is_dir():
        raise ConfigError(
            f"dataset folder '{folder}' does not exist",
            key=_KEY,
            hint="Give an image folder (one sub-folder per class) or a CSV of file,label.",
        )
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(
            f"dataset folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)})", key=_KEY
        )
    return files


def file_labels(folder: Path, files: list[Path], mapping: dict[str, int] | None) -> list[int | None]:
    """Each file's label from its class folder; ConfigError for a folder the mapping lacks."""
    classes = [
        p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in files
    ]
    mapping = _class_mapping(sorted({c for c in classes if c is not None}), mapping, "class folder", folder)
    return [None if c is None else mapping[c] for c in classes]


def _class_mapping(
    names: list[str], mapping: dict[str, int] | None, what: str, source: Path
) -> dict[str, int]:
    if mapping is None:
        numbered = all(name.isdigit() for name in names)
        return {name: int(name) if numbered else i for i, name in enumerate(names)}
    missing = [name for name in names if name not in mapping]
    if missing:
        raise ConfigError(
            f"{what} '{missing[0]}' of dataset '{source}' is not in model.labels",
            key="model.labels",
            hint=f"map every class to an output index: {', '.join(names[:5])}"
            + ("..." if len(names) > 5 else ""),
        )
    return mapping


def _csv_dataset(path: Path, mapping: dict[str, int] | None) -> Dataset:
    rows = _csv_rows(path)
    root = path.parent
    files = tuple(_csv_file(root, path, line, name) for line, name, _ in rows)
    raw = [(line, label) for line, _, label in rows]
    names = sorted({label for _, label in raw if label and not label.isdigit()})
    if names and mapping is None and any(label.isdigit() for _, label in raw if label):
        line = next(line for line, label in raw if label and label.isdigit())
        raise ConfigError(
            "labels mix output indices and class names",
            path=str(path),
            line=line,
            key="label",
            hint="Use whole numbers (output indices) throughout, or class names with model.labels.",
        )
    classes = _class_mapping(names, mapping, "class", path) if names else {}
    labels = tuple(
        None if not label else int(label) if label.isdigit() else classes[label] for _, label in raw
    )
    return Dataset(files, labels, path)


def _csv_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line, file, label) of every data row; ConfigError for a missing file or column."""
    if not path.is_file():
        raise ConfigError(
            f"dataset file '{path}' does not exist", key=_KEY, hint="A CSV with a header: file,label"
        )
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "file" not in columns:
            raise ConfigError(
                f"the header row names no 'file' column (found: {', '.join(columns) or 'nothing'})",
                path=str(path),
                line=1,
                hint="The first row names the columns: file,label (label is optional).",
            )
        rows = []
        for record in reader:
            values = {k.strip(): (v or "").strip() for k, v in record.items() if k is not None}
            rows.append((reader.line_num, values.get("file", ""), values.get("label", "")))
    if not rows:
        raise ConfigError("the dataset lists no images", path=str(path), line=1, hint="One image per row.")
    return rows


def _csv_file(root: Path, csv_path: Path, line: int, name: str) -> Path:
    relative = PurePosixPath(name.replace("\\", "/"))
    problem = (
        "no file is given"
        if not name
        else "it must be a path relative to the CSV's folder"
        if relative.is_absolute() or ".." in relative.parts
        else f"it is not an image ({', '.join(IMAGE_SUFFIXES)})"
        if relative.suffix.lower() not in IMAGE_SUFFIXES
        else f"there is no such file in '{root}'"
        if not (root / relative).is_file()
        else None
    )
    if problem:
        raise ConfigError(f"file '{name}': {problem}", path=str(csv_path), line=line, key="file")
    return root / relative
