"""Where a small tensor's fixed cost goes: waking up, measured by busy-polling instead.

The data plane alone (a task encoded, framed, sent, read, decoded and
answered; no participant runtime) round-trips a 64 KB and a 256 KB tensor
between two processes, once with blocking reads (as the data plane does)
and once with each side polling its socket for up to ``--spin-us`` before
it blocks (sender, receiver, both). Raw TCP (``bench/throughput.py``'s
baseline) is measured in the same rounds. A blocked thread that is woken
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

import torch
from _lab import machine, median
from throughput import tcp_seconds

from splittracer.participant.delivery import open_incoming, prepare_task
from splittracer.tasks import Task
from splittracer.wire import datalink
from splittracer.wire.envelope import Tags
from splittracer.wire.messages import Reply

SIZES = [64 << 10, 256 << 10]
MODES = {"blocking": (False, False), "sender polls": (True, False), "receiver polls": (False, True)}
MODES["both poll"] = (True, True)


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


def _receiver(ports: mp.Queue, spin_s: float, messages: int) -> None:  # type: ignore[type-arg]
    server = socket.create_server(("127.0.0.1", 0))
    ports.put(server.getsockname()[1])
    sock, _ = server.accept()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = datalink.Reader(sock)
    with sock:
        for _ in range(messages):
            if spin_s:
                _poll(sock, spin_s)
            open_incoming(datalink.decode_frame(datalink.read_frame(reader)))
            datalink.send_answer(sock, (Reply(), None))


def plane_seconds(
    size: int, repeats: int, sender_polls: bool, receiver_polls: bool, spin_s: float
) -> list[float]:
    """Seconds per round trip of a ``size``-byte tensor (the first tenth dropped: warm-up)."""
    ports: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    receiver = mp.Process(target=_receiver, args=(ports, spin_s if receiver_polls else 0.0, repeats))
    receiver.start()
    sock = socket.create_connection(("127.0.0.1", ports.get(timeout=60)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader, tensor, times = datalink.Reader(sock), torch.ones(size // 4), []
    for i in range(repeats):
        start = time.perf_counter()
        outgoing = prepare_task(PolledBlob(data=tensor), sender="s", sender_stage=0, tags=Tags(i, size))
        datalink.send_frame(sock, outgoing)
        if sender_polls:
            _poll(sock, spin_s)
        datalink.read_answer(reader)
        times.append(time.perf_counter() - start)
    sock.close()
    receiver.join(timeout=30)
    return times[repeats // 10 :]


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
        for size, times in tcp_seconds(args.repeats, SIZES).items():
            samples.setdefault(("raw TCP", size), []).extend(times)
        for mode, (sender, receiver) in MODES.items():
            for size in SIZES:
                samples.setdefault((mode, size), []).extend(
                    plane_seconds(size, args.repeats, sender, receiver, spin_s)
                )
    print(
        f"# {machine()}; {args.rounds} rounds of {args.repeats} round trips, medians; "
        f"polling up to {args.spin_us:.0f} µs"
    )
    print(f"{'path':>16} " + " ".join(f"{f'{s >> 10} KB µs':>10} {'raw/it':>7}" for s in SIZES))
    for mode in ["raw TCP", *MODES]:
        cells = []
        for size in SIZES:
            us = median(samples[mode, size]) * 1e6
            cells.append(f"{us:>10.0f} {median(samples['raw TCP', size]) * 1e6 / us:>7.2f}")
        print(f"{mode:>16} " + " ".join(cells))


if __name__ == "__main__":
    main()
