"""Tensor throughput between two participants vs a raw TCP socket on loopback.

For each size (64 KB .. 64 MB) a float32 tensor is sent ``--repeats`` times
from one participant to another with ``ctx.send`` (which returns once the
tensor is decoded in the receiver's process), and the same bytes are sent
over a plain TCP socket between two processes (length, payload, 1-byte
ack; TCP_NODELAY, the payload written without a copy and read with
MSG_WAITALL, as the participants do). Both are measured in the same run,
in alternating rounds; the table gives median MB/s over all rounds and
their ratio (target: >= 50% from 1 MB up). ``--plane`` adds a third
column: the same tasks sent over the data plane alone (a ``SocketLink`` to
a ``DataListener`` in another process that decodes each task and answers),
without the participant runtime (spans, inbox, worker thread), to show
where a small message's fixed cost lies. ``+µs/msg`` is each path's median
time per message less raw TCP's: the fixed cost a small tensor pays.

    python bench/throughput.py [--repeats 5] [--rounds 3] [--plane]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import threading
import time
from collections.abc import Callable

import torch
from _lab import machine, median, run, workspace

from splittracer.participant.delivery import open_incoming, prepare_task
from splittracer.tasks import Task
from splittracer.wire.datalink import DataListener, SocketLink
from splittracer.wire.envelope import Incoming, Tags
from splittracer.wire.messages import Reply
from splittracer.wire.shaping import LinkShaper

SIZES = [64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20]

ROLES = """
import torch
from splittracer import Context, Role, Task, handles


class Blob(Task):
    data: torch.Tensor


class Pump(Task):
    sizes: list[int]
    repeats: int


