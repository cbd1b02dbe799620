"""One call from a model and device profiles to a split prediction: what ``splittracer plan`` prints."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SplitTracerError
from ..split.load import LoadedSplit, load_split_model
from ..units import parse_duration, parse_rate
from .chain import ChainEstimate, ChainPlan, FirstDeviceEnergy, Link, plan_chain
from .dag import DagPlan, plan_dag
from .energy import Objective, RadioPower
from .estimate import Estimator, LayerCosts, ModelKey, check_profiles, layer_costs, with_energy
from .graph import ModelGraph, granularity_name, model_graph
from .profiles import DeviceProfile, ProfileStore

__all__ = [
    "SplitPrediction",
    "load_profiles",
    "parse_links",
    "predict_loaded",
    "predict_splits",
    "prediction_to_dict",
]


@dataclass(frozen=True)
class SplitPrediction:
    """A model's per-layer costs on each device, its chain plan and (two devices) its DAG plan.

    ``objective`` is what the chain plan's ``best`` minimises; ``radio`` the
    first device's transmit power when its energy was estimated.
    """

    source: str
    input_shape: tuple[int, ...]
    granularity: str
    graph: ModelGraph
    costs: tuple[LayerCosts, ...]
    links: tuple[Link, ...]
    reply_links: tuple[Link, ...]
    chain: ChainPlan
    dag: DagPlan | None
    objective: Objective = "latency"
    radio: RadioPower | None = None
    clients: int = 1  # identical clients sharing the last device (throughput)

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of layers 1..L."""
        return tuple(layer.name for layer in self.graph.layers)

    def label(self, cut: int) -> str:
        """'input' for cut 0, else the name of the layer the cut comes after."""
        return "input" if cut == 0 else self.layer_names[cut - 1]


def load_profiles(store: ProfileStore, names: Sequence[str]) -> list[DeviceProfile]:
    """Profiles ``names`` in chain order (SplitTracerError for an unknown one)."""
    profiles = [store.load(name) for name in names]
    check_profiles(profiles)
    return profiles


def parse_links(bandwidths: Sequence[str], latencies: Sequence[str], hops: int) -> tuple[Link, ...]:
    """One Link per hop from rate and latency texts; a single value applies to every hop."""
    rates = _per_hop(bandwidths or ["unlimited"], hops, "--bandwidth")
    delays = _per_hop(latencies or ["0s"], hops, "--latency")
    try:
        return tuple(Link(parse_rate(r), parse_duration(d)) for r, d in zip(rates, delays))
    except ValueError as exc:
        raise SplitTracerError(str(exc)) from exc


def predict_splits(
    source: str,
    profiles: Sequence[DeviceProfile],
    links: Sequence[Link],
    *,
    input_shape: tuple[int, ...] | None = None,
    granularity: str = "leaf",
    override: str | Path | None = None,
    estimator: Estimator = "auto",
    reply_links: Sequence[Link] | None = None,
    dag: bool = False,
    objective: Objective = "latency",
    tx_power: RadioPower | None = None,
    clients: int = 1,
) -> SplitPrediction:
    """Capture ``source`` and plan it over ``profiles`` (first device first).

    ``objective="energy"`` picks the split that spends least of the first
    device's energy (:mod:`splittracer.plan.energy`) and needs ``tx_power``,
    its radio's power; with ``tx_power`` alone the energy is reported too,
    when the first device's profile has energy measurements.
    ``objective="throughput"`` picks the split whose pipeline passes most
    frames per second, with ``clients`` identical clients sharing the last
    device (:mod:`splittracer.plan.chain`).
    """
    loaded = load_split_model(source, input_shape=input_shape, granularity=granularity, override=override)
    return predict_loaded(
        source,
        loaded,
        profiles,
        links,
        estimator=estimator,
        reply_links=reply_links,
        dag=dag,
        objective=objective,
        tx_power=tx_power,
        clients=clients,
    )


def predict_loaded(
    source: str,
    loaded: LoadedSplit,
    profiles: Sequence[DeviceProfile],
    links: Sequence[Link],
    *,
    estimator: Estimator = "auto",
    reply_links: Sequence[Link] | None = None,
    dag: bool = False,
    objective: Objective = "latency",
    tx_power: RadioPower | None = None,
    clients: int = 1,
) -> SplitPrediction:
    """Plan an already captured model (see :func:`predict_splits`)."""
    check_profiles(profiles)
    _check_objective(objective, tx_power, dag, len(profiles))
    if clients != 1 and objective != "throughput":
        raise SplitTracerError(
            "clients share the last device's time in the throughput objective only",
            hint="Plan with --objective throughput, or drop --clients.",
        )
    grain = granularity_name(loaded.split)
    shape = tuple(loaded.spec.input_shape)
    graph = model_graph(loaded.split)
    key: ModelKey = (source, shape, grain)
    costs = tuple(layer_costs(p, graph, key, estimator) for p in profiles)
    energy = None
    measured_energy = any(m.has_energy for m in profiles[0].models)
    if tx_power is not None and (objective == "energy" or measured_energy):
        costs = (with_energy(costs[0], profiles[0], key), *costs[1:])
        energy = FirstDeviceEnergy(costs[0].energy_mj or (), tx_power)
    back = tuple(reply_links) if reply_links is not None else tuple(Link() for _ in links)
    chain = plan_chain(
        [p.name for p in profiles],
        [c.ms for c in costs],
        graph.split_bytes,
        links,
        allowed=graph.allowed,
        reply_links=back,
        energy=energy,
        objective=objective,
        clients=clients,
    )
    placement = plan_dag(graph, costs[0].ms, costs[1].ms, links[0], reply=back[0]) if dag else None
    radio = tx_power if energy is not None else None
    return SplitPrediction(
        source, shape, grain, graph, costs, tuple(links), back, chain, placement, objective, radio, clients
    )


