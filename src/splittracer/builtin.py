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
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import field

import torch
from torch.utils import _pytree as pytree

from .errors import RunError
from .metrics.accuracy import PREDICTION, predict, reference_outputs
from .plan.online import (
    DEFAULT_THRESHOLD,
    MEASURE,
    MODES,
    AdaptivePlanner,
    LinkFit,
    PlannerInputs,
    decode_inputs,
    fit_link,
)
from .roles import Context, Role, handles
from .tasks import Task
from .units import parse_rate
from .wire.codecs import CODECS, codec_problem

__all__ = [
    "Finish",
    "Infer",
    "LinkProbe",
    "LinkReport",
    "MeasureLink",
    "Result",
    "RunLayers",
    "SplitHead",
    "SplitTail",
    "Sweep",
    "planned_mode",
]

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
    """

    next: list[str]
    splits: list[int] | str = "all"
    cuts: list[list[int]] | None = None
    repeats: int = -1  # -1: the manifest's options.repeats
    warmup: int = -1  # -1: the manifest's options.warmup
    finish: bool = True
    uplinks: list[str] = field(default_factory=list)
    codecs: list[str] = field(default_factory=list)


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


class SplitHead(Role):
    """The first device: runs the head of every inference and drives the sweep.

    Inference ids run on across the playbook's tasks (a second ``Infer``
    starts where the first ended), so every inference of a run has its own.
    """

    _issued = 0  # inference ids handed out so far in this run

    def _reserve(self, count: int) -> int:
        """The first of ``count`` new inference ids."""
        first = self._issued
        self._issued = first + count
        return first

    @handles(Sweep)
    def sweep(self, task: Sweep, ctx: Context) -> None:
        points = _sweep_points(task, ctx.num_layers, len(task.next))
        repeats = task.repeats if task.repeats >= 0 else ctx.options.repeats
        warmup = task.warmup if task.warmup >= 0 else ctx.options.warmup
        per_point = warmup + repeats
        links: list[str | None] = list(task.uplinks) or [None]
        codecs = list(task.codecs) or [ctx.options.compression]
        total, done = len(links) * len(codecs) * len(points) * per_point, 0
        first = self._reserve(total)
        for link in links:
            attrs = _set_sweep_uplink(ctx, link, first + done)
            for codec, cuts in itertools.product(codecs, points):
                hops = [codec] * len(task.next)
                for r in range(per_point):
                    # Input r - warmup: every split and codec sees the same inputs, compared pairwise.
                    sample = (r - warmup) % per_point
                    _infer(
                        ctx,
                        first + done,
                        cuts,
                        task.next,
                        warmup=r < warmup,
                        attrs=attrs,
                        codecs=hops,
                        sample=sample,
                    )
                    done += 1
                    ctx.progress(done, total, _sweep_label(cuts, link, codec if task.codecs else None))
        if task.finish:
            ctx.finish()

    @handles(Infer)
    def infer(self, task: Infer, ctx: Context) -> None:
        mode = planned_mode(task)
        first = self._reserve(task.count)
        if mode is not None:
            _infer_planned(task, ctx, mode, first)
        else:
            cuts = _fixed_cuts(task, ctx.num_layers)
            codecs = infer_codecs(task, len(task.next))
            for i in range(task.count):
                _apply_uplink_trace(task, ctx, i)
                _infer(ctx, first + i, cuts, task.next, warmup=False, codecs=codecs)
                ctx.progress(i + 1, task.count, f"split {cuts[0]}")
        if task.finish:
            ctx.finish()

    @handles(Finish)
    def finish(self, task: Finish, ctx: Context) -> None:
        ctx.finish()


class SplitTail(Role):
    """Any later device: runs its layers, forwards or answers."""

    @handles(RunLayers)
    def run(self, task: RunLayers, ctx: Context) -> Task:
        started = time.perf_counter()
        end = task.cuts[0] if task.route else ctx.num_layers
        out = ctx.run_layers(task.start, end, *task.tensors, final=not task.route)
        if task.route:
            onward = RunLayers(
                start=end, tensors=list(out), route=task.route[1:], cuts=task.cuts[1:], codecs=task.codecs[1:]
            )
            called = time.perf_counter()
            # The last hop's Result travels back hop by hop.
            reply = ctx.call(task.route[0], onward, codec=task.codecs[0] if task.codecs else None)
            if not isinstance(reply, Result):
                return reply
            hop_s = time.perf_counter() - called - reply.busy_s
            busy = time.perf_counter() - started
            return Result(outputs=reply.outputs, busy_s=busy, hops_s=[hop_s, *reply.hops_s])
        outputs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        return Result(outputs=outputs, busy_s=time.perf_counter() - started)

    @handles(LinkProbe)
    def probed(self, task: LinkProbe, ctx: Context) -> None:
        """Nothing to do: the sender timed the delivery."""

    @handles(MeasureLink)
    def measure(self, task: MeasureLink, ctx: Context) -> LinkReport:
        fit = probe_link(ctx, task.peer, task.bandwidth_bps, task.latency_s)
        return LinkReport(bandwidth_bps=fit.bandwidth_bps, overhead_s=fit.overhead_s, samples=fit.samples)

    @handles(Finish)
    def finish(self, task: Finish, ctx: Context) -> None:
        ctx.finish()


def _set_sweep_uplink(ctx: Context, link: str | None, first: int) -> dict[str, str | int | float | bool]:
    """Set the uplink of one pass of a sweep; the attrs its inference spans carry."""
    if link is None:
        return {}
    try:
        bps = parse_rate(link)
    except ValueError as exc:
        raise RunError(f"Sweep.uplinks: {exc}") from None
    ctx.set_uplink(bps)
    ctx.record("emulated_uplink_bps", _finite(bps), inference=first, uplink=link)
    return {"uplink": link}


def _sweep_label(cuts: list[int], link: str | None, codec: str | None = None) -> str:
    where = f"split {cuts[0]}" if len(cuts) == 1 else f"cuts {cuts}"
    where = where if codec is None else f"{where} {codec}"
    return where if link is None else f"{link}: {where}"


def _infer(
    ctx: Context,
    index: int,
    cuts: list[int],
    route: list[str],
    *,
    warmup: bool,
    attrs: dict[str, str | int | float | bool] | None = None,
    codecs: list[str] | None = None,
    sample: int | None = None,
) -> tuple[float, Result]:
    """One inference on input ``sample`` (default: ``index``); the seconds its call took and
    the Result. ``codecs``: one per hop."""
    sample = index if sample is None else sample
    x = ctx.example(sample)  # made before the clock starts: inputs exist before inference
    hops = codecs or [ctx.options.compression] * len(route)
    tagged = {**(attrs or {}), "codec": _codec_label(hops)}
    # The uncompressed whole model on the same input, before the clock starts (metrics/accuracy.py).
    reference = None if warmup else reference_outputs(ctx.model.model, x, ctx.model.device)
    with ctx.inference(index, split=cuts[0], warmup=warmup, attrs=tagged):
        sent = ctx.run_layers(0, cuts[0], x, final=False)
        task = RunLayers(start=cuts[0], tensors=list(sent), route=route[1:], cuts=cuts[1:], codecs=hops[1:])
        called = time.perf_counter()
        reply = ctx.call(route[0], task, codec=hops[0])
        took = time.perf_counter() - called
    if not isinstance(reply, Result):
        raise RunError(f"expected a Result from {route[-1]}, got {type(reply).__name__}")
    if reference is not None:  # after the clock stopped: comparing adds nothing to the inference
        found = predict(reply.outputs, reference, ctx.label(sample))
        ctx.record_for(index, cuts[0], PREDICTION, float(found.top1), codec=tagged["codec"], **found.attrs())
    return took, reply


def _codec_label(hops: list[str]) -> str:
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


def _fixed_cuts(task: Infer, num_layers: int) -> list[int]:
    if isinstance(task.cuts, list):
        cuts = task.cuts
    else:
        split = task.split if isinstance(task.split, int) else -1
        cuts = [split if split >= 0 else num_layers]
    _check_cuts(cuts, num_layers, len(task.next))
    return cuts


# --- planned cuts ----------------------------------------------------------------------------


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


def _infer_planned(task: Infer, ctx: Context, mode: str, first: int = 0) -> None:
    inputs = decode_inputs(task.planner)
    if inputs.hops != len(task.next):
        raise RunError(f"the planner's inputs describe {inputs.hops} hop(s) but next names {len(task.next)}")
    points = ctx.model.points
    fits = _start_links(ctx, inputs, task.next, adaptive=mode == "adaptive")
    planner = AdaptivePlanner(
        inputs, [p.bytes for p in points], [p.allowed for p in points], [f.bandwidth_bps for f in fits]
    )
    _record_decision(ctx, planner, mode, "start", first)
    codecs = infer_codecs(task, len(task.next))
    for i in range(task.count):
        _apply_uplink_trace(task, ctx, i)
        took, result = _infer(ctx, first + i, planner.cuts, task.next, warmup=False, codecs=codecs)
        if mode == "adaptive":
            _observe(ctx, planner, fits, [took - result.busy_s, *result.hops_s], first + i)
            if planner.replan() is not None:
                _record_decision(ctx, planner, mode, "bandwidth", first + i + 1)
        ctx.progress(i + 1, task.count, f"{mode} split {planner.cuts[0]}")


def _start_links(ctx: Context, inputs: PlannerInputs, route: list[str], *, adaptive: bool) -> list[LinkFit]:
    """Every hop's rate (measured where none was given) and, for ``adaptive``, its message cost."""
    fits = []
    senders = [ctx.participant, *route[:-1]]
    for hop, (sender, receiver) in enumerate(zip(senders, route)):
        known, latency = inputs.bandwidths_bps[hop], inputs.latencies_s[hop]
        if known != MEASURE and not adaptive:
            fit = LinkFit(known, 0.0, 0)
        elif hop == 0:
            fit = probe_link(ctx, receiver, known, latency)
        else:
            ask = MeasureLink(peer=receiver, bandwidth_bps=known, latency_s=latency)
            report = ctx.call(sender, ask)
            if not isinstance(report, LinkReport):
                raise RunError(f"expected a LinkReport from {sender}, got {type(report).__name__}")
            fit = LinkFit(report.bandwidth_bps, report.overhead_s, report.samples)
        source = inputs.sources[hop] if known != MEASURE else "measured"
        ctx.record(
            "link_bandwidth_bps",
            _finite(fit.bandwidth_bps),
            hop=hop,
            sender=sender,
            receiver=receiver,
            source=source,
            overhead_s=fit.overhead_s,
            probes=fit.samples,
        )
        fits.append(fit)
    return fits


