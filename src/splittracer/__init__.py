"""SplitTracer: cooperative-inference and split-computing experiments on real edge devices.

The names here are the public API; everything else may change between
releases. Heavy modules (torch) load on first use of a name, not at import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import SplitTracerError
from .version import __version__

if TYPE_CHECKING:  # the real names for type checkers; at run time they load lazily
    from .controller.resolve import resolve_run
    from .controller.run import run_experiment
    from .manifest import load_manifest
    from .metrics.store import ResultsStore
    from .models import load_model
    from .report.summary import summarize
    from .roles import Context, Role, handles
    from .split import Granularity, SplitModel
    from .split.load import load_split_model
    from .split.profile import profile_layers, verify_splits
    from .tasks import Task
    from .workspace import Workspace, find_workspace, init_workspace

_LAZY = {
    "Task": "splittracer.tasks",
    "Role": "splittracer.roles",
    "Context": "splittracer.roles",
    "handles": "splittracer.roles",
    "Workspace": "splittracer.workspace",
    "find_workspace": "splittracer.workspace",
    "init_workspace": "splittracer.workspace",
    "load_manifest": "splittracer.manifest",
    "run_experiment": "splittracer.controller.run",
    "resolve_run": "splittracer.controller.resolve",
    "ResultsStore": "splittracer.metrics.store",
    "summarize": "splittracer.report.summary",
    "SplitModel": "splittracer.split",
    "Granularity": "splittracer.split",
    "load_split_model": "splittracer.split.load",
    "load_model": "splittracer.models",
    "profile_layers": "splittracer.split.profile",
    "verify_splits": "splittracer.split.profile",
}

__all__ = [
    "Context",
    "Granularity",
    "ResultsStore",
    "Role",
    "SplitModel",
    "SplitTracerError",
    "Task",
    "Workspace",
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
    "summarize",
    "verify_splits",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'splittracer' has no attribute '{name}'")
    return getattr(importlib.import_module(module), name)
