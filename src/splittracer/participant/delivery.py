"""Tasks into envelopes and out of them, timed: where typed tasks meet the wire.

The wire (:mod:`splittracer.wire`) carries encoded tasks and knows no task
types; here a :class:`~splittracer.tasks.Task` is serialised before it is
sent (:func:`prepare_task`) and rebuilt once it has arrived
(:func:`open_incoming`), and the receive-side spans are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..clock import now_ns
from ..tasks import Task, decode_task, encode_task
from ..wire.envelope import Envelope, Incoming, Outgoing, Tags, prepare
from .recorder import TaggedRecorder


def prepare_task(
    task: Task,
    *,
    sender: str,
    sender_stage: int,
    codec: str = "none",
    tags: Tags = Tags(),
    expects_reply: bool = False,
    is_reply: bool = False,
) -> Outgoing:
    """Serialise and compress ``task`` (both timed) and build its envelope."""
    started = now_ns()
    encoded = encode_task(task)
    return prepare(
        encoded,
        serialize_ns=(started, now_ns()),
        sender=sender,
        sender_stage=sender_stage,
        codec=codec,
        tags=tags,
        expects_reply=expects_reply,
        is_reply=is_reply,
    )


@dataclass(frozen=True)
class Received:
    """A task rebuilt from what arrived, with the receive-side timings."""

    incoming: Incoming
    task: Task
    decoded_ns: int

    @property
    def envelope(self) -> Envelope:
        """The envelope the task came in."""
        return self.incoming.envelope


def open_incoming(incoming: Incoming) -> Received:
    """Decode the task in ``incoming`` (timed); WireError for anything malformed."""
    task = decode_task(incoming.envelope.task_header, incoming.buffers)
    return Received(incoming, task, now_ns())


def record_received(recorder: TaggedRecorder, received: Received, receiver: str) -> None:
    """The spans of a task's arrival: receive, decompress, deserialize, and the whole transfer."""
    incoming, env = received.incoming, received.envelope
    raw, wire = sum(env.raw_sizes), sum(env.wire_sizes) + len(env.task_header)
    add = recorder.add_span
    add("receive", incoming.first_chunk_ns, incoming.received_ns, env.tags, bytes_wire=wire)
    if env.codec != "none":
        codec: dict[str, str | int | float | bool] = {"codec": env.codec}
        add(
            "decompress", incoming.received_ns, incoming.decompressed_ns, env.tags, bytes_raw=raw, attrs=codec
        )
    add("deserialize", incoming.decompressed_ns, received.decoded_ns, env.tags, bytes_raw=raw)
    direction = "reply" if env.is_reply else "forward"
    attrs: dict[str, str | int | float | bool] = {
        "from": env.sender,
        "to": receiver,
        "direction": direction,
        "via": incoming.via,
        "codec": env.codec,
    }
    add(
        "transfer",
        env.sent_ns,
        received.decoded_ns,
        env.tags,
        stage=env.sender_stage,
        bytes_raw=raw,
        bytes_wire=wire,
        attrs=attrs,
    )
