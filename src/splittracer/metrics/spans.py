"""Spans and metrics: the small typed records every participant produces.

A :class:`Span` is one timed thing on one participant. Participants buffer
them in a :class:`SpanRecorder` and ship them to the controller in batches
encoded with :func:`encode_spans`; the controller decodes them with
:func:`decode_spans` and appends them to the results store.

The serialised form is a msgpack map keyed by field name, so adding a field
with a default later does not break an older peer: unknown keys are ignored.
"""

from __future__ import annotations

import difflib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import msgspec

from ..errors import RunError

AttrValue = str | int | float | bool
Attrs = dict[str, AttrValue]

SPAN_KINDS = (
    "compute",
    "serialize",
    "compress",
    "send",
    "receive",
    "decompress",
    "deserialize",
    "transfer",
    "handle",
    "inference",
    "queue",
)


CLIENT_STRIDE = 1_000_000  # inference ids per client when several clients share a run


def inference_id(client: int, sequence: int) -> int:
    """The run-wide id of a client's inference ``sequence``: ``client * 1_000_000 + sequence``.

    ``client`` is -1 when the run has one client: its ids are its sequence
    numbers. Several clients (a fleet of cameras) get disjoint ranges, so the
    id alone says whose inference it was (:func:`client_of`).
    """
    if client < 0:
        return sequence
    if not 0 <= sequence < CLIENT_STRIDE:
        raise RunError(f"inference {sequence} of a client is outside 0..{CLIENT_STRIDE - 1}")
    return client * CLIENT_STRIDE + sequence


def client_of(inference: int) -> int:
    """The client index an inference id of a several-client run belongs to."""
    return inference // CLIENT_STRIDE


class Span(msgspec.Struct, frozen=True, kw_only=True):
    """One timed thing on one participant.

    ``start_ns``/``end_ns`` come from ``time.perf_counter_ns`` of the process
    that recorded the span; ``stage`` is the position of the device in the
    chain (0 = first). ``inference``, ``split`` and ``end_layer`` are -1 when
    the span is not tied to one.
    """

    run_id: str
    participant: str
    stage: int
    kind: str
    inference: int = -1
    split: int = -1
    start_layer: int = -1
    end_layer: int = -1
    start_ns: int
    end_ns: int
    bytes_raw: int = 0
    bytes_wire: int = 0
    attrs: Attrs = {}

    def __post_init__(self) -> None:
        # Runs on construction and on decode, so a peer cannot smuggle in a
        # kind the reports would silently ignore.
        if self.kind not in SPAN_KINDS:
            raise ValueError(_unknown_kind(self.kind))

    @property
    def duration_ms(self) -> float:
        """Length of the span in milliseconds."""
        return (self.end_ns - self.start_ns) / 1e6

    def shifted(self, offset_ns: int) -> Span:
        """This span moved by ``offset_ns`` (to correct a measured clock offset)."""
        return msgspec.structs.replace(
            self, start_ns=self.start_ns + offset_ns, end_ns=self.end_ns + offset_ns
        )


class Metric(msgspec.Struct, frozen=True, kw_only=True):
    """One sample of a custom metric (energy, temperature, accuracy...).

    ``inference`` and ``split`` are those of the work in progress when it was
    recorded (a handler's ``ctx.record``), -1 when it is tied to none (a
    system sampler's reading).
    """

    run_id: str
    participant: str
    name: str
    value: float
    time_ns: int
    inference: int = -1
    split: int = -1
    attrs: Attrs = {}


