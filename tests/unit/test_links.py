"""One Link interface, two paths: the data plane's socket and gRPC carry the same tasks the same way."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import pytest
import torch

from splittracer.errors import PeerError
from splittracer.participant.delivery import open_incoming, prepare_task
from splittracer.tasks import Task
from splittracer.wire.datalink import DataListener, SocketLink
from splittracer.wire.envelope import Incoming, Outgoing, decode_envelope, frame_prefix
from splittracer.wire.grpc_path import GRPC_OPTIONS, SINGLE_MESSAGE_BYTES, GrpcLink, delivery_handlers, pack
from splittracer.wire.link import Answer, Link
from splittracer.wire.messages import SERVICE, Reply
from splittracer.wire.shaping import LinkShaper


class Blob(Task):
    label: str
    data: torch.Tensor


def _doubling(read: Callable[[], Incoming]) -> Answer:
    """Answers a Blob with its tensor doubled; a Blob labelled 'fail' with an error; 'quiet' with nothing."""
    task = open_incoming(read()).task
    assert isinstance(task, Blob)
    if task.label == "fail":
        return Reply(ok=False, error="ValueError: refused"), None
    if task.label == "quiet":
        return Reply(), None
    return Reply(), prepare_task(Blob(label="back", data=task.data * 2), sender="cloud", sender_stage=1)


@pytest.fixture
def socket_link() -> Iterator[Link]:
    listener = DataListener(_doubling, None, LinkShaper)
    port = listener.start("127.0.0.1")
    link = SocketLink("cloud", ("127.0.0.1", port), None)
    yield link
    link.close()
    listener.close()


@pytest.fixture
def grpc_link() -> Iterator[Link]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=GRPC_OPTIONS)
    handlers = delivery_handlers(_doubling, LinkShaper)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    link = GrpcLink("cloud", f"127.0.0.1:{port}", None)
    yield link
    link.close()
    server.stop(grace=None)


@pytest.fixture(params=["socket_link", "grpc_link"])
def link(request: pytest.FixtureRequest) -> Link:
    return request.getfixturevalue(request.param)


def _send(label: str, n: int) -> Outgoing:
    return prepare_task(
        Blob(label=label, data=torch.arange(n, dtype=torch.float32)), sender="phone", sender_stage=0
    )


@pytest.mark.parametrize("n", [10, SINGLE_MESSAGE_BYTES // 4 + 1000])  # one message, and a gRPC stream
def test_a_link_returns_the_answering_task(link: Link, n: int):
    incoming = link.send(_send("x", n), timeout=30)
    assert incoming is not None
    task = open_incoming(incoming).task
    assert isinstance(task, Blob) and task.label == "back"
    assert torch.equal(task.data, 2 * torch.arange(n, dtype=torch.float32))


def test_a_link_returns_none_when_the_peer_answers_nothing(link: Link):
    assert link.send(_send("quiet", 3)) is None


def test_a_failed_handler_is_a_peer_error_naming_the_task(link: Link):
    with pytest.raises(PeerError) as info:
        link.send(_send("fail", 3))
    assert info.value.peer == "cloud"
    assert "'cloud' failed on Blob: ValueError: refused" in str(info.value)


def test_an_unreachable_peer_is_a_peer_error():
    for link in (SocketLink("cloud", ("127.0.0.1", 1), None), GrpcLink("cloud", "127.0.0.1:1", None)):
        with pytest.raises(PeerError, match="cannot reach 'cloud'"):
            link.send(_send("x", 3), timeout=5)
        link.close()


def test_both_paths_start_a_task_with_the_same_envelope_encoding():
    outgoing = _send("x", 10)
    prefix = frame_prefix(outgoing.envelope)
    assert pack(outgoing).startswith(prefix)
    assert decode_envelope(prefix[4:]) == outgoing.envelope