class Sender(Role):
    @handles(Pump)
    def pump(self, task: Pump, ctx: Context) -> None:
        i = 0
        for size in task.sizes:
            tensor = torch.ones(size // 4)
            for _ in range(task.repeats):
                with ctx.inference(i, split=size):
                    ctx.send("receiver", Blob(data=tensor))
                i += 1
        ctx.finish()


class Receiver(Role):
    @handles(Blob)
    def take(self, task: Blob, ctx: Context) -> None:
        pass
"""

MANIFEST = """
name: throughput
participants:
  sender: {role: "roles:Sender"}
  receiver: {role: "roles:Receiver"}
playbook:
  sender:
    - task: Pump
      params: {sizes: SIZES, repeats: REPEATS}
"""


def participants_seconds(repeats: int) -> dict[int, list[float]]:
    """Seconds per ``ctx.send`` of each size, in one run (the first send of a size dropped)."""
    text = MANIFEST.replace("SIZES", str(SIZES)).replace("REPEATS", str(repeats + 1))
    ws = workspace({"throughput": text}, {"roles.py": ROLES})
    outcome, store = run(ws, "throughput")
    per_size: dict[int, list[float]] = {}
    for s in sorted(store.spans(outcome.run_id, kind="inference"), key=lambda s: s.start_ns):
        per_size.setdefault(s.split, []).append(s.duration_ms / 1e3)
    return {size: times[1:] for size, times in per_size.items()}


def _tcp_receiver(port_queue: mp.Queue) -> None:  # type: ignore[type-arg]
    server = socket.create_server(("127.0.0.1", 0))
    port_queue.put(server.getsockname()[1])
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with conn:
        while header := _recv_exact(conn, 8):
            buffer = bytearray(int.from_bytes(header, "little"))
            view, got = memoryview(buffer), 0
            while got < len(buffer):  # MSG_WAITALL, as the participants' data plane reads
                got += conn.recv_into(view[got:], len(buffer) - got, socket.MSG_WAITALL)
            conn.sendall(b"k")


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def tcp_seconds(repeats: int) -> dict[int, list[float]]:
    """Seconds per message of each size over a raw socket (the first of a size dropped)."""
    ports: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    receiver = mp.Process(target=_tcp_receiver, args=(ports,), daemon=True)
    receiver.start()
    conn = socket.create_connection(("127.0.0.1", ports.get(timeout=30)))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    result = {}
    for size in SIZES:
        payload = bytes(size)
        times = []
        for _ in range(repeats + 1):
            start = time.perf_counter()
            conn.sendall(size.to_bytes(8, "little"))  # no concatenation: that would copy the payload
            conn.sendall(payload)
            conn.recv(1)
            times.append(time.perf_counter() - start)
        result[size] = times[1:]
    conn.close()
    receiver.join(timeout=10)
    return result


class PlaneBlob(Task):
    """The task the data plane alone carries (``--plane``)."""

    data: torch.Tensor


def _plane_receiver(port_queue: mp.Queue) -> None:  # type: ignore[type-arg]
    def handle(read: Callable[[], Incoming]) -> tuple[Reply, None]:
        open_incoming(read())
        return Reply(), None

    port_queue.put(DataListener(handle, None, LinkShaper).start("127.0.0.1"))
    threading.Event().wait()


def plane_seconds(repeats: int) -> dict[int, list[float]]:
    """Seconds per task of each size over the data plane alone (the first of a size dropped)."""
    ports: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    receiver = mp.Process(target=_plane_receiver, args=(ports,), daemon=True)
    receiver.start()
    link = SocketLink("receiver", ("127.0.0.1", ports.get(timeout=60)), None)
    result = {}
    for size in SIZES:
        tensor, times = torch.ones(size // 4), []
        for i in range(repeats + 1):
            start = time.perf_counter()
            link.send(
                prepare_task(PlaneBlob(data=tensor), sender="sender", sender_stage=0, tags=Tags(i, size))
            )
            times.append(time.perf_counter() - start)
        result[size] = times[1:]
    link.close()
    receiver.kill()
    receiver.join(timeout=10)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5, help="sends per size in each round")
    parser.add_argument("--rounds", type=int, default=3, help="raw TCP, then participants, this often")
    parser.add_argument("--plane", action="store_true", help="also the data plane alone, each round")
    args = parser.parse_args()
    # The shared machine's speed drifts within minutes: the two are measured in alternating
    # rounds and each size's samples pooled over the rounds.
    tcp: dict[int, list[float]] = {size: [] for size in SIZES}
    ours: dict[int, list[float]] = {size: [] for size in SIZES}
    plane: dict[int, list[float]] = {size: [] for size in SIZES}
    for _ in range(args.rounds):
        if args.plane:
            for size, times in plane_seconds(args.repeats).items():
                plane[size] += times
        for size, times in tcp_seconds(args.repeats).items():
            tcp[size] += times
        for size, times in participants_seconds(args.repeats).items():
            ours[size] += times
    print(f"# {machine()}; {args.rounds} alternating rounds of {args.repeats} sends per size, medians")
    extra = f" {'plane alone / raw':>18} {'plane +µs':>10}" if args.plane else ""
    print(f"{'size':>8} {'participants MB/s':>18} {'raw TCP MB/s':>13} {'ratio':>6} {'+µs/msg':>8}{extra}")
    for size in SIZES:
        label = f"{size >> 20} MB" if size >= 1 << 20 else f"{size >> 10} KB"
        mine, raw = size / 1e6 / median(ours[size]), size / 1e6 / median(tcp[size])
        # What a message costs beyond raw TCP's round trip: the fixed cost that small tensors feel.
        more_us = (median(ours[size]) - median(tcp[size])) * 1e6
        alone = ""
        if args.plane:
            plane_us = (median(plane[size]) - median(tcp[size])) * 1e6
            alone = f" {median(tcp[size]) / median(plane[size]):>18.2f} {plane_us:>10.0f}"
        print(f"{label:>8} {mine:>18.1f} {raw:>13.1f} {mine / raw:>6.2f} {more_us:>8.0f}{alone}")


if __name__ == "__main__":
    main()
