"""Where a small tensor's fixed cost goes: waking up, measured by busy-polling instead.

The data plane alone (a task encoded, framed, sent, read, decoded and
answered; no participant runtime) round-trips a 64 KB and a 256 KB tensor
between two processes, once with blocking reads (as the data plane does)
and once with each side polling its socket for up to ``--spin-us`` before
it blocks (sender, receiver, both). Raw TCP (``bench/throughput.py``'s
baseline: length, payload, a 1-byte answer) is measured in the same
rounds, blocking and with both sides polling; and streamed, one message
after another with one answer at the end (what a window of unacknowledged
sends would be measured against). A blocked thread that is woken
pays the scheduler and, on a virtual machine, a halted vCPU's return, with
cold caches after it; polling keeps the core busy instead, which is why it
is not what the data plane does: two pollers and one more busy process on
a 2-core machine are slower by an order of magnitude.

    python bench/busy_poll.py [--repeats 200] [--rounds 2] [--spin-us 1000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import socket
import time
from typing import NamedTuple

import torch
from _lab import machine, median

from splittracer.participant.delivery import open_incoming, prepare_task
from splittracer.tasks import Task
from splittracer.wire import datalink
from splittracer.wire.envelope import Tags
from splittracer.wire.messages import Reply

SIZES = [64 << 10, 256 << 10]


class Mode(NamedTuple):
    """What travels (raw bytes or a task on the data plane) and which side polls."""

    raw: bool
    sender_polls: bool
    receiver_polls: bool


MODES = {
    "raw TCP": Mode(True, False, False),
    "raw, both poll": Mode(True, True, True),
    "plane, blocking": Mode(False, False, False),
    "sender polls": Mode(False, True, False),
    "receiver polls": Mode(False, False, True),
    "both poll": Mode(False, True, True),
}


class PolledBlob(Task):
    """The task this benchmark sends."""

    data: torch.Tensor


def _poll(sock: socket.socket, seconds: float) -> None:
    """Return once ``sock`` has bytes to read or ``seconds`` have passed (then a read blocks)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        try:
            if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
                return
        except BlockingIOError:
            pass


def _receiver(ports: mp.Queue, spin_s: float, messages: int, raw: bool) -> None:  # type: ignore[type-arg]
    server = socket.create_server(("127.0.0.1", 0))
    ports.put(server.getsockname()[1])
    sock, _ = server.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = datalink.Reader(sock)
    with sock:
        for _ in range(messages):
            if spin_s:
                _poll(sock, spin_s)
            if raw:  # length, payload (read as the data plane reads a tensor), 1-byte answer
                reader.read_exact(int.from_bytes(reader.read_exact(8), "little"))
                sock.sendall(b"k")
                continue
            open_incoming(datalink.decode_frame(datalink.read_frame(reader)))
            datalink.send_answer(sock, (Reply(), None))


def round_trips(size: int, repeats: int, mode: Mode, spin_s: float) -> list[float]:
    """Seconds per round trip of ``size`` bytes (the first tenth dropped: warm-up)."""
    ports: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    receiver_spin = spin_s if mode.receiver_polls else 0.0
    receiver = mp.Process(target=_receiver, args=(ports, receiver_spin, repeats, mode.raw))
    receiver.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=60)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader, tensor, payload, times = datalink.Reader(sock), torch.ones(size // 4), bytes(size), []
    for i in range(repeats):
        start = time.perf_counter()
        if mode.raw:
            sock.sendall(size.to_bytes(8, "little"))
            sock.sendall(payload)
        else:
            outgoing = prepare_task(PolledBlob(data=tensor), sender="s", sender_stage=0, tags=Tags(i, size))
            datalink.send_frame(sock, outgoing)
        if mode.sender_polls:
            _poll(sock, spin_s)
        reader.read_exact(1) if mode.raw else datalink.read_answer(reader)
        times.append(time.perf_counter() - start)
    sock.close()
    receiver.join(timeout=30)
    return times[repeats // 10 :]


def _sink(ports: mp.Queue, messages: int) -> None:  # type: ignore[type-arg]
    server = socket.create_server(("127.0.0.1", 0))
    ports.put(server.getsockname()[1])
    sock, _ = server.accept()
    reader = datalink.Reader(sock)
    with sock:
        for _ in range(messages):
            reader.read_exact(int.from_bytes(reader.read_exact(8), "little"))
        sock.sendall(b"k")  # one answer at the end


def streamed_seconds(size: int, messages: int) -> float:
    """Seconds per message of raw TCP sent back to back, one answer at the end: what a window of
    unacknowledged sends would be measured against."""
    ports: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    receiver = mp.Process(target=_sink, args=(ports, messages))
    receiver.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=60)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    payload = bytes(size)
    start = time.perf_counter()
    for _ in range(messages):
        sock.sendall(size.to_bytes(8, "little"))
        sock.sendall(payload)
    sock.recv(1)
    seconds = (time.perf_counter() - start) / messages
    sock.close()
    receiver.join(timeout=30)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=200, help="round trips per size and mode, each round")
    parser.add_argument("--rounds", type=int, default=2, help="every mode and raw TCP, this often")
    parser.add_argument(
        "--spin-us", type=float, default=1000.0, help="how long a poller polls before it blocks"
    )
    args = parser.parse_args()
    spin_s = args.spin_us / 1e6
    samples: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.rounds):
        for name, mode in MODES.items():
            for size in SIZES:
                samples.setdefault((name, size), []).extend(round_trips(size, args.repeats, mode, spin_s))
    print(
        f"# {machine()}; {args.rounds} rounds of {args.repeats} round trips, medians; "
        f"polling up to {args.spin_us:.0f} µs"
    )
    print(f"{'path':>16} " + " ".join(f"{f'{s >> 10} KB µs':>10} {'raw/it':>7}" for s in SIZES))
    for mode in MODES:
        cells = []
        for size in SIZES:
            us = median(samples[mode, size]) * 1e6
            cells.append(f"{us:>10.0f} {median(samples['raw TCP', size]) * 1e6 / us:>7.2f}")
        print(f"{mode:>16} " + " ".join(cells))
    streamed = [
        median([streamed_seconds(size, 10 * args.repeats) for _ in range(args.rounds)]) for size in SIZES
    ]
    print(
        "raw TCP streamed, no answer per message (µs a message): "
        + ", ".join(f"{s >> 10} KB {t * 1e6:.0f}" for s, t in zip(SIZES, streamed))
    )


if __name__ == "__main__":
    main()