def _check_objective(objective: Objective, tx_power: RadioPower | None, dag: bool, devices: int) -> None:
    if dag and devices != 2:
        raise SplitTracerError("the DAG min-cut places layers on exactly two devices", hint="Drop --dag.")
    if objective == "energy" and tx_power is None:
        raise SplitTracerError(
            "the energy objective needs the first device's radio power",
            hint="Give it: --tx-power 1.2W, or --tx-power lte (also 3g, wifi) for the measured model.",
        )
    if objective != "latency" and dag:
        raise SplitTracerError(
            "the DAG min-cut minimises latency only", hint="Drop --dag, or plan with --objective latency."
        )


def prediction_to_dict(plan: SplitPrediction) -> dict[str, Any]:
    """A prediction as JSON-ready data."""
    best = plan.chain.best
    data: dict[str, Any] = {
        "model": plan.source,
        "input_shape": list(plan.input_shape),
        "granularity": plan.granularity,
        "objective": plan.objective,
        "clients": plan.clients,
        "devices": [
            {
                "profile": c.profile,
                "method": c.method,
                "trained_on": list(c.trained_on),
                "total_ms": c.total_ms,
                **({"energy_method": c.energy_method} if c.energy_mj is not None else {}),
            }
            for c in plan.costs
        ],
        "links": [_link_dict(link) for link in plan.links],
        "best": _estimate_dict(best, plan),
        "splits": [_estimate_dict(row, plan) for row in plan.chain.rows],
        "layers": [
            {"index": i + 1, "name": name, "ms": [c.ms[i] for c in plan.costs], **_layer_energy(plan, i)}
            for i, name in enumerate(plan.layer_names)
        ],
    }
    if plan.radio is not None:
        data["tx_power"] = {"watts": plan.radio.watts, "source": plan.radio.source}
    if plan.dag is not None:
        d = plan.dag
        data["dag"] = {
            "placement": d.placement,
            "first": list(d.first),
            "second": list(d.second),
            "sent": list(d.sent),
            "bytes": d.bytes,
            "contiguous": d.contiguous,
            "head_ms": d.head_ms,
            "transfer_ms": d.transfer_ms,
            "tail_ms": d.tail_ms,
            "reply_ms": d.reply_ms,
            "total_ms": d.total_ms,
        }
    return data


def _estimate_dict(row: ChainEstimate, plan: SplitPrediction) -> dict[str, Any]:
    return {
        "cuts": list(row.cuts),
        "after": [plan.label(k) for k in row.cuts],
        "stages_ms": list(row.stages_ms),
        "transfers_ms": list(row.transfers_ms),
        "bytes": list(row.bytes),
        "reply_ms": row.reply_ms,
        "total_ms": row.total_ms,
        "cycle_ms": row.cycle_ms(plan.clients),
        "frames_per_s": row.frames_per_s(plan.clients),
        **_energy_dict(row),
    }


def _energy_dict(row: ChainEstimate) -> dict[str, Any]:
    if row.energy_mj is None:
        return {}
    return {
        "compute_energy_mj": row.compute_energy_mj,
        "transmit_energy_mj": row.transmit_energy_mj,
        "energy_mj": row.energy_mj,
    }


def _layer_energy(plan: SplitPrediction, i: int) -> dict[str, Any]:
    energy = plan.costs[0].energy_mj
    return {} if energy is None else {"energy_mj": energy[i]}


def _link_dict(link: Link) -> dict[str, Any]:
    bps = None if math.isinf(link.bandwidth_bps) else link.bandwidth_bps
    return {"bandwidth_bps": bps, "latency_s": link.latency_s}


def _per_hop(values: Sequence[str], hops: int, option: str) -> list[str]:
    if len(values) == 1:
        return list(values) * hops
    if len(values) != hops:
        raise SplitTracerError(
            f"{option} names {len(values)} values but the chain has {hops} hop(s)",
            hint=f"Give one value for every hop, or one for all, e.g. {option} 5.85mbit,18.88mbit.",
        )
    return list(values)
