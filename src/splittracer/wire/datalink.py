"""The data plane: tasks between participants as length-prefixed frames on one socket per peer.

Why not gRPC: in Python every gRPC call costs about a millisecond each way
on loopback before a byte of the tensor moves, and a 1 MB message is
copied several times (into a protobuf-free bytes object, into HTTP/2
frames, out of them, into a buffer). Measured on a 2-core VM: 2.2-2.4 ms
for 1 MB over gRPC with TLS against ~0.3-0.5 ms on a raw socket. Here a
task is one frame on a connection kept open between two participants:

    u32 envelope length | envelope (msgpack) | buffer 0 | buffer 1 | ...

and the receiver ``recv_into``\\s each tensor buffer straight into the
``bytearray`` the tensor will be decoded from, so a tensor is copied once
by the kernel and never by Python. The answer comes back on the same
connection:

    u8 kind (0: no task, 1: a task follows) | u32 reply length | Reply (msgpack) | [a task frame]

gRPC stays for the control plane (Hello, Configure, Watch, Shutdown, Clock)
and as the data path to a peer that announced no data port.

Security. A connection starts with a mutual TLS handshake against the run's
authority, exactly as gRPC's links do: a process without this run's
certificate is refused. When both ends of a connection are loopback
addresses, both ends then end TLS (``unwrap``) and go on in plain TCP: the
bytes never leave the machine, an unprivileged local user can neither read
nor inject loopback TCP, and AES-GCM at ~3.5 GB/s (what this project's
machines do) would otherwise cost as much as the loopback copy itself,
halving tensor throughput. Links to other hosts stay encrypted.

Link emulation is the sender's: :class:`~.shaping.LinkShaper` paces each
chunk before it is written, as on the gRPC path (:mod:`.grpc_path`). A
frame starts with the same envelope encoding as that path
(:func:`~.envelope.frame_prefix`), and :class:`SocketLink` is the same
:class:`~.link.Link`.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import msgspec

from ..clock import now_ns
from ..errors import RunError, SplitTracerError
from .envelope import (
    PREFIX_BYTES,
    Envelope,
    Incoming,
    Outgoing,
    arrived,
    check_announced,
    decode_envelope,
    frame_prefix,
)
from .link import Answer, Handler, check_reply, unreachable
from .messages import Reply, decoder, encode
from .shaping import LinkShaper
from .tls import TlsBundle

CHUNK_BYTES = 256 << 10  # paced writes: the shaper's granularity on an emulated link
MAX_ENVELOPE_BYTES = 64 << 20
HANDSHAKE_TIMEOUT_S = 10.0
_IOV_BATCH = 512  # below every platform's IOV_MAX
_U32 = PREFIX_BYTES

# (envelope, received buffers, time the frame's first bytes arrived, time its last did)
RawFrame = tuple[Envelope, list[bytearray], int, int]


class ConnectionClosed(Exception):
    """The peer closed the connection between frames (a normal end)."""


# -- frames -------------------------------------------------------------------------


def send_frame(sock: socket.socket, outgoing: Outgoing, shaper: LinkShaper | None = None) -> None:
    """Write ``outgoing`` as one frame, paced by ``shaper`` when it emulates a link."""
    prefix = frame_prefix(outgoing.envelope)
    if shaper is None or not shaper.active:
        _send_all(sock, [prefix, *outgoing.buffers])
        return
    shaper.wait_latency()
    shaper.pace(len(prefix) - _U32)
    sock.sendall(prefix)
    for buffer in outgoing.buffers:
        view = memoryview(buffer).cast("B")
        for offset in range(0, view.nbytes, CHUNK_BYTES):
            chunk = view[offset : offset + CHUNK_BYTES]
            shaper.pace(chunk.nbytes)
            sock.sendall(chunk)


def read_frame(reader: Reader) -> RawFrame:
    """Read one frame: its envelope and buffers, not yet decoded (decoding may fail on its own)."""
    size = int.from_bytes(reader.read_exact(_U32, at_boundary=True), "little")
    first_ns = now_ns()
    if size > MAX_ENVELOPE_BYTES:
        raise RunError(f"a peer sent a frame header of {size} bytes; the limit is {MAX_ENVELOPE_BYTES}")
    envelope = decode_envelope(reader.read_exact(size))
    check_announced(envelope)  # no buffer beyond what its tensor needs is allocated
    buffers = []
    for length in envelope.wire_sizes:
        buffer = bytearray(length)
        reader.read_into(memoryview(buffer))
        buffers.append(buffer)
    return envelope, buffers, first_ns, now_ns()


def decode_frame(frame: RawFrame) -> Incoming:
    """Decompress a frame's buffers (timed like the gRPC path); its task is decoded above."""
    envelope, buffers, first_ns, received_ns = frame
    return arrived(envelope, buffers, first_ns, received_ns, "socket")


