"""Property-based fuzzing of every decoder that reads bytes from outside the process.

Each decoder gets random and mutated inputs; the only outcomes allowed are a
result or the error types it documents. ``SPLITTRACER_FUZZ_EXAMPLES`` sets
the examples per decoder (see RELIABILITY.md): a few hundred in CI, as many
as you like locally.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from pathlib import Path

import msgspec
import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from splittracer.errors import SplitTracerError, WireError
from splittracer.manifest import load_manifest
from splittracer.tasks import Task, decode_task, encode_task
from splittracer.wire.datalink import ConnectionClosed, Reader, decode_frame, read_frame
from splittracer.wire.envelope import Envelope, decode_envelope, frame_prefix
from splittracer.wire.messages import Event, ParticipantInfo, PeerInfo, Reply, RunConfig, decoder

EXAMPLES = int(os.environ.get("SPLITTRACER_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class FuzzTask(Task, name="tests.FuzzTask"):
    x: torch.Tensor
    more: list[torch.Tensor] = dataclasses.field(default_factory=list)
    n: int = 0
    label: str = ""
    sizes: dict[str, float] = dataclasses.field(default_factory=dict)


def _valid_task() -> tuple[bytes, list[bytes]]:
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    task = FuzzTask(x=x, more=[torch.ones(2)], n=3, label="a")
    encoded = encode_task(task)
    return encoded.header, [bytes(memoryview(b)) for b in encoded.buffers]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """``original`` with bytes flipped, cut, inserted or appended."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["flip", "cut", "insert", "append"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del data[at:]
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


HEADER, BUFFERS = _valid_task()
headers = st.one_of(st.binary(max_size=256), mutated(HEADER))
buffer_lists = st.one_of(
    st.just(BUFFERS),
    st.lists(st.binary(max_size=64), max_size=3),
    st.tuples(mutated(BUFFERS[0]), st.just(BUFFERS[1])).map(list),
)


@FUZZ
@given(header=headers, buffers=buffer_lists)
@example(header=HEADER.replace(b"tests", b"\x80ests"), buffers=BUFFERS)  # a type name not UTF-8
def test_decode_task_raises_only_wire_error(header: bytes, buffers: list[bytes]) -> None:
    with contextlib.suppress(WireError):
        decode_task(header, buffers)


@FUZZ
@given(
    st.lists(st.binary(max_size=8), max_size=2),
    st.lists(st.integers(0, 2**64 - 1), max_size=4),
    st.text(max_size=8),
)
@example(buffers=[b""], shape=[0, 344219417, 26_795_037_065], dtype="")  # strides overflow int64
def test_decode_task_with_random_tensor_metas_raises_only_wire_error(
    buffers: list[bytes], shape: list[int], dtype: str
) -> None:
    meta = msgspec.msgpack.encode([dtype if dtype else "float32", shape])
    fields = msgspec.msgpack.encode({"x": msgspec.msgpack.Ext(1, (0).to_bytes(4, "little"))})
    metas = [msgspec.msgpack.decode(meta)]
    header = msgspec.msgpack.encode([1, "tests.FuzzTask", 0, metas, msgspec.Raw(fields)])
    with contextlib.suppress(WireError):
        decode_task(header, buffers)


ENVELOPE = Envelope(
    sender="a", sender_stage=0, sent_ns=1, task_header=HEADER, raw_sizes=[24, 8], wire_sizes=[24, 8]
)
FRAME = frame_prefix(ENVELOPE) + b"".join(BUFFERS)


@FUZZ
@given(st.one_of(st.binary(max_size=256), mutated(FRAME[4:])))
def test_decode_envelope_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):
        decode_envelope(data)


def _frame_from(data: bytes) -> None:
    """Read and decode one data-plane frame from ``data`` as a peer's socket would deliver it."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(data)
        theirs.shutdown(socket.SHUT_WR)
        decode_frame(read_frame(Reader(ours)))


@FUZZ
@given(st.one_of(st.binary(max_size=512), mutated(FRAME)))
def test_data_plane_frames_raise_only_documented_errors(data: bytes) -> None:
    # What the listener catches (datalink.DataListener._serve), then what decoding documents.
    with contextlib.suppress(ConnectionClosed, msgspec.DecodeError, SplitTracerError):
        _frame_from(data)


CONTROL = [Event, Reply, RunConfig, ParticipantInfo, PeerInfo]
SAMPLES = [
    msgspec.msgpack.encode(Event(kind="spans", participant="p", time_ns=1)),
    msgspec.msgpack.encode(Reply(ok=False, error="boom")),
    msgspec.msgpack.encode(PeerInfo(address="127.0.0.1:1", stage=1, data_port=2)),
]


@FUZZ
@example(kind=PeerInfo, data=SAMPLES[2].replace(b"127", b"\x80127"))  # a str not UTF-8
@given(st.sampled_from(CONTROL), st.one_of(st.binary(max_size=256), *(mutated(s) for s in SAMPLES)))
def test_control_messages_raise_only_decode_error(kind: type, data: bytes) -> None:
    with contextlib.suppress(msgspec.DecodeError):
        decoder(kind).decode(data)


MANIFEST = """\
name: fuzz
model: {source: torchvision:alexnet}
participants:
  phone: {role: splittracer.builtin:SplitHead}
  cloud: {role: splittracer.builtin:SplitTail}
playbook:
  phone:
    - task: Sweep
      params: {splits: [0], next: [cloud]}
options: {repeats: 2}
"""


def _lenient(data: bytes) -> str:
    return data.decode("utf-8", "replace")


YAMLISH = st.text(alphabet=st.sampled_from(list("abn: -{}[],'\"\n\t&*!|>#%@0123456789.")), max_size=300)


@pytest.fixture(scope="module")
def manifest_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("manifests")


@FUZZ
@example(text="\x1f")  # a character YAML refuses before parsing
@example(text="0[:")  # a key that looks like pydantic's union tag
@given(text=st.one_of(YAMLISH, st.text(max_size=200), mutated(MANIFEST.encode()).map(_lenient)))
def test_load_manifest_raises_only_splittracer_errors(manifest_dir: Path, text: str) -> None:
    path = manifest_dir / "fuzz.yaml"
    path.write_text(text, encoding="utf-8")
    with contextlib.suppress(SplitTracerError):
        load_manifest(path, check_code=False)
