"""Split planning: predict per-layer latency, choose cuts, check the choice against measurement.

* :mod:`~splittracer.plan.profiles` — device profiles (per-layer timings with features), stored as JSON;
* :mod:`~splittracer.plan.regression` — per-kind latency regression fitted on profiles;
* :mod:`~splittracer.plan.chain` — best cuts over a chain of devices (dynamic programming);
* :mod:`~splittracer.plan.dag` — two-device placement of a DAG by minimum cut (DADS);
* :mod:`~splittracer.plan.check` — a plan against a measured sweep.
"""

from __future__ import annotations

from .chain import ChainEstimate, ChainPlan, Link, estimate_cuts, plan_chain
from .check import PlanCheck, check_run
from .dag import DagPlan, plan_dag
from .estimate import LayerCosts, layer_costs
from .graph import ModelGraph, model_graph
from .planner import ModelPlan, load_profiles, parse_links, plan_model
from .profiles import DeviceProfile, ProfileStore, profile_local, profile_store
from .regression import LatencyModel, fit_latency_model

__all__ = [
    "ChainEstimate",
    "ChainPlan",
    "DagPlan",
    "DeviceProfile",
    "LatencyModel",
    "LayerCosts",
    "Link",
    "ModelGraph",
    "ModelPlan",
    "PlanCheck",
    "ProfileStore",
    "check_run",
    "estimate_cuts",
    "fit_latency_model",
    "layer_costs",
    "load_profiles",
    "model_graph",
    "parse_links",
    "plan_chain",
    "plan_dag",
    "plan_model",
    "profile_local",
    "profile_store",
]
