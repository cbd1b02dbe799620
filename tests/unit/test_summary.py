"""The per-split summary, computed on hand-made spans."""

from __future__ import annotations

import json

import pytest

from splittracer.metrics import Span
from splittracer.report import Quantiles, summarize, summary_to_dicts
from splittracer.report.summary import Incomplete, completed_inferences, incomplete

MS = 1_000_000


def span(kind: str, stage: int, split: int, inference: int, ms: float, **extra: object) -> Span:
    return Span(
        run_id="r",
        participant=f"P{stage}",
        stage=stage,
        kind=kind,
        inference=inference,
        split=split,
        start_ns=1_000 * MS,
        end_ns=1_000 * MS + round(ms * MS),
        **extra,  # type: ignore[arg-type]
    )


def inference(
    split: int,
    i: int,
    head: float,
    transfer: float,
    tail: float,
    total: float,
    nbytes: int = 0,
    warmup: bool = False,
) -> list[Span]:
    attrs = {"warmup": True} if warmup else {}
    return [
        span("compute", 0, split, i, head, attrs=attrs),
        span("serialize", 0, split, i, 0.5),  # not a part of head/transfer/tail
        span("transfer", 0, split, i, transfer, bytes_raw=nbytes, bytes_wire=nbytes // 2),
        span("compute", 1, split, i, tail),
        span("inference", 0, split, i, total),
    ]


def test_medians_iqr_and_other_per_split() -> None:
    spans = [
        *inference(1, 0, head=1, transfer=10, tail=20, total=32, nbytes=400),
        *inference(1, 1, head=2, transfer=20, tail=30, total=54, nbytes=400),
        *inference(1, 2, head=3, transfer=30, tail=40, total=76, nbytes=400),
        *inference(1, 3, head=4, transfer=40, tail=50, total=98, nbytes=400),
        *inference(1, 4, head=5, transfer=50, tail=60, total=120, nbytes=400),
        *inference(0, 0, head=0, transfer=100, tail=70, total=171, nbytes=9000),
    ]
    rows = summarize(spans)
    assert [r.split for r in rows] == [0, 1]
    row = rows[1]
    assert row.count == 5
    assert row.head == Quantiles(median=3.0, p25=2.0, p75=4.0)
    assert row.transfer == Quantiles(median=30.0, p25=20.0, p75=40.0)
    assert row.tail == Quantiles(median=40.0, p25=30.0, p75=50.0)
    assert row.total == Quantiles(median=76.0, p25=54.0, p75=98.0)
    assert row.other_ms == pytest.approx(76 - (3 + 30 + 40))
    assert (row.bytes_raw, row.bytes_wire) == (400, 200)
    assert rows[0].head == Quantiles(0.0, 0.0, 0.0)
    assert rows[0].bytes_raw == 9000


def test_iqr_interpolates_between_inferences() -> None:
    spans: list[Span] = []
    for i, ms in enumerate([1.0, 2.0, 3.0, 10.0]):
        spans += inference(2, i, head=ms, transfer=0, tail=0, total=ms)
    (row,) = summarize(spans)
    assert row.head.median == pytest.approx(2.5)
    assert row.head.p25 == pytest.approx(1.75)
    assert row.head.p75 == pytest.approx(4.75)


def test_warmup_inferences_are_excluded() -> None:
    spans = [
        *inference(3, 0, head=500, transfer=500, tail=500, total=2000, warmup=True),
        *inference(3, 1, head=1, transfer=2, tail=3, total=7),
    ]
    # Tagging only the end-to-end span is enough to drop the whole inference.
    spans += [
        span("compute", 0, 3, 2, 900.0),
        span("inference", 0, 3, 2, 900.0, attrs={"warmup": True}),
    ]
    (row,) = summarize(spans)
    assert row.count == 1
    assert (row.head.median, row.transfer.median, row.tail.median) == (1.0, 2.0, 3.0)
    assert row.total.median == 7.0


def test_incomplete_and_untagged_spans_are_ignored() -> None:
    spans = [
        *inference(1, 0, head=1, transfer=1, tail=1, total=4),
        span("compute", 0, 1, 1, 50.0),  # inference 1 never finished: no total
        span("compute", 0, -1, -1, 99.0),  # model load, tied to no inference
    ]
    (row,) = summarize(spans)
    assert row.count == 1
    assert row.head.median == 1.0


def test_several_compute_spans_per_stage_add_up() -> None:
    spans = [
        span("compute", 0, 4, 0, 1.5),
        span("compute", 0, 4, 0, 2.5),
        span("compute", 1, 4, 0, 6.0),
        span("compute", 1, 4, 0, 4.0),
        span("inference", 0, 4, 0, 15.0),
    ]
    (row,) = summarize(spans)
    assert (row.head.median, row.tail.median, row.transfer.median) == (4.0, 10.0, 0.0)
    assert row.other_ms == pytest.approx(1.0)


def test_three_stage_chain() -> None:
    spans: list[Span] = []
    for i, scale in enumerate([1.0, 2.0, 3.0]):
        spans += [
            span("compute", 0, 5, i, 1 * scale),
            span("transfer", 0, 5, i, 10 * scale, bytes_raw=1000),
            span("compute", 1, 5, i, 2 * scale),
            span("transfer", 1, 5, i, 20 * scale, bytes_raw=300),
            span("compute", 2, 5, i, 4 * scale),
            span("inference", 0, 5, i, 40 * scale),
        ]
    (row,) = summarize(spans)
    assert [q.median for q in row.stages] == [2.0, 4.0, 8.0]
    assert row.stages[2] == Quantiles(median=8.0, p25=6.0, p75=10.0)
    assert row.head.median == 2.0
    assert row.tail.median == 12.0  # stages 1 and 2 together
    assert row.transfer.median == 60.0  # both hops
    assert row.bytes_raw == 1300
    assert row.other_ms == pytest.approx(80 - (2 + 60 + 12))


def test_empty_input_gives_no_rows() -> None:
    assert summarize([]) == []


def test_summary_to_dicts_is_flat_and_json_ready() -> None:
    rows = summarize(inference(2, 0, head=1, transfer=2, tail=3, total=7, nbytes=64))
    (flat,) = summary_to_dicts(rows)
    assert flat["split"] == 2 and flat["count"] == 1
    assert flat["head_ms"] == 1.0 and flat["head_p25_ms"] == 1.0 and flat["head_p75_ms"] == 1.0
    assert flat["transfer_ms"] == 2.0 and flat["tail_ms"] == 3.0 and flat["total_ms"] == 7.0
    assert flat["other_ms"] == pytest.approx(1.0)
    assert (flat["bytes_raw"], flat["bytes_wire"]) == (64, 32)
    assert [s["compute_ms"] for s in flat["stages"]] == [1.0, 3.0]
    assert json.loads(json.dumps(flat)) == flat


def test_bytes_count_forward_transfers_only_but_time_counts_replies() -> None:
    spans: list[Span] = []
    for i in range(3):
        spans += [
            span("compute", 0, 2, i, 1.0),
            span("transfer", 0, 2, i, 10.0, bytes_raw=5000, bytes_wire=2500, attrs={"direction": "forward"}),
            span("compute", 1, 2, i, 3.0),
            span("transfer", 1, 2, i, 2.0, bytes_raw=40, bytes_wire=40, attrs={"direction": "reply"}),
            span("inference", 0, 2, i, 17.0),
        ]
    (row,) = summarize(spans)
    assert (row.bytes_raw, row.bytes_wire) == (5000, 2500)  # the reply's 40 bytes left out
    assert row.transfer.median == 12.0  # the reply's time kept
    assert row.other_ms == pytest.approx(17 - (1 + 12 + 3))


def test_only_completed_inferences_are_samples() -> None:
    spans = [
        *inference(1, 0, head=1, transfer=2, tail=3, total=7),  # completed
        # failed: the handler raised, so the recorder tagged its inference span with the error
        span("compute", 0, 1, 1, 1.0),
        span("inference", 0, 1, 1, 900.0, attrs={"error": "ValueError"}),
        # interrupted: the run ended before the answer came back, no inference span at all
        span("compute", 0, 1, 2, 1.0),
        span("transfer", 0, 1, 2, 800.0),
        # a split the model does not have: its only inference failed
        span("inference", 0, 99, 3, 0.1, attrs={"error": "RunError"}),
    ]
    (row,) = summarize(spans)
    assert (row.split, row.count, row.total.median) == (1, 1, 7.0)
    assert incomplete(spans) == [
        Incomplete(split=1, inference=1, error="ValueError", warmup=False),
        Incomplete(split=1, inference=2, error="", warmup=False),
        Incomplete(split=99, inference=3, error="RunError", warmup=False),
    ]
    assert completed_inferences(spans) == {0}


def test_a_retried_inference_counts_once_it_completed() -> None:
    spans = [
        *inference(2, 0, head=1, transfer=2, tail=3, total=7),
        span("inference", 0, 2, 0, 50.0, attrs={"error": "PeerError"}),
    ]
    (row,) = summarize(spans)
    assert row.total.median == 7.0 and incomplete(spans) == []


def chain(first: int, second: int, i: int, scale: float) -> list[Span]:
    """One inference of a phone -> edge -> cloud chain cut at ``first`` and ``second``."""

    def hop(stage: int, ms: float, nbytes: int, **attrs: object) -> Span:
        who = {0: "P0", 1: "P1", 2: "P2"}
        sender, receiver = (stage, stage + 1) if attrs.get("direction") != "reply" else (stage, stage - 1)
        fields = {"from": who[sender], "to": who[receiver], **attrs}
        return span("transfer", stage, first, i, ms, bytes_raw=nbytes, attrs=fields)

    return [
        span("compute", 0, first, i, 1 * scale, start_layer=0, end_layer=first),
        hop(0, 10 * scale, 1000, direction="forward"),
        span("compute", 1, first, i, 2 * scale, start_layer=first, end_layer=second),
        hop(1, 20 * scale, 300, direction="forward"),
        span("compute", 2, first, i, 4 * scale, start_layer=second, end_layer=9),
        hop(2, 3 * scale, 40, direction="reply"),
        hop(1, 5 * scale, 40, direction="reply"),
        span("inference", 0, first, i, 50 * scale),
    ]


def test_chains_sharing_a_first_cut_are_rows_of_their_own_with_every_cut() -> None:
    spans = [*chain(5, 7, 0, 1.0), *chain(5, 7, 1, 3.0), *chain(5, 12, 2, 2.0)]
    rows = summarize(spans)
    assert [(r.split, r.cuts, r.cut_label, r.count) for r in rows] == [
        (5, (5, 7), "5→7", 2),
        (5, (5, 12), "5→12", 1),
    ]
    assert summarize(chain(5, 7, 0, 1.0))[0].transfer.median == 38.0  # every hop, both ways


def test_each_hop_has_its_transfer_both_ways_and_its_forward_bytes() -> None:
    (row,) = summarize([*chain(5, 7, 0, 1.0), *chain(5, 7, 1, 3.0)])
    assert [(h.sender, h.receiver) for h in row.hops] == [("P0", "P1"), ("P1", "P2")]
    first, second = row.hops
    assert first.transfer == Quantiles(median=30.0, p25=22.5, p75=37.5)  # 10 + 5 reply, x1 and x3
    assert second.transfer.median == 46.0  # 20 + 3, x2 on median
    assert (first.bytes_raw, second.bytes_raw) == (1000, 300)
    assert row.bytes_raw == 1300  # forward hops still add up in the row


def test_hops_and_cuts_are_in_the_json_rows() -> None:
    (flat,) = summary_to_dicts(summarize(chain(3, 8, 0, 1.0)))
    assert flat["cuts"] == [3, 8]
    assert [(h["from"], h["to"], h["transfer_ms"], h["bytes_raw"]) for h in flat["hops"]] == [
        ("P0", "P1", 15.0, 1000),
        ("P1", "P2", 23.0, 300),
    ]
    assert json.loads(json.dumps(flat)) == flat


def test_two_participants_keep_one_cut_and_one_hop() -> None:
    (row,) = summarize(inference(4, 0, head=1, transfer=2, tail=3, total=7, nbytes=64))
    assert row.cuts == (4,) and row.cut_label == "4" and len(row.hops) == 1


def test_a_placement_is_a_row_of_its_own_labelled_by_its_layers() -> None:
    label = {"placement": "1-3,7", "placement_layers": "1-3 (a..c), 7 (g)", "placement_tensors": 2}
    placed = inference(4, 1, head=1, transfer=2, tail=3, total=7)
    placed[-1] = span("inference", 0, 4, 1, 7, attrs=label)
    rows = summarize([*inference(4, 0, head=1, transfer=2, tail=3, total=6), *placed])
    assert [(r.split, r.placement, r.total.median) for r in rows] == [(4, "", 6), (4, "1-3,7", 7)]
    assert rows[1].cut_label == "[1-3,7]" and rows[0].cut_label == "4"
    assert rows[1].placement_layers == "1-3 (a..c), 7 (g)" and rows[1].placement_tensors == 2
    flat = summary_to_dicts(rows)
    assert (
        "placement" not in flat[0] and flat[1]["placement"] == "1-3,7" and flat[1]["placement_tensors"] == 2
    )
