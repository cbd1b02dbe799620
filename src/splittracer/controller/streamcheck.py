"""Check a throughput plan against a measured stream run: frames/s planned and achieved.

:func:`check_stream_run` reads a run of ``Stream`` tasks, plans the same
model on the given device profiles and the run's own links with the
``throughput`` objective (:mod:`splittracer.plan.chain`: a frame leaves every
cycle, the slowest stage, link or reply; ``clients`` sharing the last
device count it that many times), and compares, stream by stream, the
planned frames/s of the cuts the stream ran with the frames/s it achieved.
A stream with several clients is one row, its clients together, planned
with that many clients.

What a row's achieved throughput can say about the plan depends on how the
stream was loaded, and the row says so (:attr:`StreamCheck.limited_by`):
an open-loop stream that kept up with its offered rate shows the rate, not
what the pipeline could do; a closed loop with one frame in flight is not
pipelined (a frame waits for the previous one's answer).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import SplitTracerError
from ..metrics.spans import Span
from ..metrics.store import ResultsStore
from ..plan.chain import Link
from ..plan.estimate import Estimator
from ..plan.planner import SplitPrediction
from ..plan.profiles import DeviceProfile
from ..report.streams import StreamRow, summarize_streams, tradeoff_rows, uplinks_of
from .plancheck import RunCheck, plan_for_run, predict_at

__all__ = [
    "StreamCheck",
    "StreamPlanCheck",
    "check_stream_run",
    "run_streamed",
    "stream_check_to_dict",
    "stream_cuts",
]

_KEPT_UP = 0.9  # an open-loop stream achieving this share of its offered rate was limited by the rate


@dataclass(frozen=True)
class StreamCheck:
    """One stream: the frames/s planned for its cuts and its clients, and what it achieved."""

    stream: int
    client: str  # '*' for the clients of a stream together
    clients: int
    cuts: tuple[int, ...]
    frames: int
    loop: str
    offered_fps: float
    inflight: int
    achieved_fps: float
    planned_fps: float
    planned_cycle_ms: float

    @property
    def error(self) -> float:
        """(planned - achieved) / achieved; 0 when nothing was achieved to compare with."""
        return (self.planned_fps - self.achieved_fps) / self.achieved_fps if self.achieved_fps > 0 else 0.0

    @property
    def limited_by(self) -> str:
        """Why the achieved rate is not the pipeline's capacity: 'offered load', 'one in flight', or ''."""
        if self.offered_fps > 0 and self.achieved_fps >= _KEPT_UP * self.offered_fps:
            return "offered load"
        if self.offered_fps <= 0 and self.inflight <= 1:
            return "one in flight"
        return ""


@dataclass(frozen=True)
class StreamPlanCheck(RunCheck[StreamCheck]):
    """A stream run's streams beside the throughput plan for the same model, devices and links."""

    @property
    def planned_rows(self) -> tuple[StreamCheck, ...]:
        """The streams that ran the planner's choice (none when the run did not stream it)."""
        return tuple(r for r in self.rows if r.cuts == self.planned)

    @property
    def measured_best(self) -> StreamCheck:
        """The stream that achieved the most frames/s."""
        return max(self.rows, key=lambda r: r.achieved_fps)

    @property
    def compared(self) -> StreamCheck:
        """What stands for the planner's choice: its best stream when it was streamed, else the
        streamed cuts planned fastest."""
        if self.planned_rows:
            return max(self.planned_rows, key=lambda r: r.achieved_fps)
        return max(self.rows, key=lambda r: r.planned_fps)

    @property
    def shortfall(self) -> float:
        """How many fewer frames/s the compared stream achieved than the best: 0.1 is 10 %."""
        best = self.measured_best.achieved_fps
        return 1 - self.compared.achieved_fps / best if best > 0 else 0.0


def run_streamed(store: ResultsStore, run_id: str) -> bool:
    """Whether the run has frames of a ``Stream`` task."""
    return any(s.kind == "inference" and "stream" in s.attrs for s in store.spans(store.get_run(run_id).id))