def probe_link(ctx: Context, peer: str, known_bps: float, latency_s: float) -> LinkFit:
    """Time :class:`LinkProbe` deliveries to ``peer``: the link's rate (unless ``known_bps``
    gives it) and the cost of one message beyond ``latency_s``.

    Probes grow 4x from 4 KiB until one takes :data:`PROBE_TARGET_S` (or
    reaches 16 MiB), each size sent twice and the faster kept; the rate comes
    from :func:`~splittracer.plan.online.fit_link`.
    """
    if known_bps != MEASURE:
        nbytes = PROBE_START_BYTES
        took = min(_timed_probe(ctx, peer, nbytes) for _ in range(3))
        return LinkFit(known_bps, max(took - latency_s - 8 * nbytes / known_bps, 0.0), 3)
    samples: list[tuple[int, float]] = []
    nbytes = PROBE_START_BYTES
    while True:
        took = _timed_probe(ctx, peer, nbytes)
        if took < PROBE_TARGET_S:
            took = min(took, _timed_probe(ctx, peer, nbytes))
        samples.append((nbytes, took))
        if len(samples) >= 2 and (took >= PROBE_TARGET_S or nbytes >= PROBE_MAX_BYTES):
            break
        nbytes *= 4
    fit = fit_link(samples)
    return LinkFit(fit.bandwidth_bps, max(fit.overhead_s - latency_s, 0.0), fit.samples)


