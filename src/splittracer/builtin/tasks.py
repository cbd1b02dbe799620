"""The built-in tasks: what a head, a tail and the planner send each other."""

from __future__ import annotations

from dataclasses import field
from typing import TYPE_CHECKING

from ..plan.online import (
    DEFAULT_THRESHOLD,
    MEASURE,
)
from ..tasks import Task
from .streaming import check_stream

if TYPE_CHECKING:  # tensor fields resolve when first sent: the controller never imports torch
    import torch

PROBE_START_BYTES = 4 << 10


PROBE_MAX_BYTES = 16 << 20


PROBE_TARGET_S = 0.25  # stop growing once one probe takes this long: enough to see the rate


class Sweep(Task):
    """Run every split point (or the listed ones) ``warmup + repeats`` times each.

    ``uplinks`` (``[3g, lte, wifi]`` or rates such as ``10mbit``) repeats the
    whole sweep once per uplink rate, this participant's emulated uplink set
    to each in turn; every inference span carries ``attrs['uplink']``, the
    name as given, so summaries and charts show one sweep per link. The
    participant needs an emulated ``uplink`` in its limits for this.

    ``codecs`` (``[none, fp16, int8]``) repeats every split once per codec of
    the tensors crossing each cut (``jpeg:90`` and the like for the input at
    split 0); inference spans carry ``attrs['codec']``. Empty: the manifest's
    ``options.compression``.

    ``placements`` (two participants) sweeps placements instead of splits:
    each the first device's layers, ``1-5,7`` or a list of indices and names;
    ``top: K`` adds the planner's K placements predicted fastest (the
    controller resolves them from the participants' profiles and links).
    """

    next: list[str]
    splits: list[int] | str = "all"
    cuts: list[list[int]] | None = None
    repeats: int = -1  # -1: the manifest's options.repeats
    warmup: int = -1  # -1: the manifest's options.warmup
    finish: bool = True
    uplinks: list[str] = field(default_factory=list)
    codecs: list[str] = field(default_factory=list)
    placements: list[str | list[int | str]] = field(default_factory=list)
    top: int = 0


class Infer(Task):
    """Run ``count`` inferences at one split point (or one chain of cuts), or at planned ones.

    ``split`` (or ``cuts``) ``auto`` plans once before the first inference;
    ``adaptive`` re-plans when a hop's measured bandwidth moves by more than
    ``threshold`` (relative). ``bandwidth`` (one rate, or one per hop) serves
    hops whose sender has no emulated uplink; hops with neither are measured.
    ``uplink_trace`` changes this participant's emulated uplink from the given
    inference on: ``[[10, 3g], [20, wifi]]``. ``objective`` is what planned
    cuts minimise: ``latency``, or ``energy``, the first participant's
    (its profile's per-layer energy plus ``tx_power`` x transfer time; the
    radio defaults to its uplink's name when that is 3g, lte or wifi).
    ``planner`` is filled by the controller from the participants' profiles.
    ``codec`` encodes the tensors crossing the cuts: one name for every hop or
    one per hop (``[int8, fp16]``); None: the manifest's ``options.compression``.
    ``placement`` (two participants) runs the first device's layers it names
    (``1-5,7``) and the rest on the second; ``dag: true`` with ``split: auto``
    runs the planner's minimum-cut placement. ``max_accuracy_drop`` (``1%``)
    with ``split: auto`` plans the first hop's codec too, from what the run
    ``accuracy_from`` (an id, or ``latest``) measured of each codec.
    """

    next: list[str]
    split: int | str = -1
    cuts: list[int] | str | None = None
    count: int = 1
    finish: bool = False
    bandwidth: str | list[str] | None = None
    threshold: float = DEFAULT_THRESHOLD
    uplink_trace: list[tuple[int, str]] = field(default_factory=list)
    objective: str = "latency"
    tx_power: str | None = None
    planner: bytes = b""
    codec: str | list[str] | None = None
    placement: str | list[int | str] | None = None
    dag: bool = False
    max_accuracy_drop: str | float | None = None
    accuracy_from: str | None = None


class Stream(Task):
    """Frames through the pipeline at one ``split`` (or ``cuts``), pipelined: the head computes
    frame n+1 while frame n is on the link or at the server.

    Closed loop (default): ``inflight`` frames in the system at once. Open
    loop: ``rate`` frames per second arriving ``constant`` or ``poisson``, or
    at the timestamps of ``trace`` (``arrivals: trace``: seconds from the
    stream's start, a list or a workspace file with one a line); ``rates``
    runs one such stream per rate, in turn. ``splits`` runs one stream per
    split point in turn (with ``rates``: every rate at every split).
    ``split: auto`` streams at the split planned for the most frames per
    second (the controller fills ``planned`` from the participants'
    profiles). ``count`` measured frames follow ``warmup`` ones (-1:
    ``options.warmup``), or frames arrive until ``duration`` has passed.
    Frames waiting for the head are bounded by ``drop``
    (``{max_queue: 8, policy: newest|oldest}``: drop the arriving frame or
    the oldest waiting one; default 64, newest). ``deadline`` (e.g.
    ``100ms``) is kept on every frame: results count the late ones.
    """

    next: list[str]
    split: int | str = -1
    splits: list[int] = field(default_factory=list)
    cuts: list[int] | None = None
    count: int | None = None
    duration: str | None = None
    inflight: int = 1
    rate: float = 0.0
    rates: list[float] = field(default_factory=list)
    arrivals: str = "constant"
    trace: list[float] | str | None = None
    deadline: str | None = None
    drop: dict[str, int | str] | None = None
    bandwidth: str | list[str] | None = None
    warmup: int = -1
    finish: bool = True
    planned: dict[str, float | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_stream(self)


class RunLayers(Task, priority=5):
    """Run layers ``start+1..`` on ``tensors``; ``cuts[i]`` ends hop ``i`` of ``route``,
    whose tensors travel encoded by ``codecs[i]`` (empty: the run's ``options.compression``)."""

    start: int
    tensors: list[torch.Tensor]
    route: list[str] = field(default_factory=list)
    cuts: list[int] = field(default_factory=list)
    codecs: list[str] = field(default_factory=list)


class Result(Task, priority=5):
    """The model's output (its tensor leaves), sent back to the head.

    ``busy_s`` is how long the answering participant's handler took (its own
    clock), so the caller can tell the network's share of its call;
    ``hops_s`` the network seconds of the later hops, measured the same way.
    """

    outputs: list[torch.Tensor]
    busy_s: float = 0.0
    hops_s: list[float] = field(default_factory=list)


class LinkProbe(Task, priority=5):
    """Bytes sent only to time a link."""

    payload: torch.Tensor


class MeasureLink(Task, priority=5):
    """Measure the receiver's link to ``peer``: its rate (unless ``bandwidth_bps`` gives it)
    and the fixed cost of one message beyond the link's ``latency_s``."""

    peer: str
    bandwidth_bps: float = MEASURE
    latency_s: float = 0.0


class LinkReport(Task, priority=5):
    """The answer to :class:`MeasureLink`."""

    bandwidth_bps: float
    overhead_s: float
    samples: int


class Finish(Task):
    """End the run."""
