"""Control-plane messages between the controller and a participant.

Every message is a msgspec Struct encoded as msgpack: typed on both ends,
no pickle. gRPC carries them as opaque bytes through generic handlers, so
there is no generated code to keep in step with a ``.proto`` file.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from ..metrics.spans import Metric, Span

SERVICE = "splittracer.Participant"


def method(name: str) -> str:
    """Full gRPC method path of ``name`` on the participant service."""
    return f"/{SERVICE}/{name}"


class ParticipantInfo(msgspec.Struct, frozen=True):
    """What a participant says about itself and its host in reply to Hello."""

    name: str
    pid: int
    hostname: str
    platform: str
    python: str
    torch: str
    splittracer: str
    cpu_model: str
    cpu_count: int
    data_port: int = 0  # where peers send tasks (see wire.datalink); 0: over gRPC
    cpu_enforced: float = 0.0  # the CPU fraction its cgroups allow (metrics.cgroups); 0: no limit
    memory_enforced: int = 0  # the memory its cgroups allow, in bytes; 0: no limit
    cpu_enforced_by: str = ""  # what enforces cpu_enforced: "cgroup" or "signals" (devices/throttle.py)


class PeerInfo(msgspec.Struct, frozen=True):
    """Where a peer listens and which stage of the chain it is."""

    address: str
    stage: int
    data_port: int = 0  # its data plane's port on the same host; 0: send tasks over gRPC


class ModelConfig(msgspec.Struct, frozen=True):
    """The experiment's model, as the manifest names it."""

    source: str
    input_shape: list[int] | None = None
    granularity: str = "leaf"
    override: str | None = None
    weights: str | None = None
    dataset: str | None = None
    labels: dict[str, int] | None = None  # class folder name -> output index


class RunOptions(msgspec.Struct, frozen=True):
    """Options every participant sees (manifest ``options``)."""

    repeats: int = 10
    warmup: int = 2
    compression: str = "none"
    seed: int = 0
    sample_interval_s: float = 0.1


class RunConfig(msgspec.Struct, frozen=True):
    """Everything a participant needs to play its part in one run."""

    run_id: str
    name: str
    stage: int
    role: str
    peers: dict[str, PeerInfo]
    options: RunOptions
    params: dict[str, Any] = {}
    model: ModelConfig | None = None
    threads: int | None = None
    torch_device: str = "cpu"
    uplink_bps: float = float("inf")
    latency_s: float = 0.0
    workspace: str | None = None
    keep_warm: bool = False  # keep its CPU busy while it waits (participant/warm.py)
    groups: dict[str, list[str]] = {}  # a replicated participant's name -> its replicas' names
    replica: int = 0  # this participant's index in its group (0 when it is not replicated)
    client: int = -1  # its index among several clients (participants with a playbook); -1: one client
    workers: int = 1  # handlers run in parallel, where the role allows it
    batch_max: int = 0  # dynamic batching: requests computed at once (0: no batching)
    batch_wait_s: float = 0.0  # how long a batch waits for more requests


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a participant tells the controller on its Watch stream.

    ``kind`` is one of: ready, heartbeat, spans, progress, error, finished,
    stopped, log. Only the fields that kind uses are set.
    """

    kind: str
    participant: str
    time_ns: int = 0
    spans: list[Span] = []
    metrics: list[Metric] = []
    done: int = 0
    total: int = 0
    label: str = ""
    message: str = ""
    traceback: str = ""  # error: the user's own frames (or their line SplitTracer refused), or ''
    debug_traceback: str = ""  # error: every frame, SplitTracer's included (logged for --debug)
    caused_by: str = ""  # error: the peer whose failure this one follows from (its error says why)
    everyone: bool = False  # finished: end the run for everyone, not only this participant's part


class Reply(msgspec.Struct, frozen=True):
    """Answer to a call: ok (with the reply task, packed, for ``ctx.call``), or an error."""

    ok: bool = True
    error: str = ""
    traceback: str = ""
    error_kind: str = ""
    payload: bytes = b""
    layers: list[str] = []  # Configure: the model's layer names, when it has one
    split_bytes: list[int] = []  # Configure: bytes crossing each split point
    split_tensors: list[int] = []  # Configure: tensors crossing each split point
    energy: dict[str, Any] = {}  # Configure: which energy sensors this participant can read
    accelerator: str = ""  # Configure: the GPU the participant computes on ('' for the CPU)


_ENCODER = msgspec.msgpack.Encoder()


def encode(message: msgspec.Struct) -> bytes:
    """Serialise a control message."""
    return _ENCODER.encode(message)


class MessageDecoder:
    """Decodes one message type; msgspec.DecodeError for anything that is not one.

    msgspec raises UnicodeDecodeError for a string that is not UTF-8; it
    becomes a DecodeError here, so a caller catches one type for every bad input.
    """

    def __init__(self, kind: type[Any]) -> None:
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(kind)

    def decode(self, data: bytes | bytearray | memoryview) -> Any:
        """The message in ``data``."""
        try:
            return self._decoder.decode(data)
        except UnicodeDecodeError as exc:
            raise msgspec.DecodeError(f"a string is not UTF-8: {exc.reason}") from exc


@functools.cache
def decoder(kind: type[Any]) -> MessageDecoder:
    """A reusable decoder for one message type (made once: building one costs microseconds per call)."""
    return MessageDecoder(kind)
