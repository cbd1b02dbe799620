"""Built-in tasks and roles for split inference: Neurosurgeon with no user code.

A :class:`SplitHead` ("phone") handles :class:`Sweep`: for every split point,
``warmup + repeats`` inferences, each one run as *head layers here → send the
live tensors → the rest on the next participants*. Every participant after
it plays :class:`SplitTail`: it runs its layers, forwards to the next hop if
there is one, and the last hop answers the head with a :class:`Result`. The
head waits for that answer before starting the next inference, so each
inference is measured alone, as in the paper.

With three or more participants (phone → edge → cloud) a sweep point is a
list of cuts, one per hop: ``cuts: [[3, 10], [5, 15]]``.

:class:`Infer` may also ask for planned cuts, ``split: auto`` (planned once,
before the first inference) or ``split: adaptive`` (re-planned when the
measured bandwidth moves): the head measures what it must (:class:`LinkProbe`
messages of growing size) and plans with :mod:`splittracer.plan.online`.
Every plan is recorded as a ``split_plan`` metric.

A placement that is not a prefix cut (any dependency-closed set of layers on
the first device, :mod:`splittracer.placed`) runs the same way with two
participants: ``placement: 1-5,7`` on :class:`Infer`, ``placements: [...]`` on
:class:`Sweep`, or ``split: auto`` with ``dag: true`` for the planner's
minimum-cut placement.

Modules: ``tasks`` (the task types), ``points`` (the split points a task
names, checked), ``running`` (one inference along a route, link probes, the
planner's decisions) and ``roles`` (:class:`SplitHead`, :class:`SplitTail`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports
from .points import planned_mode, split_problem
from .tasks import (
    PROBE_MAX_BYTES,
    PROBE_START_BYTES,
    PROBE_TARGET_S,
    Finish,
    Infer,
    LinkProbe,
    LinkReport,
    MeasureLink,
    Result,
    RunLayers,
    Stream,
    Sweep,
)

if TYPE_CHECKING:
    from ..placed import RunPlaced
    from .roles import SplitHead, SplitTail
    from .running import probe_link

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("RunPlaced",), "..placed"),
        **dict.fromkeys(("SplitHead", "SplitTail"), ".roles"),
        **dict.fromkeys(("probe_link",), ".running"),
    },
)
__all__ = [
    "PROBE_MAX_BYTES",
    "PROBE_START_BYTES",
    "PROBE_TARGET_S",
    "Finish",
    "Infer",
    "LinkProbe",
    "LinkReport",
    "MeasureLink",
    "Result",
    "RunLayers",
    "RunPlaced",
    "SplitHead",
    "SplitTail",
    "Stream",
    "Sweep",
    "planned_mode",
    "probe_link",
    "split_problem",
]
