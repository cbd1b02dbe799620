"""One inference along a route (given cuts, a placement, or cuts the planner chose), link
probes, and the planner's decisions."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from ..errors import RunError
from ..metrics.accuracy import PREDICTION, predict, reference_outputs
from ..pacing import stream_attrs
from ..placed import Placed, call_placed, plan_placement
from ..plan.online import (
    MEASURE,
    AdaptivePlanner,
    LinkFit,
    PlannerInputs,
    decode_inputs,
    fit_link,
)
from ..roles import Context
from ..units import parse_duration, parse_rate
from .points import codec_label, infer_codecs
from .streaming import open_loop, trace_fps
from .tasks import (
    PROBE_MAX_BYTES,
    PROBE_START_BYTES,
    PROBE_TARGET_S,
    Infer,
    LinkProbe,
    LinkReport,
    MeasureLink,
    Result,
    RunLayers,
    Stream,
)

if TYPE_CHECKING:  # the controller imports the built-in roles to check a manifest: no torch there
    import torch


def stream_rest(ctx: Context, task: Stream, cuts: list[int], sent: tuple[torch.Tensor, ...]) -> None:
    """A frame after the head's layers: the rest along the route, until its answer is back."""
    onward = RunLayers(start=cuts[0], tensors=list(sent), route=task.next[1:], cuts=cuts[1:])
    reply = ctx.call(task.next[0], onward)
    if not isinstance(reply, Result):
        raise RunError(f"expected a Result from {task.next[-1]}, got {type(reply).__name__}")


def stream_span_attrs(
    task: Stream, first: int, rate: float, cuts: list[int]
) -> dict[str, str | int | float | bool]:
    """What every frame's ``inference`` span of one stream says of it (the results read them)."""
    deadline_s = parse_duration(task.deadline) if task.deadline is not None else None
    offered = trace_fps(task.trace) if isinstance(task.trace, list) else rate
    attrs = stream_attrs(first, offered, task.arrivals if open_loop(task) else "", task.inflight, deadline_s)
    if len(cuts) > 1:
        attrs["cuts"] = ",".join(map(str, cuts))
    if task.duration is not None:
        attrs["duration_s"] = parse_duration(task.duration)
    return attrs


def record_stream_plan(ctx: Context, task: Stream, first: int) -> None:
    """A ``split_plan`` metric for a Stream's ``split: auto``: the split the controller chose, why."""
    plan = task.planned
    ctx.record(
        "split_plan",
        float(task.split) if isinstance(task.split, int) else -1.0,
        mode="auto",
        inference=first,
        **plan,
    )


def set_sweep_uplink(ctx: Context, link: str | None, first: int) -> dict[str, str | int | float | bool]:
    """Set the uplink of one pass of a sweep; the attrs its inference spans carry."""
    if link is None:
        return {}
    try:
        bps = parse_rate(link)
    except ValueError as exc:
        raise RunError(f"Sweep.uplinks: {exc}") from None
    ctx.set_uplink(bps)
    ctx.record("emulated_uplink_bps", finite(bps), inference=first, uplink=link)
    return {"uplink": link}


def sweep_label(cuts: list[int] | Placed, link: str | None, codec: str | None = None) -> str:
    """What a sweep's progress shows for one point: its split or placement, codec and link."""
    if isinstance(cuts, Placed):
        where = f"placement {cuts.label}"
    else:
        where = f"split {cuts[0]}" if len(cuts) == 1 else f"cuts {cuts}"
    where = where if codec is None else f"{where} {codec}"
    return where if link is None else f"{link}: {where}"


