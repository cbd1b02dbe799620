"""Frame pacing for streams: when frames arrive, how many are in flight, which are dropped.

A stream runs frames through a pipeline. Closed loop (``inflight: K``): K
frames are in the system at all times, frame ``n+K`` starting when one of
them completes. Open loop (``rate:`` or a trace): frames arrive on a
schedule, whatever the pipeline does. Either runs for a number of frames
or until a duration has passed (open loop: arrivals stop, frames in flight
finish).

Frames wait for the head's processor in a :class:`HeadQueue`, first come
first served. Open loop, the queue is bounded (a :class:`DropPolicy`): a
frame arriving at a full queue is dropped (``newest``), or the oldest
waiting frame is (``oldest``); either is counted. Frames past the head
(on the link, at the server) are at most :data:`BEYOND_HEAD`; more wait
at the head, so a slow server backs the queue up and frames are dropped
there, and an overloaded pipeline cannot pile up threads without end.

Each frame runs on its own thread, so the first stage computes frame
``n+1`` while frame ``n`` is on the link or at the server. Knows nothing
of tasks or models: the pumps call ``frame(ticket, queue)`` for each frame that arrives.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .clock import now_ns
from .errors import RunError
from .roles import Context

if TYPE_CHECKING:  # built-in task modules import this one; the controller must not import torch
    import torch

ARRIVALS = ("constant", "poisson", "trace")
DROP_POLICIES = ("newest", "oldest")
DEFAULT_MAX_QUEUE = 64  # frames waiting for the head, open loop, unless ``drop:`` says otherwise
BEYOND_HEAD = 64  # frames past the head at most: more wait at the head (and are dropped there)


def arrival_times(rate: float, arrivals: str, seed: int) -> Iterator[float]:
    """Seconds from the stream's start at which frames arrive, without end.

    ``constant``: every ``1/rate``; ``poisson``: exponential gaps of mean
    ``1/rate``, seeded, so a rerun offers the same load.
    """
    if rate <= 0:
        raise RunError(f"a stream's rate must be positive frames per second, not {rate:g}")
    if arrivals not in ("constant", "poisson"):
        raise RunError(f"a stream's arrivals at a rate must be constant or poisson, not '{arrivals}'")
    if arrivals == "constant":
        yield from (i / rate for i in itertools.count())
        return
    rng, at = random.Random(seed), 0.0
    while True:
        yield at
        at += rng.expovariate(rate)


def arrival_offsets(count: int, rate: float, arrivals: str, seed: int) -> list[float]:
    """The first ``count`` of :func:`arrival_times`."""
    return list(itertools.islice(arrival_times(rate, arrivals, seed), count))


def schedule(times: Iterable[float], count: int | None, duration_s: float | None) -> Iterator[float]:
    """``times`` cut to the first ``count`` and to those before ``duration_s`` (None: no cut)."""
    cut = iter(times) if count is None else itertools.islice(times, count)
    return cut if duration_s is None else itertools.takewhile(lambda t: t < duration_s, cut)


@dataclass(frozen=True)
class DropPolicy:
    """At most ``max_queue`` frames wait for the head; beyond it ``newest`` drops the arriving
    frame, ``oldest`` the frame that has waited longest (the arriving one takes its place).
    At most ``max_inflight`` frames are past the head (on the link, at the server)."""

    max_queue: int = DEFAULT_MAX_QUEUE
    policy: str = "newest"
    max_inflight: int = BEYOND_HEAD  # frames past the head at most; more wait at the head

    def __post_init__(self) -> None:
        if self.max_queue < 1 or self.max_inflight < 1:
            raise ValueError(f"max_queue and max_inflight must be at least 1, not {self.max_queue}")
        if self.policy not in DROP_POLICIES:
            raise ValueError(f"policy must be {' or '.join(DROP_POLICIES)}, not '{self.policy}'")


@dataclass
class Ticket:
    """A frame that arrived: its index, when (:func:`~splittracer.clock.now_ns`), and whether
    a later arrival pushed it out of the queue."""

    index: int
    arrived_ns: int
    evicted: bool = False


class HeadQueue:
    """Frames waiting for the head's processor, served first come first served, one at a time.

    ``drop`` bounds the waiting frames (None: no bound); ``beyond`` the frames
    past the head, still waiting for their answer.
    """

    def __init__(self, drop: DropPolicy | None = None, beyond: int = BEYOND_HEAD) -> None:
        self.drop, self.beyond = drop, beyond
        self.dropped = 0
        self._cond = threading.Condition()
        self._waiting: deque[Ticket] = deque()
        self._busy = False
        self._past = 0

    def arrive(self, index: int) -> Ticket | None:
        """Queue frame ``index`` now; None when the policy drops it on arrival."""
        ticket = Ticket(index, now_ns())
        with self._cond:
            if self.drop is not None and len(self._waiting) >= self.drop.max_queue:
                self.dropped += 1
                if self.drop.policy == "newest":
                    return None
                self._waiting.popleft().evicted = True
                self._cond.notify_all()
            self._waiting.append(ticket)
        return ticket

    def take(self, ticket: Ticket) -> bool:
        """Wait until ``ticket`` has the head; False when it was dropped meanwhile."""
        with self._cond:
            self._cond.wait_for(lambda: ticket.evicted or self._ready(ticket))
            if ticket.evicted:
                return False
            self._waiting.popleft()
            self._busy = True
            return True

    def _ready(self, ticket: Ticket) -> bool:
        return self._waiting[0] is ticket and not self._busy and self._past < self.beyond

    def head_done(self) -> None:
        """The frame that had the head has left it (for the link and the server)."""
        with self._cond:
            self._busy = False
            self._past += 1
            self._cond.notify_all()

    def answered(self) -> None:
        """A frame past the head has its answer."""
        with self._cond:
            self._past -= 1
            self._cond.notify_all()


@dataclass
class PumpResult:
    """What a stream did: frames that arrived, completed and were dropped."""

    arrived: int = 0
    completed: int = 0
    dropped: int = 0


# Runs one frame that arrived, waiting in the queue for the head; False: dropped while it waited.
Frame = Callable[[Ticket, HeadQueue], bool]


class _Pump:
    def __init__(self, frame: Frame, queue: HeadQueue) -> None:
        self.frame, self.queue = frame, queue
        self.lock = threading.Lock()
        self.result = PumpResult()
        self.error: BaseException | None = None
        self.failed = threading.Event()

    def run_one(self, ticket: Ticket) -> None:
        try:
            ran = self.frame(ticket, self.queue)
        except BaseException as exc:
            with self.lock:
                self.error = self.error or exc
            self.failed.set()
        else:
            with self.lock:
                self.result.completed += int(ran)

    def finish(self, threads: list[threading.Thread], arrived: int) -> PumpResult:
        for thread in threads:
            thread.join()
        if self.error is not None:
            raise self.error
        self.result.arrived, self.result.dropped = arrived, self.queue.dropped
        return self.result


def pump_closed(
    inflight: int, frame: Frame, *, count: int | None = None, duration_s: float | None = None
) -> PumpResult:
    """Run frames ``0..count-1`` (or until ``duration_s`` has passed) with ``inflight`` of them
    in the system at once.

    Frames start in order; the first failure stops new frames and is raised
    once the frames in flight are done.
    """
    if inflight < 1:
        raise RunError(f"a stream's inflight must be at least 1, not {inflight}")
    if count is None and duration_s is None:
        raise RunError("a stream needs a count of frames or a duration")
    pump, numbers = _Pump(frame, HeadQueue(beyond=inflight)), itertools.count()
    until = None if duration_s is None else time.perf_counter() + duration_s
    issued = 0

    def worker() -> None:
        nonlocal issued
        while not pump.failed.is_set():
            with pump.lock:
                index = next(numbers)
                if (count is not None and index >= count) or (
                    until is not None and time.perf_counter() >= until
                ):
                    return
                issued += 1
                ticket = pump.queue.arrive(index)
            assert ticket is not None  # an unbounded queue drops nothing
            pump.run_one(ticket)

    threads = [threading.Thread(target=worker, name=f"frames-{i}", daemon=True) for i in range(inflight)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return pump.finish([], issued)


def pump_open(offsets: Iterable[float], frame: Frame, drop: DropPolicy | None = None) -> PumpResult:
    """Frame ``i`` arrives at ``offsets[i]`` seconds from now, whatever is still in flight.

    It waits for the head in a queue bounded by ``drop`` (default: 64 frames,
    the arriving frame dropped beyond them, and 64 frames past the head).
    """
    policy = drop or DropPolicy()
    pump = _Pump(frame, HeadQueue(policy, beyond=policy.max_inflight))
    threads: list[threading.Thread] = []
    started, arrived = time.perf_counter(), 0
    for index, offset in enumerate(offsets):
        _sleep_until(started + offset)
        if pump.failed.is_set():
            break
        arrived += 1
        ticket = pump.queue.arrive(index)
        if ticket is None:
            continue
        thread = threading.Thread(target=pump.run_one, args=(ticket,), name=f"frame-{index}", daemon=True)
        thread.start()
        threads.append(thread)
    return pump.finish(threads, arrived)


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def stream_attrs(
    first: int, rate: float, arrivals: str, inflight: int, deadline_s: float | None
) -> dict[str, str | int | float | bool]:
    """What every frame's ``inference`` span says of its stream (the results read them);
    ``arrivals`` empty for a closed loop."""
    attrs: dict[str, str | int | float | bool] = {
        "stream": first,
        "loop": arrivals or "closed",
        "offered_fps": rate,
        "inflight": inflight,
    }
    if deadline_s is not None:
        attrs["deadline_ms"] = deadline_s * 1000
    return attrs


class StreamFrames:
    """One stream's frames on the head: its layers one frame at a time, then ``rest``.

    Frame ``i`` is inference ``first + i`` (a warm-up for ``i < warmup``),
    timed from the moment it arrives. Frames wait for the head's processor
    (recorded as a ``queue`` span) so the head is one stage of a pipeline:
    while one frame computes, others are on the link or at the server.
    ``rest(tensors)`` sends what crosses the split onwards and waits for the answer.
    """

    INPUTS = 8  # distinct inputs made before the stream starts, used in turn

    def __init__(
        self,
        ctx: Context,
        rest: Callable[[tuple[torch.Tensor, ...]], None],
        attrs: dict[str, str | int | float | bool],
        split: int,
        first: int,
        warmup: int,
    ) -> None:
        self.ctx, self.attrs, self.split = ctx, attrs, split
        self.first, self.warmup = first, warmup
        self.inputs = [ctx.example(first + i) for i in range(self.INPUTS)]
        self.rest = rest
        self._lock = threading.Lock()
        self._done = 0
        self.issued = 0  # frames that reached a thread: ids first..first+issued-1 were used
        self._progress: Callable[[int], None] = lambda done: None

    def pump(
        self,
        times: Iterable[float] | None,
        inflight: int,
        *,
        count: int | None,
        duration_s: float | None,
        drop: DropPolicy | None = None,
    ) -> PumpResult:
        """Every frame: open loop at ``times`` (seconds from the start), else closed loop with
        ``inflight`` in the system; ``count`` frames or until ``duration_s``."""
        started = time.perf_counter()
        label = f"stream split {self.split}"
        if duration_s is None:
            total = count or 0
            self._progress = lambda done: self.ctx.progress(done, total, label)
        else:
            tenths = max(int(duration_s * 10), 1)
            self._progress = lambda done: self.ctx.progress(
                min(int((time.perf_counter() - started) * 10), tenths), tenths, f"{label}: {done} frames"
            )
        if times is not None:
            return pump_open(schedule(times, count, duration_s), self.run, drop)
        return pump_closed(inflight, self.run, count=count, duration_s=duration_s)

    def run(self, ticket: Ticket, queue: HeadQueue) -> bool:
        """Frame ``ticket.index``, from its arrival to its answer; False when it was dropped
        before it reached the head."""
        with self._lock:
            self.issued = max(self.issued, ticket.index + 1)
        if not queue.take(ticket):
            return False
        ctx, i = self.ctx, ticket.index
        since = ticket.arrived_ns
        with ctx.inference(
            self.first + i, split=self.split, warmup=i < self.warmup, attrs=self.attrs, since_ns=since
        ):
            with ctx.waiting(since_ns=since):
                pass  # the frame waited from its arrival until it had the head
            try:
                sent = ctx.run_layers(0, self.split, self.inputs[i % len(self.inputs)], final=False)
            finally:
                queue.head_done()
            try:
                self.rest(sent)
            finally:
                queue.answered()
        with self._lock:
            self._done += 1
            done = self._done
        self._progress(done)
        return True


class _Batch:
    def __init__(self) -> None:
        self.items: list[tuple[torch.Tensor, ...]] = []
        self.full = threading.Event()  # max requests joined: compute now
        self.started = threading.Event()  # closed: no one joins any more, compute begins
        self.done = threading.Event()
        self.outputs: list[Any] = []
        self.error: BaseException | None = None


class Batcher:
    """Dynamic batching: requests for the same layers arriving within ``wait_s`` of the first
    are stacked (up to ``max_size``) along the batch dimension and computed once.

    Every request runs on its own handler thread (the role has ``workers >=
    max_size``). One batch computes at a time: requests that arrive while
    one computes gather into the next. The first of a batch leads: it waits
    out the window and for the batch before to finish (a ``queue`` span),
    computes the batch (a ``compute`` span) and records its size (the
    ``batch_size`` metric); the others wait for the batch to close
    (``queue``) and for its computation (a ``compute`` span of their own,
    the same interval, ``attrs['batched']`` true), then take their slice.
    """

    def __init__(self, max_size: int, wait_s: float) -> None:
        self.max_size, self.wait_s = max_size, wait_s
        self._lock = threading.Lock()
        self._computing = threading.Lock()  # one batch at a time: a batch in the window waits
        self._open: dict[tuple[int, int, bool], _Batch] = {}

    def run(
        self, ctx: Context, start: int, end: int, tensors: tuple[torch.Tensor, ...], *, final: bool
    ) -> Any:
        """Layers ``start+1..end`` on ``tensors``, computed with whatever else arrives meanwhile."""
        key = (start, end, final)
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if batch is None:
                batch = self._open[key] = _Batch()
            index = len(batch.items)
            batch.items.append(tensors)
            if len(batch.items) >= self.max_size:
                self._close(key, batch)
        if leader:
            self._lead(ctx, key, batch)
        else:
            with ctx.waiting():
                batch.started.wait()
            with ctx.computing(start, end, batched=True):
                batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.outputs[index]

    def _close(self, key: tuple[int, int, bool], batch: _Batch) -> None:
        if self._open.get(key) is batch:
            del self._open[key]
        batch.full.set()

    def _lead(self, ctx: Context, key: tuple[int, int, bool], batch: _Batch) -> None:
        with ctx.waiting():
            batch.full.wait(self.wait_s)
            self._computing.acquire()
        with self._lock:
            self._close(key, batch)
            items = list(batch.items)
        batch.started.set()
        import torch

        try:
            stacked = [torch.cat(column) for column in zip(*items, strict=True)]
            out = ctx.run_layers(key[0], key[1], *stacked, final=key[2])
            batch.outputs = _unstack(out, [t[0].shape[0] if t else 1 for t in items])
            ctx.record("batch_size", float(len(items)))
        except BaseException as exc:
            batch.error = exc
        finally:
            self._computing.release()
            batch.done.set()


def _unstack(out: Any, sizes: list[int]) -> list[Any]:
    """Each request's slice of a batched output (tensors split along dimension 0)."""
    import torch
    from torch.utils import _pytree as pytree

    leaves, spec = pytree.tree_flatten(out)
    total = sum(sizes)
    parts: list[Any] = []
    offset = 0
    for size in sizes:
        sliced = [
            leaf[offset : offset + size]
            if isinstance(leaf, torch.Tensor) and leaf.dim() and leaf.shape[0] == total
            else leaf
            for leaf in leaves
        ]
        parts.append(pytree.tree_unflatten(sliced, spec))
        offset += size
    return parts
