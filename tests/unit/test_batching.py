"""Dynamic batching: requests stacked, computed once, each answered with its own slice."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest
import torch

from splittracer.manifest.schema import Batch
from splittracer.pacing import Batcher


class _Ctx:
    """Just what the batcher uses of a Context: compute doubles, and every call is noted."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.spans: list[str] = []
        self.lock = threading.Lock()

    def run_layers(
        self, start: int, end: int, *tensors: torch.Tensor, final: bool
    ) -> tuple[torch.Tensor, ...]:
        self.batches.append(tensors[0].shape[0])
        return tuple(t * 2 for t in tensors)

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        with self.lock:
            self.spans.append("queue")
        yield

    @contextlib.contextmanager
    def computing(self, start: int, end: int, **attrs: object) -> Iterator[None]:
        with self.lock:
            self.spans.append("compute")
        yield

    def record(self, name: str, value: float, **attrs: object) -> None:
        assert name == "batch_size"


def test_requests_within_the_window_are_computed_once_and_answered_each() -> None:
    ctx, batcher = _Ctx(), Batcher(4, 5.0)  # a long window: the fourth request closes it
    answers: dict[int, torch.Tensor] = {}

    def request(i: int) -> None:
        x = torch.full((1, 3), float(i))
        answers[i] = batcher.run(ctx, 5, 9, (x, x + 100), final=False)  # type: ignore[arg-type]

    threads = [threading.Thread(target=request, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert ctx.batches == [4]
    for i, (first, second) in answers.items():
        assert torch.equal(first, torch.full((1, 3), 2.0 * i)) and torch.equal(second, first + 200)
    assert ctx.spans.count("queue") == 4 and ctx.spans.count("compute") == 3  # the leader computes


def test_a_lone_request_waits_out_the_window_only() -> None:
    ctx = _Ctx()
    out = Batcher(8, 0.01).run(ctx, 0, 2, (torch.ones(1, 2),), final=False)  # type: ignore[arg-type]
    assert ctx.batches == [1] and torch.equal(out[0], torch.full((1, 2), 2.0))


def test_a_failed_batch_fails_every_request() -> None:
    ctx = _Ctx()
    ctx.run_layers = lambda *a, **k: (_ for _ in ()).throw(ValueError("bad"))  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="bad"):
        Batcher(2, 0.0).run(ctx, 0, 2, (torch.ones(1, 2),), final=False)  # type: ignore[arg-type]


def test_the_batch_key_is_checked() -> None:
    assert Batch.model_validate({"max": 8, "wait": "5ms"}).wait_s == pytest.approx(0.005)
    with pytest.raises(ValueError):
        Batch.model_validate({"max": 0})
