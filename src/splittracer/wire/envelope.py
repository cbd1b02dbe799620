"""The envelope: how one encoded task travels, on either path (socket frames or gRPC).

A task leaves a participant as an :class:`Envelope` (who sends, reply
routing, trace tags, codec, buffer sizes, the task's header) and its tensor
buffers, compressed by the run's codec. Both paths start a task the same
way, with :func:`frame_prefix`: the envelope's length (u32, little endian)
and the envelope in msgpack; the buffers follow. What arrives is an
:class:`Incoming`: the envelope and the decompressed buffers, ready for the
task's own decoder (``splittracer.tasks.decode_task``). This module knows
nothing of task types: it carries an :class:`EncodedTask`, header and
buffers, made and read by the layers above.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from ..clock import now_ns
from ..errors import WireError
from .codecs import get_codec
from .messages import MessageDecoder

if TYPE_CHECKING:
    from .tensormeta import TensorMeta

PREFIX_BYTES = 4  # the u32 envelope length in front of every envelope
CODEC_SLACK_BYTES = 64 << 10
"""A compressed buffer may exceed its tensor's size by 1/16 plus this (codec headers, incompressible data)."""


class Tags(msgspec.Struct, frozen=True):
    """Trace context carried with a task: spans on the receiver inherit it."""

    inference: int = -1
    split: int = -1
    warmup: bool = False


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """What travels in front of a task's buffers."""

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


@dataclass(frozen=True)
class EncodedTask:
    """A task on the wire: a msgpack header and the raw tensor buffers it refers to, in order."""

    header: bytes
    buffers: list[memoryview | bytes]
    name: str = ""  # the task type's registry name, for messages about it
    metas: list[TensorMeta] = field(default_factory=list)  # one per buffer: lossy codecs need dtype and shape

    @property
    def nbytes(self) -> int:
        """Bytes of header and buffers together."""
        return len(self.header) + sum(memoryview(b).nbytes for b in self.buffers)


@dataclass(frozen=True)
class Outgoing:
    """A task encoded and compressed, ready to send, with its timings."""

    envelope: Envelope
    buffers: list[bytes | memoryview]
    serialize_ns: tuple[int, int]
    compress_ns: tuple[int, int]
    task_name: str = ""

    @property
    def bytes_raw(self) -> int:
        """Tensor bytes before compression."""
        return sum(self.envelope.raw_sizes)

    @property
    def bytes_wire(self) -> int:
        """Bytes that cross the link: envelope and compressed buffers."""
        return sum(self.envelope.wire_sizes) + len(self.envelope.task_header)


@dataclass
class Incoming:
    """An envelope and its buffers as they arrived (decompressed), with receive-side timings."""

    envelope: Envelope
    buffers: list[bytearray]
    first_chunk_ns: int
    received_ns: int
    decompressed_ns: int
    via: str = "grpc"  # the path it came by: "grpc", or "socket" (the data plane)


def prepare(
    encoded: EncodedTask,
    *,
    serialize_ns: tuple[int, int],
    sender: str,
    sender_stage: int,
    codec: str = "none",
    tags: Tags = Tags(),
    expects_reply: bool = False,
    is_reply: bool = False,
) -> Outgoing:
    """Compress ``encoded`` (timed from the end of ``serialize_ns``) and build its envelope."""
    compressor = get_codec(codec)
    metas = encoded.metas if len(encoded.metas) == len(encoded.buffers) else [None] * len(encoded.buffers)
    buffers: list[bytes | memoryview] = (
        list(encoded.buffers)
        if codec == "none"
        else [compressor.compress(b, meta) for b, meta in zip(encoded.buffers, metas)]
    )
    compressed = now_ns()
    envelope = Envelope(
        sender=sender,
        sender_stage=sender_stage,
        sent_ns=serialize_ns[0],
        task_header=encoded.header,
        codec=codec,
        raw_sizes=[memoryview(b).nbytes for b in encoded.buffers],
        wire_sizes=[memoryview(b).nbytes for b in buffers],
        tags=tags,
        expects_reply=expects_reply,
        is_reply=is_reply,
    )
    return Outgoing(envelope, buffers, serialize_ns, (serialize_ns[1], compressed), encoded.name)


_ENCODER = msgspec.msgpack.Encoder()
_ENVELOPES = MessageDecoder(Envelope)


def encode_envelope(envelope: Envelope) -> bytes:
    """``envelope`` in msgpack."""
    return _ENCODER.encode(envelope)


def decode_envelope(data: bytes | bytearray | memoryview) -> Envelope:
    """The envelope in ``data`` (msgspec.DecodeError if it is not one)."""
    envelope: Envelope = _ENVELOPES.decode(data)
    return envelope


def frame_prefix(envelope: Envelope) -> bytes:
    """What starts a task on either path: the envelope's length, then the envelope."""
    body = encode_envelope(envelope)
    return len(body).to_bytes(PREFIX_BYTES, "little") + body


def check_announced(envelope: Envelope) -> None:
    """Refuse an envelope whose buffer sizes are not what its task header's tensors need.

    Called before a buffer is allocated or decompressed: each buffer's announced raw
    size must be its tensor's (dtype x elements), and what travels at most that (no
    codec) or that plus a codec's worst case. A peer cannot make the receiver allocate
    more than the tensors it announced, nor expand a buffer beyond its tensor.
    """
    from .tensormeta import announced_nbytes

    needed = announced_nbytes(envelope.task_header)
    raw, wire = envelope.raw_sizes, envelope.wire_sizes
    if not len(raw) == len(wire) == len(needed):
        raise WireError(
            f"the envelope announces {len(raw)} buffers ({len(wire)} on the wire), "
            f"its task header {len(needed)} tensors"
        )
    for index, (size, sent, need) in enumerate(zip(raw, wire, needed)):
        limit = need if envelope.codec == "none" else need + need // 16 + CODEC_SLACK_BYTES
        if size != need or not 0 <= sent <= limit:
            raise WireError(
                f"buffer {index} is announced as {size} bytes ({sent} on the wire, codec "
                f"{envelope.codec}); its tensor needs {need}, at most {limit} on the wire"
            )


def arrived(
    envelope: Envelope, buffers: list[bytearray], first_ns: int, received_ns: int, via: str
) -> Incoming:
    """Decompress what arrived (timed): the :class:`Incoming` for ``envelope`` and its buffers."""
    if len(envelope.raw_sizes) != len(buffers):
        raise WireError(f"the envelope announces {len(envelope.raw_sizes)} buffers, {len(buffers)} came")
    if envelope.codec != "none":
        codec = get_codec(envelope.codec)
        # Each buffer may expand to the size announced for it, no further (a decompression bomb).
        sizes = envelope.raw_sizes
        buffers = [bytearray(codec.decompress(bytes(b), sizes[i])) for i, b in enumerate(buffers)]
    return Incoming(envelope, buffers, first_ns, received_ns, now_ns(), via)
