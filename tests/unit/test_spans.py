"""Spans: msgpack round trip, validation, and the recorder."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import msgspec
import pytest

from splittracer.errors import RunError
from splittracer.metrics import (
    Metric,
    Span,
    SpanRecorder,
    decode_metrics,
    decode_spans,
    encode_metrics,
    encode_spans,
)


def make_span(**overrides: object) -> Span:
    fields: dict[str, object] = {
        "run_id": "r1",
        "participant": "CLIENT1",
        "stage": 0,
        "kind": "compute",
        "inference": 3,
        "split": 5,
        "start_layer": 1,
        "end_layer": 5,
        "start_ns": 1_000_000,
        "end_ns": 3_500_000,
        "bytes_raw": 10,
        "bytes_wire": 7,
        "attrs": {"warmup": False, "codec": "lz4", "ratio": 0.7, "chunks": 2},
    }
    fields.update(overrides)
    return Span(**fields)  # type: ignore[arg-type]


def fake_clock(start: int = 0, step: int = 1_000_000) -> Iterator[int]:
    value = start
    while True:
        yield value
        value += step


def test_spans_round_trip_through_msgpack() -> None:
    spans = [make_span(), make_span(kind="transfer", stage=1, attrs={})]
    decoded = decode_spans(encode_spans(spans))
    assert decoded == spans
    assert decoded[0].attrs == {"warmup": False, "codec": "lz4", "ratio": 0.7, "chunks": 2}
    assert type(decoded[0].attrs["warmup"]) is bool
    assert type(decoded[0].attrs["chunks"]) is int


def test_serialised_form_is_a_map_keyed_by_field_name() -> None:
    raw = msgspec.msgpack.decode(encode_spans([make_span()]))
    assert raw[0]["kind"] == "compute"
    assert raw[0]["end_ns"] == 3_500_000


def test_decoding_ignores_unknown_fields_and_fills_defaults() -> None:
    # A newer peer may send fields this version does not know.
    payload = msgspec.msgpack.encode(
        [
            {
                "run_id": "r1",
                "participant": "P",
                "stage": 0,
                "kind": "send",
                "start_ns": 1,
                "end_ns": 2,
                "future_field": 42,
            }
        ]
    )
    (span,) = decode_spans(payload)
    assert (span.inference, span.split, span.end_layer, span.attrs) == (-1, -1, -1, {})


def test_duration_and_shift() -> None:
    span = make_span()
    assert span.duration_ms == pytest.approx(2.5)
    moved = span.shifted(-1_000_000)
    assert (moved.start_ns, moved.end_ns) == (0, 2_500_000)
    assert moved.duration_ms == span.duration_ms


def test_unknown_kind_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ValueError, match="did you mean 'compute'"):
        make_span(kind="comptue")


def test_malformed_payloads_raise_run_error() -> None:
    with pytest.raises(RunError, match="could not decode spans"):
        decode_spans(b"\xc1not msgpack")
    bad_kind = msgspec.msgpack.encode(
        [
            {
                "run_id": "r",
                "participant": "P",
                "stage": 0,
                "kind": "nap",
                "start_ns": 0,
                "end_ns": 1,
            }
        ]
    )
    with pytest.raises(RunError, match="unknown span kind 'nap'"):
        decode_spans(bad_kind)


def test_metrics_round_trip() -> None:
    metrics = [Metric(run_id="r", participant="P", name="energy_j", value=1.5, time_ns=9)]
    assert decode_metrics(encode_metrics(metrics)) == metrics


def test_recorder_times_a_block_and_lets_it_fill_bytes() -> None:
    recorder = SpanRecorder("r1", "CLIENT1", stage=0, clock=fake_clock(100).__next__)
    with recorder.span("serialize", inference=2, split=4, attrs={"codec": "raw"}) as open_span:
        open_span.bytes_raw = 4096
    (span,) = recorder.drain()
    assert span == Span(
        run_id="r1",
        participant="CLIENT1",
        stage=0,
        kind="serialize",
        inference=2,
        split=4,
        start_ns=100,
        end_ns=1_000_100,
        bytes_raw=4096,
        attrs={"codec": "raw"},
    )
    assert recorder.drain() == []


def test_recorder_stage_override_and_add() -> None:
    recorder = SpanRecorder("r1", "CLOUD", stage=1)
    with recorder.span("transfer", stage=0):
        pass
    recorder.add(make_span(run_id="r1"))
    spans = recorder.drain()
    assert [s.stage for s in spans] == [0, 0]
    assert spans[0].end_ns >= spans[0].start_ns


def test_recorder_keeps_a_span_whose_block_raised() -> None:
    recorder = SpanRecorder("r1", "P")
    with pytest.raises(KeyError), recorder.span("handle"):
        raise KeyError("boom")
    (span,) = recorder.drain()
    assert span.attrs == {"error": "KeyError"}


def test_recorder_rejects_unknown_kind_before_running_the_block() -> None:
    recorder = SpanRecorder("r1", "P")
    ran = []
    with pytest.raises(ValueError, match="unknown span kind"), recorder.span("sleep"):
        ran.append(True)
    assert ran == []


def test_recorder_is_thread_safe() -> None:
    recorder = SpanRecorder("r1", "P")

    def work(worker: int) -> None:
        for i in range(500):
            with recorder.span("compute", inference=i, attrs={"worker": worker}):
                pass

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    drained: list[Span] = []
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        drained += recorder.drain()
    for thread in threads:
        thread.join()
    drained += recorder.drain()
    assert len(drained) == 8 * 500
    assert len({(s.attrs["worker"], s.inference) for s in drained}) == 8 * 500


def test_recorder_metrics() -> None:
    recorder = SpanRecorder("r1", "EDGE1", clock=fake_clock(7).__next__)
    recorder.metric("temperature_c", 51, {"sensor": "soc"})
    assert recorder.drain_metrics() == [
        Metric(
            run_id="r1",
            participant="EDGE1",
            name="temperature_c",
            value=51.0,
            time_ns=7,
            attrs={"sensor": "soc"},
        )
    ]
    assert recorder.drain_metrics() == []
