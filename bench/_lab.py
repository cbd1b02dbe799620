"""Shared helpers for the benchmarks: temporary workspaces, medians, and the experiments they
share with the tests (``tests/manifests.py``, re-exported here)."""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

# torch keeps its compiler cache in the system temp folder (made when torch.export is imported,
# here and in every participant a benchmark starts): a folder of the script's own, removed at exit.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="splittracer-bench-torch-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], True)

import torch

from splittracer.controller.resolve import resolve_run
from splittracer.controller.run import RunOutcome, run_experiment
from splittracer.metrics.store import ResultsStore
from splittracer.metrics.system import cpu_model
from splittracer.workspace import Workspace, init_workspace

# A script run as ``python bench/x.py`` has only bench/ on its import path: the repository root
# goes there too, as pytest puts it, so that the benchmarks build the very manifests the tests do.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.manifests import alexnet_pair, fan_in, pool5

__all__ = ["alexnet_pair", "fan_in", "machine", "median", "pool5", "run", "workspace"]


def machine() -> str:
    """One line naming the machine the numbers come from."""
    return (
        f"{cpu_model()}, {platform.machine()}, torch {torch.__version__}, python {platform.python_version()}"
    )


def workspace(manifests: dict[str, str], files: dict[str, str] | None = None) -> Workspace:
    """A throw-away workspace with the given manifests and extra files, removed when the script ends."""
    scratch = Path(tempfile.mkdtemp(prefix="splittracer-bench-"))
    atexit.register(shutil.rmtree, scratch, True)
    ws = init_workspace(scratch / "ws")
    for name, text in manifests.items():
        (ws.experiments_dir / f"{name}.yaml").write_text(textwrap.dedent(text))
    for name, text in (files or {}).items():
        (ws.root / name).write_text(textwrap.dedent(text))
    return ws


def run(ws: Workspace, name: str) -> tuple[RunOutcome, ResultsStore]:
    """Run one experiment and fail loudly if it failed."""
    store = ResultsStore(ws.results_db)
    outcome = run_experiment(resolve_run(ws.load_manifest(name)), store, workspace=ws.root)
    if outcome.status != "succeeded":
        raise SystemExit(f"run failed: {outcome.error}")
    return outcome, store


def median(values: list[float]) -> float:
    """Median of a non-empty list."""
    return statistics.median(values)
