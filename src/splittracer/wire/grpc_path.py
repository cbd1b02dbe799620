"""Tasks over gRPC: the path to a peer that announced no data port, and from the controller.

Below ``SINGLE_MESSAGE_BYTES`` one ``DeliverOne`` call carries a task packed
as the data plane frames it (:func:`~.envelope.frame_prefix`, then the
buffers); above it, a ``Deliver`` stream carries the envelope, then each
buffer in chunks of at most ``CHUNK_BYTES``. The receiver fills one
``bytearray`` per buffer, so tensors decode without another copy. The
sender's :class:`~.shaping.LinkShaper` paces what it sends, as on the data
plane. The answer is the call's response: a :class:`~.messages.Reply`, with
the answering task packed in its ``payload``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import msgspec

from ..clock import now_ns
from .envelope import (
    PREFIX_BYTES,
    Incoming,
    Outgoing,
    arrived,
    check_announced,
    decode_envelope,
    encode_envelope,
    frame_prefix,
)
from .link import Handler, check_reply, unreachable
from .messages import Reply, decoder, encode, method
from .shaping import LinkShaper
from .tls import TlsBundle

CHUNK_BYTES = 1 << 20
# Below this size a task travels as one unary call: a gRPC stream costs ~1-2 ms more
# in Python (a thread consumes the request iterator), which would dwarf small tensors.
SINGLE_MESSAGE_BYTES = 4 << 20
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", 64 << 20),
    ("grpc.max_receive_message_length", 64 << 20),
]


def open_channel(address: str, peer: str, tls: TlsBundle | None) -> grpc.Channel:
    """A channel to ``peer``: mutual TLS when the run has certificates."""
    if tls is None:
        return grpc.insecure_channel(address, options=GRPC_OPTIONS)
    return tls.channel(address, peer, list(GRPC_OPTIONS))


# -- sending ------------------------------------------------------------------------


def stream(outgoing: Outgoing, shaper: LinkShaper | None = None) -> Iterator[bytes]:
    """The Deliver request stream of ``outgoing``, paced by ``shaper``."""
    first = encode_envelope(outgoing.envelope)
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
    prefix = frame_prefix(outgoing.envelope)
    if shaper is not None:
        shaper.wait_latency()
        shaper.pace(len(prefix) - PREFIX_BYTES + sum(outgoing.envelope.wire_sizes))
    return b"".join([prefix, *outgoing.buffers])


def fits_one_message(outgoing: Outgoing) -> bool:
    """Whether ``outgoing`` is small enough for :func:`pack`."""
    return outgoing.bytes_wire <= SINGLE_MESSAGE_BYTES


def deliver(
    channel: grpc.Channel, outgoing: Outgoing, shaper: LinkShaper | None = None, timeout: float | None = None
) -> bytes:
    """Send ``outgoing`` to the participant behind ``channel``; returns its raw reply."""
    if fits_one_message(outgoing):
        return channel.unary_unary(method("DeliverOne"))(pack(outgoing, shaper), timeout=timeout)  # type: ignore[no-any-return]
    return channel.stream_unary(method("Deliver"))(stream(outgoing, shaper), timeout=timeout)  # type: ignore[no-any-return]


class GrpcLink:
    """A :class:`~.link.Link` over gRPC ``Deliver`` calls; the channel opens on first use."""

    def __init__(
        self, peer: str, address: str, tls: TlsBundle | None, shaper: LinkShaper | None = None
    ) -> None:
        self.peer = peer
        self._address = address
        self._tls = tls
        self._shaper = shaper
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    def send(self, outgoing: Outgoing, timeout: float | None = None) -> Incoming | None:
        """Deliver ``outgoing``; the answering task, or None (see :class:`~.link.Link`)."""
        try:
            raw = deliver(self._open(), outgoing, self._shaper, timeout)
        except grpc.RpcError as exc:
            raise unreachable(self.peer, str(exc.details())) from exc
        except OSError as exc:
            raise unreachable(self.peer, str(exc) or type(exc).__name__) from exc
        reply = decoder(Reply).decode(raw)
        check_reply(self.peer, outgoing, reply)
        return unpack(reply.payload) if reply.payload else None

    def close(self) -> None:
        """Close the channel, if one was opened."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def _open(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                self._channel = open_channel(self._address, self.peer, self._tls)
            return self._channel


# -- receiving ----------------------------------------------------------------------


def unpack(message: bytes) -> Incoming:
    """Read a message made by :func:`pack` (timed like :func:`receive`)."""
    first_ns = now_ns()
    view = memoryview(message)
    size = int.from_bytes(view[:PREFIX_BYTES], "little")
    envelope = decode_envelope(view[PREFIX_BYTES : PREFIX_BYTES + size])
    check_announced(envelope)
    buffers, offset = [], PREFIX_BYTES + size
    for length in envelope.wire_sizes:
        # One copy into a writable buffer: tensors then decode in place, and handlers may modify them.
        buffers.append(bytearray(view[offset : offset + length]))
        offset += length
    return arrived(envelope, buffers, first_ns, now_ns(), "grpc")


def receive(messages: Iterator[bytes]) -> Incoming:
    """Read one Deliver stream: envelope, buffers, decompressed (timed)."""
    first = next(messages)
    first_ns = now_ns()
    envelope = decode_envelope(first)
    check_announced(envelope)  # before a buffer of the announced size is allocated
    buffers = [_read_buffer(messages, size) for size in envelope.wire_sizes]
    return arrived(envelope, buffers, first_ns, now_ns(), "grpc")


def delivery_handlers(handle: Handler, shaper: Callable[[], LinkShaper]) -> dict[str, Any]:
    """The participant service's ``Deliver`` and ``DeliverOne`` methods, answered by ``handle``.

    A reply task is packed into the response and paced by ``shaper``: it
    travels on the receiving participant's uplink.
    """

    def answer(read: Callable[[], Incoming]) -> bytes:
        reply, outgoing = handle(read)
        if outgoing is not None:
            reply = msgspec.structs.replace(reply, payload=pack(outgoing, shaper()))
        return encode(reply)

    return {
        "Deliver": grpc.stream_unary_rpc_method_handler(lambda m, _c: answer(lambda: receive(m))),
        "DeliverOne": grpc.unary_unary_rpc_method_handler(lambda m, _c: answer(lambda: unpack(m))),
    }


def _read_buffer(messages: Iterator[bytes], size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    filled = 0
    while filled < size:
        chunk = next(messages)
        view[filled : filled + len(chunk)] = chunk
        filled += len(chunk)
    return buffer
