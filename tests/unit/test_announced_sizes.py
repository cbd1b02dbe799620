"""Buffer limits follow the tensor shapes a task header announces, not a fixed maximum.

An envelope whose buffer sizes are not what its task's tensors need (dtype x elements), or
whose compressed buffer is larger than any codec makes it, is refused with WireError before
a byte of the buffer is allocated or read, on the data plane and on gRPC alike.
"""

from __future__ import annotations

import socket
import tracemalloc
from collections.abc import Callable, Iterator

import msgspec
import pytest
import torch

from splittracer.errors import WireError
from splittracer.participant.delivery import prepare_task
from splittracer.tasks import Task, encode_task
from splittracer.wire.datalink import DataListener, Reader, read_frame
from splittracer.wire.envelope import CODEC_SLACK_BYTES, Envelope, check_announced, frame_prefix
from splittracer.wire.grpc_path import receive, unpack
from splittracer.wire.shaping import LinkShaper
from splittracer.wire.tensors import announced_nbytes

GIB = 1 << 30


class Two(Task, name="tests.AnnouncedTwo"):
    first: torch.Tensor
    second: torch.Tensor
    label: str = ""


def _envelope(codec: str = "none", **sizes: list[int]) -> Envelope:
    task = Two(first=torch.zeros(2, 3), second=torch.zeros(5, dtype=torch.int64), label="a")
    envelope = prepare_task(task, sender="phone", sender_stage=0, codec=codec).envelope
    return msgspec.structs.replace(envelope, **sizes)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    b.settimeout(5.0)  # a reader that allocated and waits for the announced bytes fails the test
    yield a, b
    a.close()
    b.close()


def _peak(call: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        with pytest.raises(WireError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_header_announces_what_each_buffer_needs() -> None:
    task = Two(first=torch.zeros(2, 3), second=torch.zeros(5, dtype=torch.int64))
    encoded = encode_task(task)
    assert announced_nbytes(encoded.header) == [24, 40] == [memoryview(b).nbytes for b in encoded.buffers]
    check_announced(_envelope())
    check_announced(_envelope("lz4"))


@pytest.mark.parametrize(
    ("sizes", "why"),
    [
        ({"raw_sizes": [24, GIB], "wire_sizes": [24, GIB]}, "its tensor needs 40"),
        ({"wire_sizes": [24, 41]}, "at most 40 on the wire"),
        ({"raw_sizes": [24], "wire_sizes": [24]}, "its task header 2 tensors"),
        ({"raw_sizes": [24, 40, 8], "wire_sizes": [24, 40, 8]}, "its task header 2 tensors"),
        ({"task_header": b"\x93\x01"}, "malformed task header"),
    ],
)
def test_sizes_its_tensors_do_not_need_are_refused(sizes: dict[str, object], why: str) -> None:
    with pytest.raises(WireError, match=why):
        check_announced(_envelope(**sizes))  # type: ignore[arg-type]


def test_a_compressed_buffer_may_exceed_its_tensor_only_by_a_codecs_worst_case() -> None:
    limit = 40 + 40 // 16 + CODEC_SLACK_BYTES
    check_announced(_envelope("zstd", wire_sizes=[10, limit]))
    with pytest.raises(WireError, match=f"at most {limit} on the wire"):
        check_announced(_envelope("zstd", wire_sizes=[10, limit + 1]))


def test_the_data_plane_refuses_a_gib_buffer_before_allocating_it(pair) -> None:
    a, b = pair
    a.sendall(frame_prefix(_envelope(wire_sizes=[24, GIB], raw_sizes=[24, GIB])))
    assert _peak(lambda: read_frame(Reader(b))) < 1 << 20


def test_the_data_plane_refuses_a_compressed_buffer_beyond_its_tensor(pair) -> None:
    a, b = pair
    a.sendall(frame_prefix(_envelope("lz4", wire_sizes=[24, GIB])))
    assert _peak(lambda: read_frame(Reader(b))) < 1 << 20


def test_grpc_refuses_before_allocating_too() -> None:
    envelope = _envelope(wire_sizes=[24, GIB], raw_sizes=[24, GIB])
    prefix = frame_prefix(envelope)
    assert _peak(lambda: receive(iter([prefix[4:]]))) < 1 << 20
    assert _peak(lambda: unpack(prefix)) < 1 << 20


def test_the_listener_closes_a_connection_that_announces_too_much() -> None:
    seen: list[object] = []
    listener = DataListener(lambda read: seen.append(read) or (None, None), None, LinkShaper)  # type: ignore[arg-type]
    port = listener.start("127.0.0.1")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5.0) as sock:
            sock.sendall(frame_prefix(_envelope(wire_sizes=[24, GIB], raw_sizes=[24, GIB])))
            assert sock.recv(1) == b""  # closed: nothing of the frame was read or handled
    finally:
        listener.close()
    assert seen == []