def infer_once(
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
    tagged = {**(attrs or {}), "codec": codec_label(hops)}
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


def infer_planned(task: Infer, ctx: Context, mode: str, first: int = 0) -> None:
    inputs = decode_inputs(task.planner)
    if inputs.hops != len(task.next):
        raise RunError(f"the planner's inputs describe {inputs.hops} hop(s) but next names {len(task.next)}")
    points = ctx.model.points
    fits = _start_links(ctx, inputs, task.next, adaptive=mode == "adaptive")
    if task.dag:
        _infer_dag(task, ctx, inputs, fits[0].bandwidth_bps, first)
        return
    planner = AdaptivePlanner(
        inputs, [p.bytes for p in points], [p.allowed for p in points], [f.bandwidth_bps for f in fits]
    )
    _record_decision(ctx, planner, mode, "start", first)
    codecs = infer_codecs(task, len(task.next))
    for i in range(task.count):
        apply_uplink_trace(task, ctx, i)
        hops = _planned_codecs(ctx, planner, codecs, len(task.next))
        took, result = infer_once(ctx, first + i, planner.cuts, task.next, warmup=False, codecs=hops)
        if mode == "adaptive":
            _observe(ctx, planner, fits, [took - result.busy_s, *result.hops_s], first + i)
            if planner.replan() is not None:
                _record_decision(ctx, planner, mode, "bandwidth", first + i + 1)
        ctx.progress(i + 1, task.count, f"{mode} split {planner.cuts[0]}")


def _planned_codecs(
    ctx: Context, planner: AdaptivePlanner, given: list[str] | None, hops: int
) -> list[str] | None:
    """The hops' codecs: the planner's for the first hop when it plans one, else as given."""
    if planner.codec is None:
        return given
    rest = given[1:] if given else [ctx.options.compression] * (hops - 1)
    return [planner.codec, *rest]


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
            finite(fit.bandwidth_bps),
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
    import torch

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
        ctx.record("bandwidth_estimate_bps", finite(planner.estimate_bps(hop)), hop=hop, inference=index)


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
        bandwidth_bps=finite(planner.planned_bps[0]),
        bandwidths_bps=",".join(f"{b:.6g}" for b in planner.planned_bps),
        predicted_ms=best.total_ms,
        objective=planner.inputs.objective,
        **({"energy_mj": best.energy_mj} if best.energy_mj is not None else {}),
        **({"codec": planner.codec, "bytes": best.bytes[0]} if planner.codec is not None else {}),
    )


def apply_uplink_trace(task: Infer, ctx: Context, index: int) -> None:
    for at, rate in task.uplink_trace:
        if at == index:
            bps = parse_rate(rate)
            ctx.set_uplink(bps)
            ctx.record("emulated_uplink_bps", finite(bps), inference=index)


def finite(bps: float) -> float:
    """Metrics hold finite numbers: 0 stands for no limit."""
    return bps if math.isfinite(bps) else 0.0


def infer_point(
    ctx: Context,
    index: int,
    point: list[int] | Placed,
    route: list[str],
    *,
    warmup: bool,
    attrs: dict[str, str | int | float | bool] | None = None,
    codecs: list[str] | None = None,
    sample: int | None = None,
) -> None:
    """One inference at a sweep's point: a chain of cuts, or a placement (sent as the run's
    ``options.compression``: a placement's tensors take no per-hop codec)."""
    if isinstance(point, Placed):
        call_placed(ctx, index, point, route, Result, warmup=warmup, attrs=attrs)
    else:
        infer_once(ctx, index, point, route, warmup=warmup, attrs=attrs, codecs=codecs, sample=sample)


def infer_placed(task: Infer, ctx: Context, where: Placed, first: int) -> None:
    for i in range(task.count):
        apply_uplink_trace(task, ctx, i)
        call_placed(ctx, first + i, where, task.next, Result, warmup=False)
        ctx.progress(i + 1, task.count, f"placement {where.label}")


def _infer_dag(task: Infer, ctx: Context, inputs: PlannerInputs, bandwidth_bps: float, first: int) -> None:
    """``split: auto`` with ``dag: true``: the minimum-cut placement, planned once, then run."""
    infer_placed(task, ctx, plan_placement(ctx, inputs, bandwidth_bps, first), first)
