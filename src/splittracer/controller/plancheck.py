"""Check a plan against a measured sweep: did the planner pick (nearly) the fastest split?

:func:`check_run` reads a run of the built-in split roles (a ``Sweep`` over
splits, or over cuts for three or more devices), plans the same model on
the given device profiles with the run's own links (each participant's
``uplink`` and ``latency``), and compares, cut by cut, the predicted and
the measured median end-to-end latency.

A run of placements (``Sweep.placements``, ``Infer.placement`` or
``dag: true``) is compared placement by placement: each is priced as the DAG
planner prices a cut, and the planner's minimum-cut placement is named
beside the measured one when the run measured it.

On a machine shared with other work, a sample is slowed, never sped up, by
that work: ``quantile=0.25`` compares lower quartiles instead, which a
minority of disturbed samples cannot move.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import yaml

from ..errors import SplitTracerError
from ..manifest import Limits, ModelSection
from ..metrics.spans import Span
from ..metrics.store import ResultsStore, RunInfo
from ..plan.chain import ChainEstimate, Link, estimate_cuts
from ..plan.dag import estimate_placement
from ..plan.energy import Objective
from ..plan.estimate import Estimator
from ..plan.planner import SplitPrediction, predict_splits
from ..plan.profiles import DeviceProfile
from ..report.summary import completed_inferences
from ..split.placement import layer_set, named_ranges

__all__ = [
    "CutCheck",
    "MeasuredCuts",
    "PlanCheck",
    "RunCheck",
    "check_run",
    "check_to_dict",
    "measured_cuts",
    "placement_label",
    "plan_for_run",
    "predict_at",
    "run_links",
]

Row = TypeVar("Row")


@dataclass(frozen=True)
class MeasuredCuts:
    """End-to-end latency (median, or the quantile asked for) of the measured inferences at one
    choice of cuts."""

    cuts: tuple[int, ...]
    count: int
    total_ms: float
    placement: str = ""  # the first device's layers ('1-3,7-9') when the inferences ran a placement


@dataclass(frozen=True)
class CutCheck:
    """Predicted against measured latency at one choice of cuts; ``error`` is relative."""

    cuts: tuple[int, ...]
    count: int
    measured_ms: float
    predicted_ms: float
    placement: str = ""  # the first device's layers, for a placement's row

    @property
    def error(self) -> float:
        """(predicted - measured) / measured."""
        return (self.predicted_ms - self.measured_ms) / self.measured_ms


@dataclass(frozen=True)
class RunCheck(Generic[Row]):
    """A run's rows beside the plan for the same model, devices and links (what a check of a
    sweep, :class:`PlanCheck`, and of streams, ``StreamPlanCheck``, have in common)."""

    run_id: str
    experiment: str
    plan: SplitPrediction
    rows: tuple[Row, ...] = field(repr=False)

    @property
    def planned(self) -> tuple[int, ...]:
        """The planner's choice over every possible cut, whether the run ran it or not."""
        return self.plan.chain.best.cuts


@dataclass(frozen=True)
class PlanCheck(RunCheck[CutCheck]):
    """A run's measured sweep beside the plan for the same model, devices and links."""

    @property
    def planned_row(self) -> CutCheck | None:
        """The measurement of the planner's choice, when the sweep measured it."""
        return next((r for r in self.rows if r.cuts == self.planned and not r.placement), None)

    @property
    def dag_row(self) -> CutCheck | None:
        """The measurement of the DAG planner's placement (``plan.dag``), when the run measured it."""
        dag = self.plan.dag
        if dag is None:
            return None
        if dag.contiguous:  # a prefix: measured as the split or as the placement
            prefix = next((r for r in self.rows if r.cuts == (len(dag.first),) and not r.placement), None)
            if prefix is not None:
                return prefix
        return next((r for r in self.rows if r.placement == dag.placement), None)

    @property
    def compared(self) -> CutCheck:
        """What stands for the planner's choice in :attr:`regret`: the choice's own measurement
        when the sweep measured it, else the measured cuts predicted fastest."""
        return self.planned_row or self.predicted_best

    @property
    def predicted_best(self) -> CutCheck:
        """Among the measured cuts, the one predicted fastest."""
        return min(self.rows, key=lambda r: r.predicted_ms)

    @property
    def measured_best(self) -> CutCheck:
        """The cuts measured fastest."""
        return min(self.rows, key=lambda r: r.measured_ms)

    @property
    def regret(self) -> float:
        """How much slower the predicted choice measured than the best: 0.03 is 3 %.

        The planner's own choice when it was measured, else the fastest
        predicted among the measured cuts.
        """
        return self.compared.measured_ms / self.measured_best.measured_ms - 1

    @property
    def median_abs_error(self) -> float:
        """Median over cuts of |predicted - measured| / measured."""
        return float(np.median([abs(r.error) for r in self.rows]))

    @property
    def rank_correlation(self) -> float:
        """Spearman's rank correlation of predicted and measured latency over the cuts."""
        if len(self.rows) < 2:
            return 1.0
        predicted = np.argsort(np.argsort([r.predicted_ms for r in self.rows]))
        measured = np.argsort(np.argsort([r.measured_ms for r in self.rows]))
        return float(np.corrcoef(predicted, measured)[0, 1])


