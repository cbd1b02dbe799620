"""Split planning, pure prediction: per-layer latency, cuts and placements, objectives.

Checking a plan against a run and profiling a device over SSH live in :mod:`splittracer.controller`;
finding a workspace's profiles is :func:`splittracer.workspace.profile_store`.

* :mod:`~splittracer.plan.profiles` — device profiles (per-layer timings with features), stored as JSON;
* :mod:`~splittracer.plan.measure` — what a device measures for its profile (times, energy where sensed);
* :mod:`~splittracer.plan.energy` — the first device's energy (compute + radio) for the energy objective;
* :mod:`~splittracer.plan.regression` — per-kind latency regression fitted on profiles;
* :mod:`~splittracer.plan.chain` — best cuts over a chain of devices (dynamic programming);
* :mod:`~splittracer.plan.dag` — two-device placement of a DAG by minimum cut (DADS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

if TYPE_CHECKING:
    from .chain import ChainEstimate, ChainPlan, FirstDeviceEnergy, Link, estimate_cuts, plan_chain
    from .dag import DagPlan, plan_dag
    from .energy import Objective, RadioPower, parse_tx_power
    from .estimate import LayerCosts, layer_costs
    from .graph import ModelGraph, model_graph
    from .planner import SplitPrediction, load_profiles, parse_links, predict_splits
    from .profiles import DeviceProfile, ProfileStore, profile_local
    from .regression import LatencyModel, fit_latency_model

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("ChainEstimate", "ChainPlan", "FirstDeviceEnergy", "Link", "estimate_cuts", "plan_chain"),
            ".chain",
        ),
        **dict.fromkeys(("DagPlan", "plan_dag"), ".dag"),
        **dict.fromkeys(("Objective", "RadioPower", "parse_tx_power"), ".energy"),
        **dict.fromkeys(("LayerCosts", "layer_costs"), ".estimate"),
        **dict.fromkeys(("ModelGraph", "model_graph"), ".graph"),
        **dict.fromkeys(("SplitPrediction", "load_profiles", "parse_links", "predict_splits"), ".planner"),
        **dict.fromkeys(("DeviceProfile", "ProfileStore", "profile_local"), ".profiles"),
        **dict.fromkeys(("LatencyModel", "fit_latency_model"), ".regression"),
    },
)

__all__ = [
    "ChainEstimate",
    "ChainPlan",
    "DagPlan",
    "DeviceProfile",
    "FirstDeviceEnergy",
    "LatencyModel",
    "LayerCosts",
    "Link",
    "ModelGraph",
    "Objective",
    "ProfileStore",
    "RadioPower",
    "SplitPrediction",
    "estimate_cuts",
    "fit_latency_model",
    "layer_costs",
    "load_profiles",
    "model_graph",
    "parse_links",
    "parse_tx_power",
    "plan_chain",
    "plan_dag",
    "predict_splits",
    "profile_local",
]