def stream_cuts(spans: Iterable[Span]) -> dict[int, tuple[int, ...]]:
    """Each stream's cuts: where each stage but the last stopped (the ``end_layer`` of its compute
    spans), the most common choice over the stream's completed frames."""
    spans = list(spans)
    stream_of = {
        s.inference: int(s.attrs["stream"])
        for s in spans
        if s.kind == "inference" and "stream" in s.attrs and not s.attrs.get("error")
    }
    ends: defaultdict[int, dict[int, int]] = defaultdict(dict)
    for s in spans:
        if s.kind == "compute" and s.inference in stream_of:
            ends[s.inference][s.stage] = max(ends[s.inference].get(s.stage, 0), s.end_layer)
    votes: defaultdict[int, Counter[tuple[int, ...]]] = defaultdict(Counter)
    for inference, stages in ends.items():
        if len(stages) >= 2:
            votes[stream_of[inference]][tuple(stages[k] for k in sorted(stages)[:-1])] += 1
    return {stream: counts.most_common(1)[0][0] for stream, counts in sorted(votes.items())}


def check_stream_run(
    store: ResultsStore,
    run_id: str,
    profiles: Sequence[DeviceProfile],
    *,
    estimator: Estimator = "auto",
    links: Sequence[Link] | None = None,
) -> StreamPlanCheck:
    """Plan the run's model for throughput on ``profiles`` and compare with its streams.

    ``links`` replaces the run's own emulated links (for a run on real ones).
    The planner's choice is made for the most clients any stream had.
    Raises SplitTracerError when the run streamed no frame across devices.
    """
    run = store.get_run(run_id)
    spans = store.spans(run.id)
    every = summarize_streams(spans, store.metrics(run.id), uplinks_of(run.record))
    rows = tradeoff_rows(every)
    cuts = stream_cuts(spans)
    rows = [r for r in rows if r.stream in cuts]
    if not rows:
        raise SplitTracerError(
            f"run {run.id} streamed no frame across devices to check against",
            hint="Check a run with a Stream task (splittracer.builtin:SplitHead and SplitTail).",
        )
    counts = _clients(every)
    plan = plan_for_run(
        run,
        profiles,
        len(cuts[rows[0].stream]),
        "streams",
        estimator=estimator,
        links=links,
        objective="throughput",
        clients=max(counts.values(), default=1),
    )
    checks = tuple(_compare(plan, r, cuts[r.stream], counts.get(r.stream, 1)) for r in rows)
    return StreamPlanCheck(run.id, run.experiment, plan, checks)


def _clients(rows: Iterable[StreamRow]) -> dict[int, int]:
    """How many clients each stream had."""
    found: defaultdict[int, set[str]] = defaultdict(set)
    for r in rows:
        if r.client != "*":
            found[r.stream].add(r.client)
    return {stream: len(names) for stream, names in found.items()}


def _compare(plan: SplitPrediction, row: StreamRow, cuts: tuple[int, ...], clients: int) -> StreamCheck:
    predicted = predict_at(plan, cuts)
    return StreamCheck(
        stream=row.stream,
        client=row.client,
        clients=clients,
        cuts=cuts,
        frames=row.frames,
        loop=row.loop,
        offered_fps=row.offered_fps,
        inflight=row.inflight,
        achieved_fps=row.achieved_fps,
        planned_fps=predicted.frames_per_s(clients),
        planned_cycle_ms=predicted.cycle_ms(clients),
    )


def stream_check_to_dict(result: StreamPlanCheck) -> dict[str, Any]:
    """A stream plan check as JSON-ready data."""
    chosen, best = result.compared, result.measured_best
    return {
        "run": result.run_id,
        "experiment": result.experiment,
        "objective": "throughput",
        "model": result.plan.source,
        "devices": [c.profile for c in result.plan.costs],
        "methods": [c.method for c in result.plan.costs],
        "clients": result.plan.chain.clients,
        "planned": list(result.planned),
        "planned_fps": result.plan.chain.best.frames_per_s(result.plan.chain.clients),
        "planned_streamed": bool(result.planned_rows),
        "compared": "planned" if result.planned_rows else "predicted_best_streamed",
        "chosen": list(chosen.cuts),
        "chosen_stream": chosen.stream,
        "chosen_achieved_fps": chosen.achieved_fps,
        "measured_best": list(best.cuts),
        "measured_best_stream": best.stream,
        "measured_best_fps": best.achieved_fps,
        "shortfall": result.shortfall,
        "streams": [
            {
                "stream": r.stream,
                "client": r.client,
                "clients": r.clients,
                "cuts": list(r.cuts),
                "frames": r.frames,
                "loop": r.loop,
                "offered_fps": r.offered_fps,
                "inflight": r.inflight,
                "achieved_fps": r.achieved_fps,
                "planned_fps": r.planned_fps,
                "planned_cycle_ms": r.planned_cycle_ms,
                "error": r.error,
                "limited_by": r.limited_by or None,
            }
            for r in result.rows
        ],
    }
