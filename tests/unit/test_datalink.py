"""The data plane's frames, answers, pacing and security, over real sockets in one process."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest
import torch

from splittracer.errors import PeerError, RunError
from splittracer.participant.delivery import open_incoming, prepare_task
from splittracer.tasks import Task
from splittracer.wire import datalink
from splittracer.wire.datalink import (
    ConnectionClosed,
    DataListener,
    Reader,
    SocketLink,
    client_context,
    decode_frame,
    read_answer,
    read_frame,
    send_answer,
    send_frame,
)
from splittracer.wire.envelope import Incoming, Tags, encode_envelope
from splittracer.wire.messages import Reply
from splittracer.wire.shaping import LinkShaper
from splittracer.wire.tls import issue_run_certificates


class Pair(Task):
    name: str
    first: torch.Tensor
    second: torch.Tensor


def _task(n: int = 1000) -> Pair:
    return Pair(
        name="x", first=torch.arange(n, dtype=torch.float32), second=torch.ones(3, 4, dtype=torch.int64)
    )


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_a_frame_arrives_whole_with_its_tensors_in_writable_buffers(pair):
    a, b = pair
    outgoing = prepare_task(_task(50_000), sender="phone", sender_stage=0, tags=Tags(inference=7, split=3))
    threading.Thread(target=send_frame, args=(a, outgoing)).start()
    incoming = decode_frame(read_frame(Reader(b)))
    received = open_incoming(incoming)
    task = received.task
    assert isinstance(task, Pair) and task.name == "x"
    assert torch.equal(task.first, torch.arange(50_000, dtype=torch.float32))
    assert torch.equal(task.second, torch.ones(3, 4, dtype=torch.int64))
    task.first[0] = -1  # handlers may change what they received
    assert received.envelope.tags == Tags(inference=7, split=3) and incoming.via == "socket"
    assert incoming.first_chunk_ns <= incoming.received_ns <= incoming.decompressed_ns <= received.decoded_ns


def test_frames_sent_back_to_back_are_read_apart(pair):
    """One recv may take the end of one frame and the start of the next: nothing is lost or mixed."""
    a, b = pair
    sizes = [3, 40_000, 5, 1, 20_000]
    frames = [
        prepare_task(_task(n), sender="phone", sender_stage=0, tags=Tags(inference=i))
        for i, n in enumerate(sizes)
    ]
    writer = threading.Thread(target=lambda: [send_frame(a, f) for f in frames])
    writer.start()
    reader = Reader(b)
    for i, n in enumerate(sizes):
        received = open_incoming(decode_frame(read_frame(reader)))
        task = received.task
        assert isinstance(task, Pair) and received.envelope.tags.inference == i
        assert torch.equal(task.first, torch.arange(n, dtype=torch.float32))
    writer.join()


def test_compressed_frames_decompress(pair):
    a, b = pair
    outgoing = prepare_task(_task(), sender="phone", sender_stage=0, codec="zstd")
    assert outgoing.bytes_wire < outgoing.bytes_raw
    send_frame(a, outgoing)
    task = open_incoming(decode_frame(read_frame(Reader(b)))).task
    assert isinstance(task, Pair) and torch.equal(task.first, torch.arange(1000, dtype=torch.float32))


def test_an_answer_carries_a_reply_task_or_none(pair):
    a, b = pair
    send_answer(a, (Reply(ok=False, error="boom"), None))
    reply, frame = read_answer(Reader(b))
    assert not reply.ok and reply.error == "boom" and frame is None
    send_answer(a, (Reply(), prepare_task(_task(10), sender="cloud", sender_stage=1, is_reply=True)))
    reply, frame = read_answer(Reader(b))
    assert reply.ok and frame is not None
    assert decode_frame(frame).envelope.is_reply


def test_a_closed_connection_between_frames_is_a_normal_end(pair):
    a, b = pair
    a.close()
    with pytest.raises(ConnectionClosed):
        read_frame(Reader(b))


def test_a_frame_cut_short_is_an_error(pair):
    a, b = pair
    outgoing = prepare_task(_task(10_000), sender="phone", sender_stage=0)
    header = encode_envelope(outgoing.envelope)
    a.sendall(len(header).to_bytes(4, "little") + header + b"\0" * 100)
    a.close()
    with pytest.raises(RunError, match="middle of a task"):
        read_frame(Reader(b))


def test_an_absurd_header_length_is_refused(pair):
    a, b = pair
    a.sendall((datalink.MAX_ENVELOPE_BYTES + 1).to_bytes(4, "little"))
    with pytest.raises(RunError, match="frame header"):
        read_frame(Reader(b))


def test_the_shaper_paces_a_frame_on_the_data_plane(pair):
    a, b = pair
    outgoing = prepare_task(_task(25_000), sender="phone", sender_stage=0)  # 100 KB
    expected_s = 8 * outgoing.bytes_wire / 8e6 + 0.02
    reader = threading.Thread(target=read_frame, args=(Reader(b),))
    reader.start()
    start = time.perf_counter()
    send_frame(a, outgoing, LinkShaper(8e6, latency_s=0.02))
    elapsed = time.perf_counter() - start
    reader.join()
    assert expected_s * 0.98 <= elapsed <= expected_s + 0.05


# -- listener and links, with the run's certificates ---------------------------------------


def _echo(read) -> tuple[Reply, object]:
    """A receiver that answers every task with a reply carrying the first tensor doubled."""
    incoming: Incoming = read()
    task = open_incoming(incoming).task
    assert isinstance(task, Pair)
    answer = Pair(name="back", first=task.first * 2, second=task.second)
    return Reply(), prepare_task(answer, sender="cloud", sender_stage=1, is_reply=True)


@pytest.fixture
def cloud():
    bundles = issue_run_certificates("run-a", ["phone", "cloud"])
    listener = DataListener(_echo, bundles["cloud"], LinkShaper)
    port = listener.start("127.0.0.1")
    yield bundles, port
    listener.close()


def test_a_holder_of_the_runs_certificate_exchanges_tasks(cloud):
    bundles, port = cloud
    link = SocketLink("cloud", ("127.0.0.1", port), client_context(bundles["phone"]))
    for round_ in range(3):  # the connection is kept and reused
        reply, frame = link.exchange(prepare_task(_task(), sender="phone", sender_stage=0))
        assert reply.ok and frame is not None
        task = open_incoming(decode_frame(frame)).task
        assert isinstance(task, Pair) and task.name == "back"
        assert torch.equal(task.first, 2 * torch.arange(1000, dtype=torch.float32))
        assert len(link.idle_connections()) == 1, round_
    # On loopback the authenticated connection continues in plain TCP (see the datalink docs).
    (sock,) = link.idle_connections()
    assert not isinstance(sock, ssl.SSLSocket)
    link.close()
    assert link.idle_connections() == []


def test_a_peer_with_another_runs_certificate_is_refused(cloud):
    _, port = cloud
    stranger = issue_run_certificates("run-b", ["phone", "cloud"])["phone"]
    link = SocketLink("cloud", ("127.0.0.1", port), client_context(stranger))
    outgoing = prepare_task(_task(), sender="phone", sender_stage=0)
    with pytest.raises(ssl.SSLError):
        link.exchange(outgoing)
    with pytest.raises(PeerError, match="cannot reach 'cloud'") as info:
        link.send(outgoing)  # through the Link interface: the sender's error, naming the peer
    assert info.value.peer == "cloud"


def test_a_client_certificate_of_another_run_gets_no_answer(cloud):
    """Even a client that skips checking the server cannot get a task through with a foreign certificate."""
    _, port = cloud
    stranger = issue_run_certificates("run-b", ["phone"])["phone"]
    context = datalink._context(stranger, server=False)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    with (
        pytest.raises((ssl.SSLError, OSError, RunError, ConnectionClosed)),
        context.wrap_socket(raw, server_hostname="cloud") as sock,
    ):
        send_frame(sock, prepare_task(_task(), sender="phone", sender_stage=0))
        read_answer(Reader(sock))


def test_plaintext_gets_no_answer(cloud):
    _, port = cloud
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        send_frame(sock, prepare_task(_task(), sender="phone", sender_stage=0))
        with pytest.raises((RunError, OSError)):
            read_answer(Reader(sock))


def test_a_connection_that_is_not_loopback_stays_encrypted():
    """A socket pair has no IP addresses: the link is treated as leaving the machine."""
    bundles = issue_run_certificates("run-a", ["phone", "cloud"])
    server_ctx = datalink._context(bundles["cloud"], server=True)
    client_ctx = datalink._context(bundles["phone"], server=False)
    a, b = socket.socketpair()
    result: dict[str, socket.socket] = {}

    def serve() -> None:
        wrapped = server_ctx.wrap_socket(b, server_side=True)
        result["server"] = datalink._settle(b, wrapped)

    thread = threading.Thread(target=serve)
    thread.start()
    client = datalink._settle(a, client_ctx.wrap_socket(a, server_hostname="cloud"))
    thread.join()
    assert isinstance(client, ssl.SSLSocket) and isinstance(result["server"], ssl.SSLSocket)
    client.close()
    result["server"].close()


def test_addresses_split_and_join():
    assert datalink.split_host_port("127.0.0.1:5000") == ("127.0.0.1", 5000)
    assert datalink.split_host_port("[::1]:5000") == ("::1", 5000)
    assert datalink.join_host_port("::1", 5000) == "[::1]:5000"


def test_an_error_that_follows_from_a_peers_names_that_peer():
    from splittracer.errors import PeerError, UserCodeError
    from splittracer.participant.runtime import _failed_peer

    assert _failed_peer(PeerError("'cloud' failed on RunLayers: boom", peer="cloud")) == "cloud"
    try:
        try:
            raise PeerError("cannot reach 'edge'", peer="edge")
        except PeerError as exc:
            raise UserCodeError("my handler gave up") from exc
    except UserCodeError as wrapped:
        assert _failed_peer(wrapped) == "edge"  # through a handler's own exception
    assert _failed_peer(ValueError("the handler's own mistake")) == ""
