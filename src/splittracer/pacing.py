"""Frame pacing for streams: when frames arrive, and how many are in flight at once.

A stream runs ``count`` frames through a pipeline. Closed loop
(``inflight: K``): K frames are in the system at all times, frame ``n+K``
starting when one of them completes. Open loop (``rate:``): frames arrive
on a schedule, constant or Poisson, whatever the pipeline does; a frame
that finds ``bound`` frames still in flight is dropped (and counted), so
an overloaded pipeline cannot pile up threads without end.

Each frame runs on its own thread, so the first stage computes frame
``n+1`` while frame ``n`` is on the link or at the server. Knows nothing
of tasks or models: :func:`pump` calls ``frame(i)`` for each frame.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import RunError
from .roles import Context

if TYPE_CHECKING:  # built-in task modules import this one; the controller must not import torch
    import torch

ARRIVALS = ("constant", "poisson")
OPEN_LOOP_BOUND = 64  # frames in flight at most, open loop: more are dropped


def arrival_offsets(count: int, rate: float, arrivals: str, seed: int) -> list[float]:
    """Seconds from the stream's start at which each of ``count`` frames arrives.

    ``constant``: every ``1/rate``; ``poisson``: exponential gaps of mean
    ``1/rate``, seeded, so a rerun offers the same load.
    """
    if rate <= 0:
        raise RunError(f"a stream's rate must be positive frames per second, not {rate:g}")
    if arrivals not in ARRIVALS:
        raise RunError(f"a stream's arrivals must be {' or '.join(ARRIVALS)}, not '{arrivals}'")
    if arrivals == "constant":
        return [i / rate for i in range(count)]
    rng = random.Random(seed)
    offsets, at = [], 0.0
    for _ in range(count):
        offsets.append(at)
        at += rng.expovariate(rate)
    return offsets


@dataclass
class PumpResult:
    """What a stream did: frames completed and dropped."""

    completed: int = 0
    dropped: int = 0


class _Pump:
    def __init__(self, frame: Callable[[int], None]) -> None:
        self.frame = frame
        self.lock = threading.Lock()
        self.result = PumpResult()
        self.error: BaseException | None = None
        self.failed = threading.Event()

    def run_one(self, index: int) -> None:
        try:
            self.frame(index)
        except BaseException as exc:
            with self.lock:
                self.error = self.error or exc
            self.failed.set()
        else:
            with self.lock:
                self.result.completed += 1

    def finish(self, threads: list[threading.Thread]) -> PumpResult:
        for thread in threads:
            thread.join()
        if self.error is not None:
            raise self.error
        return self.result


def pump_closed(count: int, inflight: int, frame: Callable[[int], None]) -> PumpResult:
    """Run frames ``0..count-1`` with ``inflight`` of them in the system at once.

    Frames start in order; the first failure stops new frames and is raised
    once the frames in flight are done.
    """
    if inflight < 1:
        raise RunError(f"a stream's inflight must be at least 1, not {inflight}")
    pump, numbers = _Pump(frame), iter(range(count))

    def worker() -> None:
        while not pump.failed.is_set():
            with pump.lock:
                index = next(numbers, None)
            if index is None:
                return
            pump.run_one(index)

    threads = [threading.Thread(target=worker, name=f"frames-{i}", daemon=True) for i in range(inflight)]
    for thread in threads:
        thread.start()
    return pump.finish(threads)


def pump_open(offsets: list[float], frame: Callable[[int], None], bound: int = OPEN_LOOP_BOUND) -> PumpResult:
    """Start frame ``i`` at ``offsets[i]`` seconds from now, whatever is still in flight.

    A frame that arrives while ``bound`` frames are in flight is dropped.
    """
    pump, slots = _Pump(frame), threading.BoundedSemaphore(bound)
    threads: list[threading.Thread] = []

    def run(index: int) -> None:
        try:
            pump.run_one(index)
        finally:
            slots.release()

    started = time.perf_counter()
    for index, offset in enumerate(offsets):
        _sleep_until(started + offset)
        if pump.failed.is_set():
            break
        if not slots.acquire(blocking=False):
            pump.result.dropped += 1
            continue
        thread = threading.Thread(target=run, args=(index,), name=f"frame-{index}", daemon=True)
        thread.start()
        threads.append(thread)
    return pump.finish(threads)


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.perf_counter()
    if remaining > 0:
        time.sleep(remaining)


def stream_attrs(
    first: int, rate: float, arrivals: str, inflight: int, deadline_s: float | None
) -> dict[str, str | int | float | bool]:
    """What every frame's ``inference`` span says of its stream (the results read them)."""
    attrs: dict[str, str | int | float | bool] = {
        "stream": first,
        "loop": arrivals if rate > 0 else "closed",
        "offered_fps": rate,
        "inflight": inflight,
    }
    if deadline_s is not None:
        attrs["deadline_ms"] = deadline_s * 1000
    return attrs


class StreamFrames:
    """One stream's frames on the head: its layers one frame at a time, then ``rest``.

    Frame ``i`` is inference ``first + i`` (a warm-up for ``i < warmup``),
    timed from the moment it starts. Frames wait for the head's processor
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
        total: int,
    ) -> None:
        self.ctx, self.attrs, self.split = ctx, attrs, split
        self.first, self.warmup, self.total = first, warmup, total
        self.inputs = [ctx.example(first + i) for i in range(min(total, self.INPUTS))]
        self.rest = rest
        self._head = threading.Lock()
        self._lock = threading.Lock()
        self._done = 0

    def pump(self, rate: float, arrivals: str, inflight: int) -> PumpResult:
        """Every frame: open loop at ``rate`` (seeded by the run's seed and the stream), else closed
        loop with ``inflight`` in the system."""
        if rate > 0:
            offsets = arrival_offsets(self.total, rate, arrivals, self.ctx.options.seed + self.first)
            return pump_open(offsets, self.run)
        return pump_closed(self.total, inflight, self.run)

    def run(self, i: int) -> None:
        """Frame ``i``, start to answer."""
        ctx = self.ctx
        with ctx.inference(self.first + i, split=self.split, warmup=i < self.warmup, attrs=self.attrs):
            with ctx.waiting():
                self._head.acquire()
            try:
                sent = ctx.run_layers(0, self.split, self.inputs[i % len(self.inputs)], final=False)
            finally:
                self._head.release()
            self.rest(sent)
        with self._lock:
            self._done += 1
            done = self._done
        ctx.progress(done, self.total, f"stream split {self.split}")


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
