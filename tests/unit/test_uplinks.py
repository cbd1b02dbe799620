"""A sweep over several uplinks: one summary per link, the best split of each, and their chart."""

from __future__ import annotations

from pathlib import Path

import pytest

from splittracer.metrics.spans import Span
from splittracer.report.plots import plot_stacked_by_uplink
from splittracer.report.uplinks import best_row, summarize_by_uplink
from tests.unit.test_summary import span


def _inference(index: int, split: int, link: str, head: float, wire: float) -> list[Span]:
    return [
        span("compute", 0, split, index, head),
        span("transfer", 1, split, index, wire, bytes_raw=100 * (21 - split)),
        span("compute", 1, split, index, 1.0),
        span("inference", 0, split, index, head + wire + 1.0, attrs={"uplink": link}),
    ]


def _sweep() -> list[Span]:
    # The same compute on both links; the slow link makes split 0's transfer dominate.
    spans: list[Span] = []
    index = 0
    for link, scale in (("3g", 10.0), ("wifi", 1.0)):
        for split, head in ((0, 0.0), (21, 30.0)):
            for _ in range(3):
                spans += _inference(index, split, link, head, scale * (21 - split))
                index += 1
    return spans


def test_inferences_are_grouped_by_their_uplink_in_sweep_order() -> None:
    sweeps = summarize_by_uplink(_sweep())
    assert [s.uplink for s in sweeps] == ["3g", "wifi"]
    assert all([r.split for r in s.rows] == [0, 21] and all(r.count == 3 for r in s.rows) for s in sweeps)
    assert [s.best.split for s in sweeps] == [21, 0]
    assert sweeps[0].rows[0].transfer.median == pytest.approx(210.0)


def test_a_run_without_uplink_tags_has_no_per_link_sweeps() -> None:
    plain = [s for s in _sweep() if s.kind != "inference"]
    plain += [span("inference", 0, 0, 0, 5.0)]
    assert summarize_by_uplink(plain) == ()


def test_best_row_needs_rows() -> None:
    with pytest.raises(ValueError, match="no rows"):
        best_row([])


def test_one_panel_per_uplink_is_written(tmp_path: Path) -> None:
    sweeps = summarize_by_uplink(_sweep())
    paths = plot_stacked_by_uplink([(s.uplink, s.rows) for s in sweeps], tmp_path / "uplinks")
    assert sorted(p.suffix for p in paths) == [".png", ".svg"]
    svg = next(p for p in paths if p.suffix == ".svg").read_text()
    assert svg.count("best") >= 2 and "3g" in svg and "wifi" in svg
