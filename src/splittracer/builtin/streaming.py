"""What a :class:`~splittracer.builtin.Stream` asks for, checked when it is built, and turned
into what :mod:`splittracer.pacing` runs: arrival times, frame counts, the drop policy."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from ..config import did_you_mean
from ..errors import ConfigError, RunError
from ..pacing import ARRIVALS, BEYOND_HEAD, DEFAULT_MAX_QUEUE, DROP_POLICIES, DropPolicy, arrival_times
from ..units import parse_duration, parse_rate

if TYPE_CHECKING:
    from .tasks import Stream

DEFAULT_COUNT = 100  # measured frames of a stream that gives neither count, duration nor a trace
DROP_KEYS = ("max_queue", "policy", "max_inflight")
PLANNED = "auto"


def _bad(field: str, message: str, hint: str | None = None) -> ConfigError:
    """A mistake in one of a Stream's fields; the manifest loader adds its file and line."""
    return ConfigError(message, key=field, hint=hint)


def check_stream(task: Stream) -> None:
    """Refuse a Stream whose fields cannot run together, naming the field (a ConfigError whose
    ``key`` is the field)."""
    _check_sizes(task)
    _check_loop(task)
    _check_trace(task)
    _check_split(task)
    drop_policy(task)
    if task.deadline is not None:
        _duration("deadline", task.deadline)


def _check_sizes(task: Stream) -> None:
    if task.count is not None and task.count < 1:
        raise _bad("count", f"count must be at least 1 frame, not {task.count}")
    if task.inflight < 1:
        raise _bad("inflight", f"inflight must be at least 1 frame, not {task.inflight}")
    if task.duration is not None:
        _duration("duration", task.duration)
        if task.count is not None:
            raise _bad("duration", "give count (frames) or duration (time), not both")