def _unknown_kind(kind: str) -> str:
    close = difflib.get_close_matches(kind, SPAN_KINDS, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown span kind '{kind}'{hint}; expected one of: {', '.join(SPAN_KINDS)}"


_ENCODER = msgspec.msgpack.Encoder()
_SPANS_DECODER = msgspec.msgpack.Decoder(list[Span])
_METRICS_DECODER = msgspec.msgpack.Decoder(list[Metric])


def encode_spans(spans: list[Span]) -> bytes:
    """Spans as one msgpack message."""
    return _ENCODER.encode(spans)


def decode_spans(data: bytes) -> list[Span]:
    """Spans from a message made by :func:`encode_spans`; raises RunError if malformed."""
    try:
        return _SPANS_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise RunError(f"could not decode spans from a participant: {exc}") from exc


def encode_metrics(metrics: list[Metric]) -> bytes:
    """Metrics as one msgpack message."""
    return _ENCODER.encode(metrics)


def decode_metrics(data: bytes) -> list[Metric]:
    """Metrics from a message made by :func:`encode_metrics`; raises RunError if malformed."""
    try:
        return _METRICS_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise RunError(f"could not decode metrics from a participant: {exc}") from exc


@dataclass(slots=True)
class OpenSpan:
    """The fields of a span still being timed; set bytes or attrs inside the block."""

    kind: str
    stage: int
    inference: int = -1
    split: int = -1
    start_layer: int = -1
    end_layer: int = -1
    bytes_raw: int = 0
    bytes_wire: int = 0
    attrs: Attrs = field(default_factory=dict)


class SpanRecorder:
    """A thread-safe in-memory buffer of one participant's spans and metrics.

    Recording only appends to a list under a lock; shipping the buffer is the
    caller's job (``drain`` then ``encode_spans``), off the hot path.
    """

    def __init__(
        self,
        run_id: str,
        participant: str,
        stage: int = 0,
        *,
        clock: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        self.run_id = run_id
        self.participant = participant
        self.stage = stage
        self._clock = clock
        self._lock = threading.Lock()
        self._spans: list[Span] = []
        self._metrics: list[Metric] = []

    @contextmanager
    def span(
        self,
        kind: str,
        *,
        stage: int | None = None,
        inference: int = -1,
        split: int = -1,
        start_layer: int = -1,
        end_layer: int = -1,
        bytes_raw: int = 0,
        bytes_wire: int = 0,
        attrs: Attrs | None = None,
        since_ns: int | None = None,
    ) -> Iterator[OpenSpan]:
        """Time the ``with`` block as a span of ``kind``.

        Yields an :class:`OpenSpan` whose fields may be filled in the block
        (bytes are often known only at its end). A block that raises is still
        recorded, with ``attrs['error']`` set to the exception's type.
        ``since_ns`` (a reading of this recorder's clock) starts the span
        earlier than the block: what it times began before a thread took it up.
        """
        if kind not in SPAN_KINDS:
            raise ValueError(_unknown_kind(kind))
        open_span = OpenSpan(
            kind,
            self.stage if stage is None else stage,
            inference,
            split,
            start_layer,
            end_layer,
            bytes_raw,
            bytes_wire,
            dict(attrs or {}),
        )
        start = self._clock() if since_ns is None else since_ns
        try:
            yield open_span
        except BaseException as exc:
            open_span.attrs["error"] = type(exc).__name__
            raise
        finally:
            self.add(self._close(open_span, start, self._clock()))

    def _close(self, s: OpenSpan, start_ns: int, end_ns: int) -> Span:
        return Span(
            run_id=self.run_id,
            participant=self.participant,
            stage=s.stage,
            kind=s.kind,
            inference=s.inference,
            split=s.split,
            start_layer=s.start_layer,
            end_layer=s.end_layer,
            start_ns=start_ns,
            end_ns=end_ns,
            bytes_raw=s.bytes_raw,
            bytes_wire=s.bytes_wire,
            attrs=s.attrs,
        )

    def add(self, span: Span) -> None:
        """Buffer a span made elsewhere (a transfer span built from two timestamps)."""
        with self._lock:
            self._spans.append(span)

    def metric(
        self, name: str, value: float, attrs: Attrs | None = None, *, inference: int = -1, split: int = -1
    ) -> None:
        """Buffer one sample of a custom metric, stamped now (tied to ``inference`` at ``split`` if given)."""
        sample = Metric(
            run_id=self.run_id,
            participant=self.participant,
            name=name,
            value=float(value),
            time_ns=self._clock(),
            inference=inference,
            split=split,
            attrs=dict(attrs or {}),
        )
        with self._lock:
            self._metrics.append(sample)

    def drain(self) -> list[Span]:
        """Take every buffered span, oldest first, leaving the buffer empty."""
        with self._lock:
            spans, self._spans = self._spans, []
        return spans

    def drain_metrics(self) -> list[Metric]:
        """Take every buffered metric sample, leaving the buffer empty."""
        with self._lock:
            metrics, self._metrics = self._metrics, []
        return metrics