def _timed_probe(ctx: Context, peer: str, nbytes: int) -> float:
    # Random bytes: a compressing codec must not make the link look faster than it is.
    payload = torch.randint(
        0, 256, (nbytes,), dtype=torch.uint8, generator=torch.Generator().manual_seed(nbytes)
    )
    started = time.perf_counter()
    ctx.send(peer, LinkProbe(payload=payload))
    return time.perf_counter() - started


def _observe(
    ctx: Context, planner: AdaptivePlanner, fits: list[LinkFit], network_s: list[float], index: int
) -> None:
    """Fold one inference's transfers into the bandwidth estimates.

    A hop's network time (the caller's wait minus the callee's handler) holds
    the forward transfer, the link latency, the fixed cost of a message and the
    output's trip back; all but the transfer are known and taken off.
    """
    inputs = planner.inputs
    split_bytes = [p.bytes for p in ctx.model.points]
    output = split_bytes[-1]
    for hop, (cut, seconds) in enumerate(zip(planner.cuts, network_s)):
        back = inputs.reply_links()[hop].transfer_ms(output) / 1000
        wire = seconds - inputs.latencies_s[hop] - fits[hop].overhead_s - back
        planner.observe(hop, split_bytes[cut], wire)
        ctx.record("bandwidth_estimate_bps", _finite(planner.estimate_bps(hop)), hop=hop, inference=index)