def measured_cuts(spans: Iterable[Span], quantile: float = 0.5) -> list[MeasuredCuts]:
    """Completed, non-warm-up inferences grouped by their cuts, sorted by cuts.

    Each group's latency is its ``quantile`` (0.5: the median), interpolated.
    Completed means what the run summary means by it
    (:func:`~splittracer.report.summary.completed_inferences`): a failed or
    interrupted inference is no sample.

    An inference's cuts are where each stage but the last stopped (the
    ``end_layer`` of its compute spans), so sweeps over chains of any length
    are read the same way.
    """
    spans = list(spans)
    completed = completed_inferences(spans)
    totals: dict[int, float] = {}
    placed: dict[int, str] = {}
    ends: defaultdict[int, dict[int, int]] = defaultdict(dict)
    warm: set[int] = set()
    for span in spans:
        if span.inference not in completed:
            continue
        if span.attrs.get("warmup") is True:
            warm.add(span.inference)
        if span.kind == "inference" and not span.attrs.get("error"):
            totals[span.inference] = max(totals.get(span.inference, 0.0), span.duration_ms)
            if "placement" in span.attrs:
                placed[span.inference] = str(span.attrs["placement"])
        elif span.kind == "compute":
            ends[span.inference][span.stage] = span.end_layer
    grouped: defaultdict[tuple[tuple[int, ...], str], list[float]] = defaultdict(list)
    for inference, total in totals.items():
        stages = ends.get(inference, {})
        if inference in warm or len(stages) < 2:
            continue
        grouped[tuple(stages[s] for s in sorted(stages)[:-1]), placed.get(inference, "")].append(total)
    return [
        MeasuredCuts(c, len(v), float(np.quantile(v, quantile)), p) for (c, p), v in sorted(grouped.items())
    ]


def run_links(manifest_text: str) -> tuple[ModelSection, tuple[Link, ...], tuple[Link, ...]]:
    """A run's model and its links: forward hop ``i`` and reply hop ``i+1 -> i`` use
    the sending participant's ``uplink`` and ``latency``."""
    data = yaml.safe_load(manifest_text) or {}
    if not isinstance(data, dict) or not data.get("model"):
        raise SplitTracerError("this run's manifest names no model, so there is no plan to check")
    model = ModelSection.model_validate(data["model"])
    participants = data.get("participants") or {}
    limits = [Limits.model_validate((p or {}).get("limits") or {}) for p in participants.values()]
    links = [Link(lim.uplink_bps, lim.latency_s) for lim in limits]
    return model, tuple(links[:-1]), tuple(links[1:])


def check_run(
    store: ResultsStore,
    run_id: str,
    profiles: Sequence[DeviceProfile],
    *,
    estimator: Estimator = "auto",
    links: Sequence[Link] | None = None,
    quantile: float = 0.5,
) -> PlanCheck:
    """Plan the run's model on ``profiles`` and compare with what the run measured.

    ``links`` replaces the run's own emulated links (for a run on real ones);
    ``quantile`` is the statistic of each split's samples (0.5: the median).
    """
    if not 0.0 <= quantile <= 1.0:
        raise SplitTracerError(f"quantile {quantile} is not between 0 and 1", hint="e.g. 0.5 (the median)")
    run = store.get_run(run_id)
    measured = measured_cuts(store.spans(run.id), quantile)
    if not measured:
        raise SplitTracerError(
            f"run {run.id} measured no split inference to check against",
            hint="Check a run of splittracer.builtin:SplitHead with a Sweep task.",
        )
    hops = len(measured[0].cuts)
    plan = plan_for_run(
        run,
        profiles,
        hops,
        "splits the model",
        estimator=estimator,
        links=links,
        dag=hops == 1 and any(m.placement for m in measured),
    )
    return PlanCheck(run.id, run.experiment, plan, tuple(_compare(plan, m) for m in measured))


