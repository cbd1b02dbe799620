"""``splittracer plan --check`` on a stream run: planned against achieved frames/s, per stream."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..units import format_rate
from ._render import console, print_json, print_table

if TYPE_CHECKING:
    from ..controller.streamcheck import StreamCheck, StreamPlanCheck

__all__ = ["show_stream_check"]


def show_stream_check(result: StreamPlanCheck, *, json: bool) -> None:
    """The table of streams, then the planner's choice against the best achieved, said plainly."""
    if json:
        from ..controller.streamcheck import stream_check_to_dict

        print_json(stream_check_to_dict(result))
        return
    rows = [
        [
            r.stream,
            r.client if r.clients == 1 else f"{r.clients} clients",
            _cuts(r.cuts),
            result.plan.label(r.cuts[0]),
            _load(r),
            r.frames,
            r.achieved_fps,
            r.planned_fps,
            r.planned_cycle_ms,
            r.error,
            r.limited_by or "",
        ]
        for r in result.rows
    ]
    links = "; ".join(f"{format_rate(x.bandwidth_bps)} +{x.latency_s * 1000:g} ms" for x in result.plan.links)
    columns = ["stream", "clients", "cuts", "after", "load", "frames", "achieved fps", "planned fps"]
    columns += ["planned cycle ms", "error", "limited by"]
    print_table(f"run {result.run_id} ({result.experiment}) — throughput; {links}", columns, rows)
    _print_verdict(result)


def _print_verdict(result: StreamPlanCheck) -> None:
    best, chosen = result.measured_best, result.compared
    clients = result.plan.chain.clients
    shared = f" for {clients} clients" if clients > 1 else ""
    planned_fps = result.plan.chain.best.frames_per_s(clients)
    head = f"planner's choice{shared}: {_cuts(result.planned)} ({planned_fps:.2f} frames/s planned)"
    if result.planned_rows:
        console.print(f"{head}; best achieved: {_cuts(best.cuts)} (stream {best.stream})", highlight=False)
        compared = f"achieved by the choice {chosen.achieved_fps:.2f} frames/s (stream {chosen.stream})"
    else:
        console.print(
            f"{head}, [bold]not streamed[/] by this run; "
            f"best achieved: {_cuts(best.cuts)} (stream {best.stream})",
            highlight=False,
        )
        compared = (
            f"compared instead: {_cuts(chosen.cuts)}, the streamed choice planned fastest, "
            f"achieved {chosen.achieved_fps:.2f} frames/s (stream {chosen.stream})"
        )
    behind = "the best" if chosen is best else f"{result.shortfall:.1%} fewer"
    console.print(f"{compared} vs best {best.achieved_fps:.2f} frames/s ({behind})", highlight=False)
    limited = [r for r in result.rows if r.limited_by]
    if limited:
        why = {
            "offered load": "offered load: it kept up with its rate",
            "one in flight": "one in flight: not pipelined",
        }
        reasons = "; ".join(why[k] for k in sorted({r.limited_by for r in limited}))
        console.print(
            f"{len(limited)} of {len(result.rows)} streams did not test the pipeline's capacity ({reasons})",
            highlight=False,
        )


def _load(r: StreamCheck) -> str:
    return f"{r.offered_fps:g}/s {r.loop}" if r.offered_fps > 0 else f"closed, {r.inflight} in flight"


def _cuts(cuts: tuple[int, ...]) -> str:
    return ",".join(map(str, cuts))