def send_answer(sock: socket.socket, answer: Answer, shaper: LinkShaper | None = None) -> None:
    """Write a receiver's answer: the Reply, then the answering task's frame if there is one."""
    reply, outgoing = answer
    body = encode(reply)
    sock.sendall(bytes([outgoing is not None]) + len(body).to_bytes(_U32, "little") + body)
    if outgoing is not None:
        send_frame(sock, outgoing, shaper)


def read_answer(reader: Reader) -> tuple[Reply, RawFrame | None]:
    """Read a receiver's answer (see :func:`send_answer`)."""
    head = reader.read_exact(1 + _U32)
    reply = decoder(Reply).decode(reader.read_exact(int.from_bytes(head[1:], "little")))
    return reply, (read_frame(reader) if head[0] else None)


def _send_all(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Write ``parts`` in order, uncopied: one ``sendmsg`` (gather) call on a plain socket."""
    views = [v for v in (memoryview(p).cast("B") for p in parts) if v.nbytes]
    if isinstance(sock, ssl.SSLSocket):  # no sendmsg on TLS: small parts joined, big ones as they are
        small = [v for v in views if v.nbytes < 64 << 10]
        if len(small) == len(views):
            sock.sendall(b"".join(views))
            return
        for view in views:
            sock.sendall(view)
        return
    while views:
        batch = views[:_IOV_BATCH]
        sent = sock.sendmsg(batch)
        while sent:  # drop what went out; a partial write leaves the rest of a view
            if sent >= views[0].nbytes:
                sent -= views.pop(0).nbytes
            else:
                views[0] = views[0][sent:]
                sent = 0


class Reader:
    """Reads one connection: small reads served from one buffered ``recv``, tensors read in place.

    A frame's length, envelope and first bytes usually arrive together; one
    ``recv`` into a scratch buffer takes them all (one system call instead
    of three). A tensor buffer gets what the scratch holds, then the rest
    straight from the socket: on a plain socket with one ``MSG_WAITALL``
    call, which waits in the kernel for the whole buffer (one system call
    and one GIL round trip per tensor instead of one per segment; TLS
    sockets take no flags).
    """

    SCRATCH_BYTES = 64 << 10

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._scratch = bytearray(self.SCRATCH_BYTES)
        self._view = memoryview(self._scratch)
        self._start = self._end = 0
        self._flags = 0 if isinstance(sock, ssl.SSLSocket) else socket.MSG_WAITALL

    def read_exact(self, n: int, *, at_boundary: bool = False) -> bytearray:
        """The next ``n`` bytes."""
        buffer = bytearray(n)
        self.read_into(memoryview(buffer), at_boundary=at_boundary)
        return buffer

    def read_into(self, view: memoryview, *, at_boundary: bool = False) -> None:
        """Fill ``view`` (ConnectionClosed if the peer closed before its first byte at a boundary)."""
        total = view.nbytes
        filled = self._take(view)
        if filled < total and total - filled < self.SCRATCH_BYTES:
            self._fill(at_boundary=at_boundary and filled == 0)
            filled += self._take(view[filled:])
        while filled < total:
            got = self.sock.recv_into(view[filled:], total - filled, self._flags)
            if got == 0:
                raise RunError("the peer closed the connection in the middle of a task")
            filled += got

    def _take(self, view: memoryview) -> int:
        n = min(view.nbytes, self._end - self._start)
        if n:
            view[:n] = self._view[self._start : self._start + n]
            self._start += n
        return n

    def _fill(self, *, at_boundary: bool) -> None:
        """One ``recv`` of whatever has arrived (the scratch is empty when this is called)."""
        got = self.sock.recv_into(self._view, self.SCRATCH_BYTES)
        if got == 0:
            if at_boundary:
                raise ConnectionClosed
            raise RunError("the peer closed the connection in the middle of a task")
        self._start, self._end = 0, got


# -- security -------------------------------------------------------------------------


def client_context(tls: TlsBundle | None) -> ssl.SSLContext | None:
    """The context :class:`SocketLink`\\s of one participant share (None: plaintext, no TLS)."""
    return _context(tls, server=False) if tls is not None else None


def _context(tls: TlsBundle, *, server: bool) -> ssl.SSLContext:
    """A TLS context for ``tls``, mutual: each side proves it holds a run certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    # ssl loads a certificate chain from files only: written privately, read, removed.
    directory = tls.write(Path(tempfile.mkdtemp(prefix="splittracer-tls-")))
    try:
        context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    context.load_verify_locations(cadata=tls.ca.decode())
    if server:
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _both_loopback(sock: socket.socket) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        here, there = sock.getsockname()[0], sock.getpeername()[0]
        return ipaddress.ip_address(here).is_loopback and ipaddress.ip_address(there).is_loopback
    except (OSError, ValueError):
        return False


def _settle(sock: socket.socket, wrapped: ssl.SSLSocket | None) -> socket.socket:
    """After the handshake: plain TCP on loopback (see the module docstring), TLS otherwise."""
    if wrapped is None:
        return sock
    if not _both_loopback(wrapped):
        return wrapped
    wrapped.unwrap()
    return socket.socket(fileno=wrapped.detach())


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


# -- receiving ------------------------------------------------------------------------


class DataListener:
    """Accepts peers' connections; a thread per connection reads frames and writes answers.

    ``handle`` gets a function that decodes the frame (so a bad task is an
    error answer, not a broken connection) and returns the answer to send;
    ``shaper`` paces answers, which travel on this participant's uplink.
    """

    def __init__(self, handle: Handler, tls: TlsBundle | None, shaper: Callable[[], LinkShaper]) -> None:
        self._handle = handle
        self._context = _context(tls, server=True) if tls is not None else None
        self._shaper = shaper
        self._server: socket.socket | None = None
        self._closed = threading.Event()

    def start(self, host: str) -> int:
        """Listen on ``host`` (any free port); returns the port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._server = socket.create_server((host, 0), family=family, backlog=64)
        threading.Thread(target=self._accept_loop, name="data-accept", daemon=True).start()
        return int(self._server.getsockname()[1])

    def close(self) -> None:
        """Stop accepting (connections in progress end with their peers)."""
        self._closed.set()
        if self._server is not None:
            self._server.close()

    def _accept_loop(self) -> None:
        assert self._server is not None
        while not self._closed.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), name="data-conn", daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            _tune(sock)
            conn = self._secure(sock)
        except (OSError, ssl.SSLError):
            sock.close()  # not one of this run's participants, or gone: refused
            return
        reader = Reader(conn)
        with conn:
            while True:
                try:
                    frame = read_frame(reader)
                except (ConnectionClosed, OSError, SplitTracerError, msgspec.DecodeError):
                    # Closed, out of step, or announcing more than its tensors need (WireError):
                    # nothing of the frame can be trusted; the sender sees its call fail.
                    return
                answer = self._handle(partial(decode_frame, frame))
                try:
                    send_answer(conn, answer, self._shaper())
                except OSError:
                    return

    def _secure(self, sock: socket.socket) -> socket.socket:
        if self._context is None:
            return sock
        sock.settimeout(HANDSHAKE_TIMEOUT_S)
        wrapped = self._context.wrap_socket(sock, server_side=True)
        settled = _settle(sock, wrapped)
        settled.settimeout(None)
        return settled


# -- sending --------------------------------------------------------------------------


class SocketLink:
    """A :class:`~.link.Link` to one peer's data port.

    Connections open on first use and are kept for the next call; there is
    one per call in flight, since an answer comes back on the connection its
    task went out on. ``context`` comes from :func:`client_context`.
    """

    def __init__(
        self,
        peer: str,
        address: tuple[str, int],
        context: ssl.SSLContext | None,
        shaper: LinkShaper | None = None,
    ) -> None:
        self.peer = peer
        self.address = address
        self._context = context
        self._shaper = shaper
        self._idle: list[Reader] = []
        self._lock = threading.Lock()

    def send(self, outgoing: Outgoing, timeout: float | None = None) -> Incoming | None:
        """Deliver ``outgoing``; the answering task, or None (see :class:`~.link.Link`)."""
        try:
            reply, frame = self.exchange(outgoing, timeout)
        except OSError as exc:
            raise unreachable(self.peer, str(exc) or type(exc).__name__) from exc
        check_reply(self.peer, outgoing, reply)
        return decode_frame(frame) if frame is not None else None

    def exchange(self, outgoing: Outgoing, timeout: float | None = None) -> tuple[Reply, RawFrame | None]:
        """Send ``outgoing`` and read the answer as it came (OSError if the connection fails)."""
        reader = self._take() or Reader(self._connect())
        try:
            if reader.sock.gettimeout() != timeout:  # setting it costs a system call: only on change
                reader.sock.settimeout(timeout)
            send_frame(reader.sock, outgoing, self._shaper)
            answer = read_answer(reader)
        except BaseException:
            reader.sock.close()  # its state is unknown: never reused
            raise
        with self._lock:
            self._idle.append(reader)
        return answer

    def idle_connections(self) -> list[socket.socket]:
        """The connections waiting for the next call."""
        with self._lock:
            return [reader.sock for reader in self._idle]

    def close(self) -> None:
        """Close every idle connection."""
        with self._lock:
            for reader in self._idle:
                reader.sock.close()
            self._idle.clear()

    def _take(self) -> Reader | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=HANDSHAKE_TIMEOUT_S)
        try:
            _tune(sock)
            wrapped = None
            if self._context is not None:
                wrapped = self._context.wrap_socket(sock, server_hostname=self.peer)
            settled = _settle(sock, wrapped)
        except BaseException:
            sock.close()
            raise
        settled.settimeout(None)
        return settled


def split_host_port(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` as a (host, port) pair."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    """The inverse of :func:`split_host_port`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
