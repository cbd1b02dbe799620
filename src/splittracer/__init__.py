"""SplitTracer: cooperative-inference and split-computing experiments on real edge devices.

The names here are the public API; everything else may change between
releases. ``tests/unit/public_api.txt`` pins them with their signatures.
Heavy modules (torch, pandas) load on first use of a name, not at import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import environment as _environment  # noqa: F401  (first: it copies the user's environment)
from .errors import (
    CaptureError,
    CodecError,
    ConfigError,
    DeviceError,
    ModelError,
    PeerError,
    RunError,
    SplitError,
    SplitTracerError,
    UserCodeError,
    WireError,
)
from .version import __version__

if TYPE_CHECKING:  # the real names for type checkers; at run time they load lazily
    from .builtin import (
        Finish,
        Infer,
        LinkProbe,
        LinkReport,
        MeasureLink,
        Result,
        RunLayers,
        SplitHead,
        SplitTail,
        Stream,
        Sweep,
    )
    from .controller.resolve import ResolvedParticipant, ResolvedRun, resolve_run
    from .controller.run import RunObserver, RunOutcome, run_experiment
    from .deploy.base import Deployer, Deployment
    from .experiment import Experiment, RunFailedError, RunResult
    from .manifest import Manifest, load_manifest
    from .metrics.spans import Metric, Span
    from .metrics.store import ResultsStore, RunInfo
    from .models import ModelSpec, load_model
    from .report.export import spans_to_frame
    from .report.runs import NotCounted, RunSummary, SplitDecision, run_summary
    from .report.streams import StreamRow, summarize_streams
    from .report.summary import Quantiles, SplitRow, summarize
    from .roles import Context, Handler, Role, RunOptions, Tensors, handles
    from .split import Granularity, GraphValues, Layer, Part, Placement, SplitModel, SplitPoint, TensorInfo
    from .split.load import LoadedSplit, load_split_model
    from .split.profile import LayerTiming, ModelProfile, SplitCheck, profile_layers, verify_splits
    from .tasks import Task
    from .workspace import ExperimentInfo, Workspace, WorkspaceSettings, find_workspace, init_workspace

_LAZY = {
    **dict.fromkeys(
        [
            "Finish",
            "Infer",
            "LinkProbe",
            "LinkReport",
            "MeasureLink",
            "Result",
            "RunLayers",
            "SplitHead",
            "SplitTail",
            "Stream",
            "Sweep",
        ],
        "splittracer.builtin",
    ),
    **dict.fromkeys(["ResolvedParticipant", "ResolvedRun", "resolve_run"], "splittracer.controller.resolve"),
    **dict.fromkeys(["RunObserver", "RunOutcome", "run_experiment"], "splittracer.controller.run"),
    "Deployer": "splittracer.deploy.base",
    "Deployment": "splittracer.deploy.base",
    **dict.fromkeys(["Experiment", "RunFailedError", "RunResult"], "splittracer.experiment"),
    **dict.fromkeys(["Manifest", "load_manifest"], "splittracer.manifest"),
    **dict.fromkeys(["Metric", "Span"], "splittracer.metrics.spans"),
    **dict.fromkeys(["ResultsStore", "RunInfo"], "splittracer.metrics.store"),
    **dict.fromkeys(["ModelSpec", "load_model"], "splittracer.models"),
    "spans_to_frame": "splittracer.report.export",
    **dict.fromkeys(["NotCounted", "RunSummary", "SplitDecision", "run_summary"], "splittracer.report.runs"),
    **dict.fromkeys(["StreamRow", "summarize_streams"], "splittracer.report.streams"),
    **dict.fromkeys(["Quantiles", "SplitRow", "summarize"], "splittracer.report.summary"),
    **dict.fromkeys(["Context", "Handler", "Role", "RunOptions", "Tensors", "handles"], "splittracer.roles"),
    **dict.fromkeys(
        [
            "GraphValues",
            "Granularity",
            "Layer",
            "Part",
            "Placement",
            "SplitModel",
            "SplitPoint",
            "TensorInfo",
        ],
        "splittracer.split",
    ),
    **dict.fromkeys(["LoadedSplit", "load_split_model"], "splittracer.split.load"),
    **dict.fromkeys(
        ["LayerTiming", "ModelProfile", "SplitCheck", "profile_layers", "verify_splits"],
        "splittracer.split.profile",
    ),
    "Task": "splittracer.tasks",
    **dict.fromkeys(
        ["ExperimentInfo", "Workspace", "WorkspaceSettings", "find_workspace", "init_workspace"],
        "splittracer.workspace",
    ),
}

__all__ = [
    "CaptureError",
    "CodecError",
    "ConfigError",
    "Context",
    "Deployer",
    "Deployment",
    "DeviceError",
    "Experiment",
    "ExperimentInfo",
    "Finish",
    "Granularity",
    "GraphValues",
    "Handler",
    "Infer",
    "Layer",
    "LayerTiming",
    "LinkProbe",
    "LinkReport",
    "LoadedSplit",
    "Manifest",
    "MeasureLink",
    "Metric",
    "ModelError",
    "ModelProfile",
    "ModelSpec",
    "NotCounted",
    "Part",
    "PeerError",
    "Placement",
    "Quantiles",
    "ResolvedParticipant",
    "ResolvedRun",
    "Result",
    "ResultsStore",
    "Role",
    "RunError",
    "RunFailedError",
    "RunInfo",
    "RunLayers",
    "RunObserver",
    "RunOptions",
    "RunOutcome",
    "RunResult",
    "RunSummary",
    "Span",
    "SplitCheck",
    "SplitDecision",
    "SplitError",
    "SplitHead",
    "SplitModel",
    "SplitPoint",
    "SplitRow",
    "SplitTail",
    "SplitTracerError",
    "Stream",
    "StreamRow",
    "Sweep",
    "Task",
    "TensorInfo",
    "Tensors",
    "UserCodeError",
    "WireError",
    "Workspace",
    "WorkspaceSettings",
    "__version__",
    "find_workspace",
    "handles",
    "init_workspace",
    "load_manifest",
    "load_model",
    "load_split_model",
    "profile_layers",
    "resolve_run",
    "run_experiment",
    "run_summary",
    "spans_to_frame",
    "summarize",
    "summarize_streams",
    "verify_splits",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'splittracer' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