def _duration(field: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise _bad(field, str(exc), "Write a duration with a unit, e.g. 30s or 200ms.") from None
    if seconds <= 0:
        raise _bad(field, f"{field} must be above 0, not {text}")
    return seconds


def _check_loop(task: Stream) -> None:
    if task.arrivals not in ARRIVALS:
        close = did_you_mean(task.arrivals, ARRIVALS)
        raise _bad(
            "arrivals",
            f"arrivals must be {', '.join(ARRIVALS)}, not '{task.arrivals}'",
            f"{close + ' ' if close else ''}constant and poisson need rate (or rates); trace needs trace.",
        )
    if task.rate < 0:
        raise _bad("rate", f"rate must be positive frames per second, not {task.rate:g}")
    if task.rates and (task.rate > 0 or min(task.rates) <= 0):
        raise _bad("rates", "rates sweeps the offered load: positive rates, and no rate beside them")
    timed = task.rate > 0 or bool(task.rates)
    if task.arrivals == "poisson" and not timed:
        raise _bad("arrivals", "arrivals: poisson needs rate (or rates) frames per second", "E.g. rate: 10.")
    if (timed or task.arrivals == "trace") and task.inflight != 1:
        raise _bad(
            "inflight",
            "give rate, rates or a trace (frames arrive open loop) or inflight (closed loop), not both",
        )
    if task.drop is not None and not (timed or task.arrivals == "trace"):
        raise _bad(
            "drop",
            "drop bounds the queue of an open loop; a closed loop (inflight) drops nothing",
            "Give rate, rates or arrivals: trace, or leave drop out.",
        )


def _check_trace(task: Stream) -> None:
    if task.arrivals != "trace":
        if task.trace is not None:
            raise _bad("trace", "trace gives arrival times, used only with arrivals: trace")
        return
    if task.trace is None:
        raise _bad(
            "trace",
            "arrivals: trace needs trace: the arrival times",
            "Give seconds from the stream's start, trace: [0, 0.033, 0.07], or a file, trace: frames.csv.",
        )
    if task.rate > 0 or task.rates:
        raise _bad("rate" if task.rate > 0 else "rates", "a trace gives the arrival times: no rate beside it")
    if isinstance(task.trace, list):
        problem = trace_problem(task.trace)
        if problem is not None:
            raise _bad("trace", problem[1] if problem[0] < 0 else f"trace[{problem[0]}]: {problem[1]}")


def trace_problem(times: list[float]) -> tuple[int, str] | None:
    """``(index, why)`` of the first arrival time a trace cannot have; ``(-1, why)`` for the whole."""
    if not times:
        return -1, "a trace needs at least one arrival time"
    for i, t in enumerate(times):
        if not t >= 0 or t == float("inf"):
            return i, f"{t!r} is no time: seconds from the stream's start, 0 or more"
        if i and t < times[i - 1]:
            return i, f"{t:g} s comes before {times[i - 1]:g} s, the time before it: a trace goes forward"
    return None


def _check_split(task: Stream) -> None:
    if isinstance(task.split, str) and task.split != PLANNED:
        close = did_you_mean(task.split, [PLANNED])
        raise _bad(
            "split",
            f"split '{task.split}' is neither a split point nor auto",
            f"{close + ' ' if close else ''}Write split: auto (planned for frames/s) or a split point.",
        )
    given = {"split": task.split != -1, "splits": bool(task.splits), "cuts": task.cuts is not None}
    named = [name for name, on in given.items() if on]
    if len(named) > 1:
        raise _bad(named[1], f"give one of split, splits and cuts, not {' and '.join(named)}")
    if task.bandwidth is not None and task.split != PLANNED:
        raise _bad("bandwidth", "bandwidth is used only to plan split: auto")
    for text in [task.bandwidth] if isinstance(task.bandwidth, str) else task.bandwidth or []:
        try:
            parse_rate(text)
        except ValueError as exc:
            raise _bad("bandwidth", str(exc)) from None


def drop_policy(task: Stream) -> DropPolicy | None:
    """The queue bound ``drop`` gives (None: the default)."""
    if task.drop is None:
        return None
    for key in task.drop:
        if key not in DROP_KEYS:
            close = did_you_mean(key, DROP_KEYS)
            raise _bad(
                f"drop.{key}",
                f"drop has no key '{key}'",
                f"{close + ' ' if close else ''}Keys: max_queue, policy, max_inflight.",
            )
    size, policy = task.drop.get("max_queue", DEFAULT_MAX_QUEUE), task.drop.get("policy", "newest")
    if not isinstance(size, int) or size < 1:
        raise _bad("drop.max_queue", f"max_queue must be a whole number of frames, at least 1, not {size!r}")
    if policy not in DROP_POLICIES:
        raise _bad(
            "drop.policy",
            f"policy must be {' or '.join(DROP_POLICIES)}, not {policy!r}",
            "newest drops the arriving frame, oldest the one that has waited longest.",
        )
    past = task.drop.get("max_inflight", BEYOND_HEAD)
    if not isinstance(past, int) or past < 1:
        raise _bad(
            "drop.max_inflight", f"max_inflight must be a whole number of frames, at least 1, not {past!r}"
        )
    return DropPolicy(size, str(policy), past)


def open_loop(task: Stream) -> bool:
    """Frames arrive on a schedule (a rate or a trace), not as earlier ones complete."""
    return task.rate > 0 or bool(task.rates) or task.arrivals == "trace"


def stream_times(task: Stream, rate: float, seed: int) -> Iterator[float] | None:
    """When frames arrive, seconds from the start (None: a closed loop)."""
    if task.arrivals == "trace":
        if not isinstance(task.trace, list):
            raise RunError(f"trace '{task.trace}' reached the head unread: run it through the controller")
        return iter(task.trace)
    return arrival_times(rate, task.arrivals, seed) if rate > 0 else None


def stream_frames(task: Stream, warmup: int) -> int | None:
    """How many frames to run, warm-ups included (None: until the duration ends); a trace's
    frames are its times."""
    if task.count is not None:
        return warmup + task.count
    if task.duration is not None:
        return None
    if isinstance(task.trace, list):
        return len(task.trace)
    return warmup + DEFAULT_COUNT


def stream_duration(task: Stream) -> float | None:
    """Seconds frames arrive for (None: no limit)."""
    return None if task.duration is None else parse_duration(task.duration)


def trace_fps(times: list[float]) -> float:
    """The mean rate a trace offers: its frames over its span (0 for one frame)."""
    span = times[-1] - times[0] if times else 0.0
    return (len(times) - 1) / span if span > 0 else 0.0
