"""What travels between participants: envelopes, link emulation, and the gRPC fallback path.

A task leaves a participant as an :class:`Envelope` (who sends, reply
routing, trace tags, codec, buffer sizes, the task's header) and its tensor
buffers. Between participants they normally travel as frames on the data
plane (:mod:`.datalink`). This module is the path through gRPC, used for a
peer that announced no data port and for tasks from the controller: below
``SINGLE_MESSAGE_BYTES`` one ``DeliverOne`` call carries envelope and
buffers packed together; above it, a ``Deliver`` stream carries the
envelope, then each buffer in chunks of at most ``CHUNK_BYTES``. The
receiver fills one ``bytearray`` per buffer, so tensors decode without
another copy.

Link emulation happens on the sending side, on either path, so that one
machine can play phone, link and cloud: a :class:`LinkShaper` holds each
chunk until a link of the given rate would have finished transmitting it (a
virtual-clock token bucket with no burst allowance, so a message of ``n``
bytes takes ``8 n / rate`` however it is chunked), after waiting the one-way
latency once per message. Replies use the replying participant's shaper.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import msgspec

from ..clock import now_ns
from ..tasks import Task, decode_task, encode_task
from .codecs import get_codec

CHUNK_BYTES = 1 << 20
# Below this size a task travels as one unary call: a gRPC stream costs ~1-2 ms more
# in Python (a thread consumes the request iterator), which would dwarf small tensors.
SINGLE_MESSAGE_BYTES = 4 << 20
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]


class Tags(msgspec.Struct, frozen=True):
    """Trace context carried with a task: spans on the receiver inherit it."""

    inference: int = -1
    split: int = -1
    warmup: bool = False


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """First message of a Deliver stream."""

    sender: str
    sender_stage: int
    sent_ns: int
    task_header: bytes
    codec: str = "none"
    raw_sizes: list[int] = []
    wire_sizes: list[int] = []
    tags: Tags = Tags()
    expects_reply: bool = False  # the sender waits: the handler's result rides on the response
    is_reply: bool = False


_ENVELOPES = msgspec.msgpack.Decoder(Envelope)
_ENCODER = msgspec.msgpack.Encoder()


class LinkShaper:
    """Emulated uplink: a rate in bits per second and a one-way latency.

    Every chunk gets a release time on one virtual clock: a message may not
    start before its latency has passed, and the link carries one chunk
    after another at ``rate``. The sender sleeps once per chunk, to that
    chunk's release time, so a late wake-up delays that chunk only and is
    not added again to the next one.
    """

    def __init__(self, rate_bps: float = math.inf, latency_s: float = 0.0) -> None:
        self.rate_bps = rate_bps
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self._free_at = 0.0
        self._not_before = 0.0

    @property
    def active(self) -> bool:
        """Whether this link changes anything at all."""
        return math.isfinite(self.rate_bps) or self.latency_s > 0

    def set_rate(self, rate_bps: float) -> None:
        """Use ``rate_bps`` for every chunk not yet paced (a link that changes during a run)."""
        with self._lock:
            self.rate_bps = rate_bps

    def wait_latency(self) -> None:
        """Start a message: its first byte may leave one latency from now."""
        if self.latency_s > 0:
            self._not_before = time.perf_counter() + self.latency_s
            if not math.isfinite(self.rate_bps):
                _sleep_until(self._not_before)

    def pace(self, nbytes: int) -> None:
        """Block until the link would have delivered ``nbytes`` more."""
        if not math.isfinite(self.rate_bps):
            return
        with self._lock:
            start = max(time.perf_counter(), self._free_at, self._not_before)
            self._free_at = start + nbytes * 8 / self.rate_bps
            done = self._free_at
        _sleep_until(done)


@dataclass(frozen=True)
class Outgoing:
    """A task encoded and compressed, ready to stream, with its timings."""

    envelope: Envelope
    buffers: list[bytes | memoryview]
    serialize_ns: tuple[int, int]
    compress_ns: tuple[int, int]

    @property
    def bytes_raw(self) -> int:
        """Tensor bytes before compression."""
        return sum(self.envelope.raw_sizes)

    @property
    def bytes_wire(self) -> int:
        """Bytes that cross the link: envelope and compressed buffers."""
        return sum(self.envelope.wire_sizes) + len(self.envelope.task_header)


def prepare(
    task: Task,
    *,
    sender: str,
    sender_stage: int,
    codec: str = "none",
    tags: Tags = Tags(),
    expects_reply: bool = False,
    is_reply: bool = False,
) -> Outgoing:
    """Serialise and compress ``task`` (timed) and build its envelope."""
    clock = now_ns
    t0 = clock()
    encoded = encode_task(task)
    t1 = clock()
    compressor = get_codec(codec)
    buffers: list[bytes | memoryview] = (
        list(encoded.buffers) if codec == "none" else [compressor.compress(b) for b in encoded.buffers]
    )
    t2 = clock()
    envelope = Envelope(
        sender=sender,
        sender_stage=sender_stage,
        sent_ns=t0,
        task_header=encoded.header,
        codec=codec,
        raw_sizes=[memoryview(b).nbytes for b in encoded.buffers],
        wire_sizes=[memoryview(b).nbytes for b in buffers],
        tags=tags,
        expects_reply=expects_reply,
        is_reply=is_reply,
    )
    return Outgoing(envelope, buffers, (t0, t1), (t1, t2))


def stream(outgoing: Outgoing, shaper: LinkShaper | None = None) -> Iterator[bytes]:
    """The Deliver request stream of ``outgoing``, paced by ``shaper``."""
    first = _ENCODER.encode(outgoing.envelope)
    if shaper is not None:
        shaper.wait_latency()
        shaper.pace(len(first))
    yield first
    for buffer in outgoing.buffers:
        view = memoryview(buffer).cast("B")
        for offset in range(0, view.nbytes, CHUNK_BYTES):
            chunk = view[offset : offset + CHUNK_BYTES]
            if shaper is not None:
                shaper.pace(chunk.nbytes)
            yield chunk.tobytes()


def pack(outgoing: Outgoing, shaper: LinkShaper | None = None) -> bytes:
    """``outgoing`` as one message (envelope length, envelope, buffers), paced by ``shaper``."""
    first = _ENCODER.encode(outgoing.envelope)
    if shaper is not None:
        shaper.wait_latency()
        shaper.pace(len(first) + sum(outgoing.envelope.wire_sizes))
    return b"".join([len(first).to_bytes(4, "little"), first, *outgoing.buffers])


def fits_one_message(outgoing: Outgoing) -> bool:
    """Whether ``outgoing`` is small enough for :func:`pack`."""
    return outgoing.bytes_wire <= SINGLE_MESSAGE_BYTES


def unpack(message: bytes) -> Incoming:
    """Decode a message made by :func:`pack` (timed like :func:`receive`)."""
    clock = now_ns
    first_ns = clock()
    view = memoryview(message)
    size = int.from_bytes(view[:4], "little")
    envelope = _ENVELOPES.decode(view[4 : 4 + size])
    buffers, offset = [], 4 + size
    for length in envelope.wire_sizes:
        # One copy into a writable buffer: tensors then decode in place, and handlers may modify them.
        buffers.append(bytearray(view[offset : offset + length]))
        offset += length
    return _finish(envelope, buffers, first_ns, clock())


@dataclass
class Incoming:
    """A received task with its envelope and receive-side timings."""

    envelope: Envelope
    task: Task
    first_chunk_ns: int
    received_ns: int
    decompressed_ns: int
    decoded_ns: int
    via: str = "grpc"  # the path it came by: "grpc", or "socket" (participant.datalink)


def receive(messages: Iterator[bytes]) -> Incoming:
    """Read one Deliver stream: envelope, buffers, decompress, decode (timed)."""
    clock = now_ns
    first = next(messages)
    first_ns = clock()
    envelope = _ENVELOPES.decode(first)
    buffers = [_read_buffer(messages, size) for size in envelope.wire_sizes]
    return _finish(envelope, buffers, first_ns, clock())


def _finish(envelope: Envelope, buffers: list[bytearray], first_ns: int, received: int) -> Incoming:
    clock = now_ns
    if envelope.codec != "none":
        codec = get_codec(envelope.codec)
        buffers = [bytearray(codec.decompress(bytes(b))) for b in buffers]
    decompressed = clock()
    task = decode_task(envelope.task_header, buffers)
    return Incoming(envelope, task, first_ns, received, decompressed, clock())


def deliver(
    channel: grpc.Channel, outgoing: Outgoing, shaper: LinkShaper | None = None, timeout: float | None = None
) -> bytes:
    """Send ``outgoing`` to the participant behind ``channel``; returns its raw reply."""
    if fits_one_message(outgoing):
        return channel.unary_unary(_method("DeliverOne"))(pack(outgoing, shaper), timeout=timeout)  # type: ignore[no-any-return]
    return channel.stream_unary(_method("Deliver"))(stream(outgoing, shaper), timeout=timeout)  # type: ignore[no-any-return]


def _method(name: str) -> str:
    return f"/splittracer.Participant/{name}"


def _read_buffer(messages: Iterator[bytes], size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        chunk = next(messages)
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return buffer


def _sleep_until(deadline: float) -> None:
    """Sleep to ``deadline`` (perf_counter seconds); spin the last 200 µs for precision."""
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            return
        time.sleep(remaining - 2e-4 if remaining > 5e-4 else 0)
