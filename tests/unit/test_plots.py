"""Figures: valid, non-empty PNG and SVG files, written atomically."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from splittracer.errors import SplitTracerError
from splittracer.report import Quantiles, SplitRow
from splittracer.report.plots import plot_bytes_per_split, plot_stacked_splits, split_labels

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def row(split: int, head: float, transfer: float, tail: float, other: float = 0.0) -> SplitRow:
    total = head + transfer + tail + other
    return SplitRow(
        split=split,
        count=5,
        head=Quantiles(head, head * 0.9, head * 1.1),
        transfer=Quantiles(transfer, transfer, transfer),
        tail=Quantiles(tail, tail, tail),
        total=Quantiles(total, total * 0.95, total * 1.05),
        stages=(Quantiles(head, head, head), Quantiles(tail, tail, tail)),
        other_ms=other,
        bytes_raw=150_528 // (split + 1),
        bytes_wire=0,
    )


ROWS = [row(0, 0.0, 40.0, 12.0), row(1, 3.0, 25.0, 9.0, other=1.5), row(2, 6.0, 2.0, 5.0)]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000


def assert_svg(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text)  # well-formed XML, or this raises
    assert root.tag.endswith("svg")
    return text


def test_stacked_splits_writes_png_and_svg(tmp_path: Path) -> None:
    stem = tmp_path / "figures" / "neurosurgeon"
    written = plot_stacked_splits(ROWS, stem, title="AlexNet", labels=["conv1", "relu1"])
    assert written == [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    assert_png(written[0])
    svg = assert_svg(written[1])
    for text in ("AlexNet", "input", "conv1", "relu1", "transfer", "other", "best"):
        assert text in svg
    assert sorted(p.name for p in stem.parent.iterdir()) == ["neurosurgeon.png", "neurosurgeon.svg"]


def test_replotting_replaces_the_files(tmp_path: Path) -> None:
    stem = tmp_path / "fig"
    plot_stacked_splits(ROWS, stem, title="Zebra")
    png, svg = plot_stacked_splits(ROWS[:1], stem, title="Quokka")
    assert "Quokka" in assert_svg(svg) and "Zebra" not in svg.read_text(encoding="utf-8")
    assert_png(png)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "fig.svg"]


def test_stacked_splits_refuses_empty_rows(tmp_path: Path) -> None:
    with pytest.raises(SplitTracerError, match="nothing to plot"):
        plot_stacked_splits([], tmp_path / "empty")
    assert list(tmp_path.iterdir()) == []


def test_bytes_per_split_from_rows_with_log_scale(tmp_path: Path) -> None:
    png, svg = plot_bytes_per_split(ROWS, tmp_path / "bytes", labels=["conv1"], log_scale=True)
    assert_png(png)
    assert "conv1" in assert_svg(svg)


def test_bytes_per_split_from_labels_and_sizes(tmp_path: Path) -> None:
    sizes = (["input", "pool5", "fc8"], [602_112, 36_864, 4_000])
    png, svg = plot_bytes_per_split(sizes, tmp_path / "sizes")
    assert_png(png)
    assert "pool5" in assert_svg(svg)
    with pytest.raises(SplitTracerError, match="2 labels for 3"):
        plot_bytes_per_split((["a", "b"], [1, 2, 3]), tmp_path / "bad")


def test_split_labels() -> None:
    assert split_labels([0, 1, 2, 5], ["conv1", "relu1"]) == ["input", "conv1", "relu1", "5"]
    assert split_labels([0, 3], None) == ["input", "3"]
