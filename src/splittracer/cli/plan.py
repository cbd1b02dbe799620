"""``splittracer plan``: predict the best split(s) of a model over device profiles, or check a run."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import SplitTracerError
from ..units import format_rate
from ._render import console, print_json, print_table
from .profile import profile

if TYPE_CHECKING:  # the planner (torch) loads when the command runs, not with the command line
    from ..controller.plancheck import PlanCheck
    from ..plan.chain import Link
    from ..plan.energy import Objective, RadioPower
    from ..plan.estimate import Estimator
    from ..plan.planner import SplitPrediction
    from ..plan.profiles import DeviceProfile

__all__ = ["plan", "register"]


def register(app: typer.Typer) -> None:
    """Add ``splittracer plan`` and ``splittracer profile`` to the main command."""
    app.command("plan")(plan)
    app.command("profile")(profile)


class EstimatorChoice(str, Enum):
    """How per-layer latency is obtained (see splittracer.plan.estimate)."""

    auto = "auto"
    measured = "measured"
    regression = "regression"


_ESTIMATORS: dict[EstimatorChoice, Estimator] = {
    EstimatorChoice.auto: "auto",
    EstimatorChoice.measured: "measured",
    EstimatorChoice.regression: "regression",
}


class ObjectiveChoice(str, Enum):
    """What the best split minimises (see splittracer.plan.energy)."""

    latency = "latency"
    energy = "energy"
    throughput = "throughput"


_OBJECTIVES: dict[ObjectiveChoice, Objective] = {
    ObjectiveChoice.latency: "latency",
    ObjectiveChoice.energy: "energy",
    ObjectiveChoice.throughput: "throughput",
}


ObjectiveOpt = Annotated[
    ObjectiveChoice,
    typer.Option(
        help="latency; energy: the first device's compute + transmit energy; "
        "throughput: frames/s when frames stream through the chain"
    ),
]
ClientsOpt = Annotated[
    int, typer.Option(min=1, help="With --objective throughput: identical clients sharing the last device")
]
TxPowerOpt = Annotated[
    str | None,
    typer.Option(
        "--tx-power",
        help="First device's radio power while sending: 1.2W, 800mW, or 3g/lte/wifi for Huang et al.'s "
        "measured model at the link's rate (default: the first hop's --bandwidth when it names one)",
    ),
]


def plan(
    model: Annotated[str | None, typer.Argument(help="Model to plan (not needed with --check)")] = None,
    devices: Annotated[str, typer.Option(help="Profiles in chain order, e.g. local-1t,local-2t")] = "",
    bandwidth: Annotated[str, typer.Option(help="Rate per hop: 5.85mbit, lte, 3g, wifi")] = "unlimited",
    latency: Annotated[str, typer.Option(help="One-way latency per hop, e.g. 10ms")] = "0s",
    estimator: Annotated[EstimatorChoice, typer.Option(help="auto, measured or regression")] = (
        EstimatorChoice.auto
    ),
    objective: ObjectiveOpt = ObjectiveChoice.latency,
    clients: ClientsOpt = 1,
    tx_power: TxPowerOpt = None,
    dag: Annotated[bool, typer.Option("--dag", help="Also place a DAG by min-cut (two devices)")] = False,
    check: Annotated[
        str | None,
        typer.Option(
            help="Compare with a run's sweep (its own links): run id or latest; a stream run: frames/s"
        ),
    ] = None,
    quantile: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="With --check: each split's statistic (0.25: lower quartile)"),
    ] = 0.5,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="e.g. 1,3,224,224")] = None,
    granularity: Annotated[str, typer.Option(help="leaf, block or depth=N")] = "leaf",
    workspace: Annotated[Path | None, typer.Option("--workspace", "-w", help="Workspace directory")] = None,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts")] = False,
    max_accuracy_drop: Annotated[str | None, typer.Option(help="Choose a codec too, e.g. 1%")] = None,
    accuracy_from: Annotated[str | None, typer.Option(help="The run that measured the codecs")] = None,
) -> None:
    """Predict per-split latency over device profiles and print the best split(s)."""
    from ..plan.planner import parse_links, predict_splits

    profiles = _load_profiles(devices, workspace)
    if check is not None:
        if objective is ObjectiveChoice.energy:
            raise SplitTracerError(
                "--check compares measured latency or, on a stream run, throughput",
                hint=f"Drop --objective {objective.value}.",
            )
        throughput = objective is ObjectiveChoice.throughput
        _check(check, profiles, _ESTIMATORS[estimator], quantile, workspace, json, throughput=throughput)
        return
    if model is None:
        raise SplitTracerError("name the model to plan", hint="e.g. splittracer plan torchvision:alexnet ...")
    links = parse_links(bandwidth.split(","), latency.split(","), len(profiles) - 1)
    radio = _radio(tx_power, bandwidth.split(",")[0], links[0], objective is ObjectiveChoice.energy)
    with console.status(f"planning {model}…", spinner="dots"):
        result = predict_splits(
            model, profiles, links, input_shape=_input_shape(input_shape), granularity=granularity,
            estimator=_ESTIMATORS[estimator], dag=dag, objective=_OBJECTIVES[objective], tx_power=radio,
            clients=clients,
        )  # fmt: skip
    if max_accuracy_drop is None:
        _show_plan(result, json=json)
    else:
        from .plan_codecs import show_codec_plan

        show_codec_plan(result, max_accuracy_drop, accuracy_from, workspace, json=json)


def _load_profiles(devices: str, workspace: Path | None) -> list[DeviceProfile]:
    """The stored profiles named in ``devices`` (comma-separated), in chain order."""
    from ..plan.planner import load_profiles
    from ..workspace import profile_store

    return load_profiles(profile_store(workspace), [d.strip() for d in devices.split(",") if d.strip()])


def _input_shape(text: str | None) -> tuple[int, ...] | None:
    from ..models import parse_input_shape

    return parse_input_shape(text) if text else None


def _radio(text: str | None, bandwidth: str, link: Link, needed: bool) -> RadioPower | None:
    """The first device's radio power: given, else the first hop's technology when it names one."""
    from ..plan.energy import RADIOS, parse_tx_power

    if text is not None:
        return parse_tx_power(text, link.bandwidth_bps)
    if bandwidth.strip().lower() in RADIOS:
        return parse_tx_power(bandwidth, link.bandwidth_bps)
    if needed:
        raise SplitTracerError(
            "the energy objective needs the first device's radio power while it sends",
            hint="Give --tx-power 1.2W (your radio's figure), or --tx-power lte / 3g / wifi for the uplink "
            "power measured by Huang et al. (2012) at the link's rate; --bandwidth lte implies it.",
        )
    return None


def _show_plan(result: SplitPrediction, *, json: bool) -> None:
    if json:
        from ..plan.planner import prediction_to_dict

        print_json(prediction_to_dict(result))
        return
    stages = [c.profile for c in result.costs]
    energy = result.radio is not None
    flow = result.objective == "throughput"
    rows = [
        [
            ",".join(map(str, r.cuts)),
            result.label(r.cuts[0]),
            *r.stages_ms,
            sum(r.transfers_ms),
            sum(r.bytes),
            r.total_ms,
            *([r.compute_energy_mj, r.transmit_energy_mj, r.energy_mj] if energy else []),
            *([r.cycle_ms(result.clients), r.frames_per_s(result.clients)] if flow else []),
        ]
        for r in result.chain.rows
    ]
    links = "; ".join(link.describe() for link in result.links)
    extra = ["compute mJ", "transmit mJ", "energy mJ"] if energy else []
    extra += ["cycle", "frames/s"] if flow else []
    print_table(
        f"{result.source} over {' -> '.join(stages)} ({links}) — predicted ms",
        ["cuts", "after", *stages, "transfer", "bytes", "total", *extra],
        rows,
    )
    for c in result.costs:
        trained = f" from {', '.join(c.trained_on)}" if c.trained_on else ""
        joules = f"; energy {c.energy_method}" if c.energy_mj is not None else ""
        console.print(f"{c.profile}: {c.method}{trained}; whole model {c.total_ms:.2f} ms{joules}")
    if result.radio is not None:
        console.print(f"radio: {result.radio.watts:.2f} W while sending ({result.radio.source})")
    best = result.chain.best
    where = ", ".join(f"after {result.label(k)} ({k})" for k in best.cuts)
    spent = f", {best.energy_mj:.1f} mJ on {stages[0]}" if best.energy_mj is not None else ""
    goal = "" if result.objective == "latency" else f" for {result.objective}"
    if flow:
        shared = f" ({result.clients} clients sharing {stages[-1]})" if result.clients > 1 else ""
        spent += f", {best.frames_per_s(result.clients):.1f} frames/s{shared}"
    console.print(f"[bold]best{goal}: cut {where}[/] — predicted {best.total_ms:.2f} ms{spent}")
    if result.dag is not None:
        d = result.dag
        shape = "contiguous" if d.contiguous else "not contiguous"
        console.print(
            f"DAG min-cut: layers {d.placement} on {stages[0]} ({shape}), the other {len(d.second)} "
            f"on {stages[1]}, "
            f"sends {', '.join(d.sent) or 'nothing'} ({d.bytes:,} bytes) — predicted {d.total_ms:.2f} ms"
        )


def _check(
    run_id: str,
    profiles: list[DeviceProfile],
    estimator: Estimator,
    quantile: float,
    workspace: Path | None,
    json: bool,
    *,
    throughput: bool = False,
) -> None:
    """Latency per cut against the plan; on a stream run (or with ``throughput``), frames/s per stream."""
    from ..controller.plancheck import check_run, check_to_dict, placement_label
    from ..controller.streamcheck import check_stream_run, run_streamed
    from ..metrics.store import ResultsStore
    from ..workspace import find_workspace

    ws = find_workspace(explicit=workspace)
    with console.status("planning the run's model…", spinner="dots"):
        store = ResultsStore(ws.results_db)
        streamed = throughput or run_streamed(store, run_id)
        if streamed:
            streams = check_stream_run(store, run_id, profiles, estimator=estimator)
        else:
            result = check_run(store, run_id, profiles, estimator=estimator, quantile=quantile)
    if streamed:
        from .plan_streams import show_stream_check

        show_stream_check(streams, json=json)
        return
    if json:
        print_json(check_to_dict(result))
        return
    rows = [
        [
            f"[{r.placement}]" if r.placement else ",".join(map(str, r.cuts)),
            placement_label(r.placement, result.plan) if r.placement else result.plan.label(r.cuts[0]),
            r.count,
            r.measured_ms,
            r.predicted_ms,
            r.error,
        ]
        for r in result.rows
    ]
    links = "; ".join(f"{format_rate(x.bandwidth_bps)} +{x.latency_s * 1000:g} ms" for x in result.plan.links)
    print_table(
        f"run {result.run_id} ({result.experiment}) — {links}",
        ["cuts", "after", "n", "measured ms", "predicted ms", "error"],
        rows,
    )
    _print_verdict(result)


def _print_verdict(result: PlanCheck) -> None:
    """The planner's choice against the fastest measured cuts, saying plainly what was compared."""
    best, chosen = result.measured_best, result.compared
    if result.planned_row is not None:
        console.print(f"planner's choice: {_cuts(result.planned)}; measured best: {_cuts(best.cuts)}")
        compared = f"measured latency of the choice {chosen.measured_ms:.2f} ms"
    else:
        console.print(
            f"planner's choice: {_cuts(result.planned)}, [bold]not measured[/] by this run "
            f"(its sweep did not include it); measured best: {_cuts(best.cuts)}",
            highlight=False,
        )
        compared = (
            f"compared instead: {_cuts(chosen.cuts)}, the measured choice predicted fastest, "
            f"measured {chosen.measured_ms:.2f} ms"
        )
    console.print(
        f"{compared} vs best {best.measured_ms:.2f} ms ({result.regret:+.1%}); "
        f"median |error| {result.median_abs_error:.1%}; rank correlation {result.rank_correlation:.2f}",
        highlight=False,
    )
    dag, row = result.plan.dag, result.dag_row
    if dag is not None:
        measured = "not measured by this run" if row is None else f"measured {row.measured_ms:.2f} ms"
        console.print(
            f"DAG min-cut: [{dag.placement}] ({len(dag.sent)} tensors, {dag.bytes:,} bytes) — "
            f"predicted {dag.total_ms:.2f} ms, {measured}",
            highlight=False,
        )


def _cuts(cuts: tuple[int, ...]) -> str:
    return ",".join(map(str, cuts))