def plan_for_run(
    run: RunInfo,
    profiles: Sequence[DeviceProfile],
    hops: int,
    does: str,
    *,
    estimator: Estimator,
    links: Sequence[Link] | None,
    dag: bool = False,
    objective: Objective = "latency",
    clients: int = 1,
) -> SplitPrediction:
    """Plan ``run``'s model over ``hops + 1`` devices on ``profiles`` with the run's own links
    (unless ``links`` replaces them); the rest as :func:`~splittracer.plan.planner.predict_splits`.

    ``does`` says what the run did over its devices ('splits the model'), for the error raised
    when the number of profiles is not the number of devices.
    """
    model, forward, reply = run_links(run.manifest)
    if len(profiles) != hops + 1:
        raise SplitTracerError(
            f"run {run.id} {does} over {hops + 1} devices but {len(profiles)} profiles were given",
            hint="Name one profile per participant, in the manifest's order.",
        )
    return predict_splits(
        model.source,
        profiles,
        list(links) if links is not None else forward[:hops],
        input_shape=tuple(model.input_shape) if model.input_shape else None,
        granularity=model.granularity,
        override=model.override,
        estimator=estimator,
        reply_links=reply[:hops],
        dag=dag,
        objective=objective,
        clients=clients,
    )


def predict_at(plan: SplitPrediction, cuts: tuple[int, ...]) -> ChainEstimate:
    """The plan's estimate for one given choice of cuts (the run's, not necessarily the planner's)."""
    return estimate_cuts(
        cuts, [c.ms for c in plan.costs], plan.graph.split_bytes, plan.links, reply_links=plan.reply_links
    )


def _compare(plan: SplitPrediction, measured: MeasuredCuts) -> CutCheck:
    if measured.placement:
        first = layer_set(measured.placement, plan.layer_names)
        costs = [c.ms for c in plan.costs]
        placed = estimate_placement(
            plan.graph, first, costs[0], costs[1], plan.links[0], reply=plan.reply_links[0]
        )
        return CutCheck(measured.cuts, measured.count, measured.total_ms, placed.total_ms, measured.placement)
    predicted = predict_at(plan, measured.cuts)
    return CutCheck(measured.cuts, measured.count, measured.total_ms, predicted.total_ms)


def check_to_dict(result: PlanCheck) -> dict[str, Any]:
    """A plan check as JSON-ready data."""
    chosen = result.compared
    return {
        "run": result.run_id,
        "experiment": result.experiment,
        "model": result.plan.source,
        "devices": [c.profile for c in result.plan.costs],
        "methods": [c.method for c in result.plan.costs],
        "planned": list(result.planned),
        "planned_measured": result.planned_row is not None,
        "chosen": list(chosen.cuts),  # what was compared: the planned cuts, or see "compared"
        "compared": "planned" if result.planned_row is not None else "predicted_best_measured",
        "chosen_measured_ms": chosen.measured_ms,
        "measured_best": list(result.measured_best.cuts),
        "measured_best_ms": result.measured_best.measured_ms,
        "regret": result.regret,
        "median_abs_error": result.median_abs_error,
        "rank_correlation": result.rank_correlation,
        "splits": [
            {
                "cuts": list(r.cuts),
                "count": r.count,
                "measured_ms": r.measured_ms,
                "predicted_ms": r.predicted_ms,
                "error": r.error,
                **(_placement_dict(r.placement, result.plan) if r.placement else {}),
            }
            for r in result.rows
        ],
        **({"dag": _dag_dict(result)} if result.plan.dag is not None else {}),
    }


def placement_label(placement: str, plan: SplitPrediction) -> str:
    """A placement's layers on the first device with the names at the ranges' ends."""
    return named_ranges(layer_set(placement, plan.layer_names), plan.layer_names)


def _placement_dict(placement: str, plan: SplitPrediction) -> dict[str, Any]:
    return {"placement": placement, "placement_layers": placement_label(placement, plan)}


def _dag_dict(result: PlanCheck) -> dict[str, Any]:
    dag, row = result.plan.dag, result.dag_row
    assert dag is not None
    return {
        **_placement_dict(dag.placement, result.plan),
        "bytes": dag.bytes,
        "tensors": len(dag.sent),
        "predicted_ms": dag.total_ms,
        "measured": row is not None,
        "measured_ms": None if row is None else row.measured_ms,
    }