def _record_decision(ctx: Context, planner: AdaptivePlanner, mode: str, reason: str, first: int) -> None:
    """A ``split_plan`` metric: the first cut, from inference ``first`` on, and why."""
    best = planner.best
    ctx.record(
        "split_plan",
        float(best.cuts[0]),
        mode=mode,
        reason=reason,
        inference=first,
        cuts=",".join(map(str, best.cuts)),
        bandwidth_bps=_finite(planner.planned_bps[0]),
        bandwidths_bps=",".join(f"{b:.6g}" for b in planner.planned_bps),
        predicted_ms=best.total_ms,
        objective=planner.inputs.objective,
        **({"energy_mj": best.energy_mj} if best.energy_mj is not None else {}),
    )


def _apply_uplink_trace(task: Infer, ctx: Context, index: int) -> None:
    for at, rate in task.uplink_trace:
        if at == index:
            bps = parse_rate(rate)
            ctx.set_uplink(bps)
            ctx.record("emulated_uplink_bps", _finite(bps), inference=index)


def _finite(bps: float) -> float:
    """Metrics hold finite numbers: 0 stands for no limit."""
    return bps if math.isfinite(bps) else 0.0


def split_problem(task: Task, num_layers: int) -> tuple[str, str] | None:
    """Why a built-in task's split points cannot run on a model of ``num_layers`` layers.

    ``(field, reason)`` for a Sweep or an Infer with given splits or cuts that
    the run would refuse (a split outside ``0..num_layers``, cuts out of order
    or not one per hop); None when they run, or when the task plans its own.
    The controller asks before it starts anything; the head applies the same
    rules when the task arrives.
    """
    try:
        if isinstance(task, Sweep):
            _sweep_points(task, num_layers, len(task.next))
        elif isinstance(task, Infer) and not _plans_or_misnames(task):
            _fixed_cuts(task, num_layers)
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


def _split_field(task: Task) -> str:
    if isinstance(task, Sweep):
        return "cuts" if task.cuts is not None else "splits"
    return "cuts" if isinstance(task, Infer) and isinstance(task.cuts, list) else "split"


def _plans_or_misnames(task: Infer) -> bool:
    """Planned cuts, or a word that is no mode: the planner's own check reports that, located."""
    try:
        return planned_mode(task) is not None
    except RunError:
        return True


def _sweep_points(task: Sweep, num_layers: int, hops: int) -> list[list[int]]:
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
