"""Which split points a built-in task names, checked against the model before and when it runs."""

from __future__ import annotations

from ..errors import RunError
from ..plan.online import MODES
from ..tasks import Task
from ..wire.codecs import CODECS, codec_problem
from .tasks import Infer, Stream, Sweep


def fixed_cuts(task: Infer | Stream, num_layers: int) -> list[int]:
    if isinstance(task.cuts, list):
        cuts = task.cuts
    else:
        split = task.split if isinstance(task.split, int) else -1
        cuts = [split if split >= 0 else num_layers]
    _check_cuts(cuts, num_layers, len(task.next))
    return cuts


def stream_points(task: Stream, num_layers: int) -> list[list[int]]:
    """The cuts of each stream a Stream runs: one per split of ``splits``, else its own."""
    if isinstance(task.split, str):
        raise RunError(f"Stream asks for split: {task.split}, which the controller plans before the run")
    if not task.splits:
        return [fixed_cuts(task, num_layers)]
    points = [[k] for k in task.splits]
    for cuts in points:
        _check_cuts(cuts, num_layers, len(task.next))
    return points


def planned_mode(task: Infer) -> str | None:
    """``auto`` or ``adaptive`` when ``task`` asks for planned cuts; None for given ones."""
    word = task.split if isinstance(task.split, str) else task.cuts if isinstance(task.cuts, str) else None
    if word is None:
        return None
    if word not in MODES:
        raise RunError(f"Infer asks for cuts '{word}': expected split points, {' or '.join(MODES)}")
    if isinstance(task.split, str) and task.cuts is not None:
        raise RunError(f"Infer gives both split: {task.split} and cuts; give one of them")
    return word


def split_problem(task: Task, num_layers: int) -> tuple[str, str] | None:
    """Why a built-in task's split points cannot run on a model of ``num_layers`` layers.

    ``(field, reason)`` for a Sweep or an Infer with given splits or cuts that
    the run would refuse (a split outside ``0..num_layers``, cuts out of order
    or not one per hop); None when they run, or when the task plans its own.
    The controller asks before it starts anything; the head applies the same
    rules when the task arrives.
    """
    try:
        if isinstance(task, Sweep) and not (task.placements or task.top):  # those: the controller's
            sweep_points(task, num_layers, len(task.next))
        elif isinstance(task, Infer) and not _plans_or_misnames(task):
            fixed_cuts(task, num_layers)
        elif isinstance(task, Stream) and not isinstance(task.split, str):
            stream_points(task, num_layers)
    except RunError as exc:
        return _split_field(task), exc.message
    return _codec_problem(task)


def _codec_problem(task: Task) -> tuple[str, str] | None:
    try:
        if isinstance(task, Sweep):
            _check_codecs(task.codecs)
        elif isinstance(task, Infer):
            infer_codecs(task, len(task.next))
    except RunError as exc:
        return ("codecs" if isinstance(task, Sweep) else "codec"), exc.message
    return None


def codec_label(hops: list[str]) -> str:
    """One name when every hop uses the same codec, else the hops' names joined by ``/``."""
    return hops[0] if len(set(hops)) == 1 else "/".join(hops)


def infer_codecs(task: Infer, hops: int) -> list[str] | None:
    """The codec of each hop an Infer asks for; None: the run's ``options.compression``."""
    if task.codec is None:
        return None
    codecs = [task.codec] * hops if isinstance(task.codec, str) else list(task.codec)
    if len(codecs) != hops:
        raise RunError(f"codec names {len(codecs)} codec(s) but the route has {hops} hop(s)")
    _check_codecs(codecs)
    return codecs


def _check_codecs(names: list[str]) -> None:
    for name in names:
        problem = codec_problem(name)
        if problem is not None:
            raise RunError(f"{problem}; known codecs: {', '.join(CODECS)} (jpeg:Q and webp:Q take a quality)")


def _split_field(task: Task) -> str:
    if isinstance(task, Sweep):
        return "cuts" if task.cuts is not None else "splits"
    if isinstance(task, Stream) and task.splits:
        return "splits"
    return "cuts" if isinstance(task, Infer | Stream) and isinstance(task.cuts, list) else "split"


def _plans_or_misnames(task: Infer) -> bool:
    """Planned cuts, or a word that is no mode: the planner's own check reports that, located."""
    try:
        return planned_mode(task) is not None
    except RunError:
        return True


def sweep_points(task: Sweep, num_layers: int, hops: int) -> list[list[int]]:
    if task.cuts is not None:
        points = task.cuts
    elif task.splits == "all":
        points = [[k] for k in range(num_layers + 1)]
    elif isinstance(task.splits, list):
        points = [[k] for k in task.splits]
    else:
        raise RunError(f"Sweep.splits must be 'all' or a list of split points, not {task.splits!r}")
    for cuts in points:
        _check_cuts(cuts, num_layers, hops)
    return points


def _check_cuts(cuts: list[int], num_layers: int, hops: int) -> None:
    if len(cuts) != hops:
        raise RunError(f"cuts {cuts} name {len(cuts)} cut(s) but the route has {hops} hop(s)")
    outside = [k for k in cuts if not 0 <= k <= num_layers]
    if outside:
        raise RunError(f"split {outside[0]} is not a split point: the model has 0..{num_layers}")
    if cuts != sorted(cuts):
        raise RunError(f"cuts {cuts} go backwards: each hop's cut must be at or after the one before")
