"""Workspaces: the folder holding a user's roles, tasks, experiment manifests and results.

A workspace is any directory with a ``splittracer.yaml`` at its root::

    splittracer.yaml        name, results directory, default device
    roles.py, tasks.py      the user's own roles and tasks (named as roles:MyRole)
    experiments/*.yaml      one manifest per experiment
    results/                the results store (splittracer.sqlite) and reports

:func:`init_workspace` makes one, with the Neurosurgeon replication as its
first experiment; :func:`find_workspace` finds the one a command runs in.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Strict, did_you_mean, load_typed, read_yaml
from .errors import ConfigError, SplitTracerError
from .manifest import WORKSPACE_FILE, Manifest, find_workspace_root, load_manifest

if TYPE_CHECKING:
    from .plan.profiles import ProfileStore

__all__ = [
    "ExperimentInfo",
    "Workspace",
    "WorkspaceSettings",
    "find_workspace",
    "init_workspace",
    "open_workspace",
    "profile_store",
]

EXPERIMENTS_DIR = "experiments"
RESULTS_DB = "splittracer.sqlite"
_NO_WORKSPACE_HINT = "Run 'splittracer init DIR' to make one, or pass --workspace DIR."


class WorkspaceSettings(Strict):
    """What ``splittracer.yaml`` may say; every key is optional."""

    name: str | None = None
    results: Path = Path("results")
    default_device: str = "local"


@dataclass(frozen=True)
class ExperimentInfo:
    """One manifest in ``experiments/``; ``error`` says why it does not load, if it doesn't."""

    name: str
    path: Path
    description: str = ""
    participants: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Workspace:
    """A workspace directory and its settings."""

    root: Path
    settings: WorkspaceSettings

    @property
    def name(self) -> str:
        """The name from the settings, else the directory's name."""
        return self.settings.name or self.root.name

    @property
    def experiments_dir(self) -> Path:
        """Where experiment manifests live."""
        return self.root / EXPERIMENTS_DIR

    @property
    def results_dir(self) -> Path:
        """Where results go (``results`` unless the settings say otherwise)."""
        return self.root / self.settings.results

    @property
    def results_db(self) -> Path:
        """The SQLite results store of this workspace."""
        return self.results_dir / RESULTS_DB

    def experiments(self) -> list[ExperimentInfo]:
        """Every manifest in ``experiments/``, sorted by name; broken ones carry their error.

        User code is not imported here: listing stays fast and side-effect free.
        """
        return [_experiment_info(path) for path in self._manifest_files()]

    def manifest_path(self, name: str) -> Path:
        """The manifest file of experiment ``name``; ConfigError listing the known ones if none."""
        for path in self._manifest_files():
            if path.stem == name:
                return path
        known = [path.stem for path in self._manifest_files()]
        close = did_you_mean(name, known)
        listing = f"Known experiments: {', '.join(known)}." if known else "There are none yet."
        raise ConfigError(
            f"no experiment named '{name}' in {self.experiments_dir}",
            hint=f"{close} {listing}" if close else listing,
        )

    def load_manifest(self, name: str, *, check_code: bool = True) -> Manifest:
        """Load experiment ``name`` with this workspace's user code."""
        return load_manifest(self.manifest_path(name), check_code=check_code, workspace=self.root)

    def _manifest_files(self) -> list[Path]:
        if not self.experiments_dir.is_dir():
            return []
        files = [*self.experiments_dir.glob("*.yaml"), *self.experiments_dir.glob("*.yml")]
        return sorted(files, key=lambda p: p.stem)


def open_workspace(root: str | Path) -> Workspace:
    """The workspace at ``root``; ConfigError if its ``splittracer.yaml`` is invalid."""
    root = Path(root).resolve()
    settings_file = root / WORKSPACE_FILE
    if not settings_file.is_file():
        raise SplitTracerError(f"{root} is not a workspace (no {WORKSPACE_FILE})", hint=_NO_WORKSPACE_HINT)
    source = read_yaml(settings_file)
    if source.data is None:  # an empty file marks a workspace with default settings
        return Workspace(root, WorkspaceSettings())
    return Workspace(root, load_typed(WorkspaceSettings, source))


def find_workspace(start: Path | None = None, explicit: Path | None = None) -> Workspace:
    """The workspace at ``explicit``, else the nearest one at or above ``start`` (default: cwd)."""
    if explicit is not None:
        return open_workspace(explicit)
    begin = Path.cwd() if start is None else Path(start)
    root = find_workspace_root(begin)
    if root is None:
        raise SplitTracerError(
            f"no {WORKSPACE_FILE} in {begin.resolve()} or any folder above it", hint=_NO_WORKSPACE_HINT
        )
    return open_workspace(root)


def profile_store(workspace: Path | None = None) -> ProfileStore:
    """The device profiles of workspace ``workspace``, else of the one around the current
    directory, else the user's own (when no workspace is in sight)."""
    from .plan.profiles import ProfileStore, default_profile_dir  # plan/ loads torch: only when asked

    root = workspace if workspace is not None else find_workspace_root(Path.cwd())
    if root is None:
        return ProfileStore(default_profile_dir())
    return ProfileStore(default_profile_dir(open_workspace(root).results_dir))


def init_workspace(directory: str | Path, *, force: bool = False) -> Workspace:
    """Scaffold a workspace in ``directory``; refuses to overwrite files unless ``force``."""
    root = Path(directory).resolve()
    files = _scaffold(root.name)
    existing = [name for name in files if (root / name).exists()]
    if existing and not force:
        raise SplitTracerError(
            f"{root} already has {', '.join(existing)}; nothing was written",
            hint="Pass force=True (splittracer init --force) to overwrite them.",
        )
    for name, text in files.items():
        _write_atomic(root / name, text)
    (root / "results").mkdir(parents=True, exist_ok=True)
    return open_workspace(root)


def _experiment_info(path: Path) -> ExperimentInfo:
    try:
        manifest = load_manifest(path, check_code=False)
    except SplitTracerError as exc:
        return ExperimentInfo(name=path.stem, path=path, error=exc.message)
    return ExperimentInfo(
        name=path.stem,
        path=path,
        description=manifest.description,
        participants=tuple(manifest.participants),
    )


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def _scaffold(name: str) -> dict[str, str]:
    return {
        WORKSPACE_FILE: _SETTINGS.format(name=name),
        "roles.py": _ROLES,
        "tasks.py": _TASKS,
        f"{EXPERIMENTS_DIR}/neurosurgeon.yaml": _NEUROSURGEON,
        f"{EXPERIMENTS_DIR}/lab-neurosurgeon.yaml": _LAB_NEUROSURGEON,
        f"{EXPERIMENTS_DIR}/neurosurgeon-paper.yaml": _NEUROSURGEON_PAPER,
        f"{EXPERIMENTS_DIR}/fleet.yaml": _FLEET,
        f"{EXPERIMENTS_DIR}/stream.yaml": _STREAM,
    }


_SETTINGS = """\
# SplitTracer workspace settings.
name: {name}
results: results          # where the results store and reports go
default_device: local     # device for participants that name none
"""

_TASKS = '''\
"""Your own tasks: typed messages participants send each other.

Fields may be bool, int, float, str, bytes, None, torch.Tensor, and lists,
tuples and dict[str, ...] of them. Name a task in a manifest's playbook by
its class name (or by ``class Greeting(Task, name="...")``).
"""

from splittracer.tasks import Task


class Greeting(Task):
    """An example task: a line of text and how many participants it has passed."""

    text: str
    hops: int = 0
'''

_ROLES = '''\
"""Your own roles: how a participant reacts to each task.

Name a role in a manifest as ``roles:ClassName`` (this file is roles.py).
"""

from splittracer.roles import Context, Role, handles

from tasks import Greeting


class Echo(Role):
    """An example role: the first to be greeted greets every other participant once."""

    @handles(Greeting)
    def greet(self, task: Greeting, ctx: Context) -> None:
        ctx.record("greeting_hops", task.hops)
        if task.hops == 0:
            for peer in ctx.peers:
                ctx.send(peer, Greeting(text=task.text, hops=1))
        ctx.finish()
'''

_NEUROSURGEON = """\
# Neurosurgeon (Kang et al. 2017) on one machine: AlexNet split after every layer, a phone
# much slower than the cloud, over the paper's three uplinks. The phone's CPU limit uses a
# cgroup where this user can write one (root) and a throttle process otherwise (no root):
# see README, "CPU and memory limits". 'results show' states how much slower it measured.
name: neurosurgeon
description: AlexNet split after every layer, a CPU-limited phone -> cloud over 3G, LTE and Wi-Fi
model:
  source: torchvision:alexnet
participants:               # order matters: the phone runs the first layers
  phone:
    role: splittracer.builtin:SplitHead
    limits:
      threads: 1
      cpu: 0.1              # a tenth of one CPU: about 10x its unthrottled time
      by: auto              # cgroup where one can be written, else signals (no root needed)
      uplink: lte           # 5.85 Mbit/s; the sweep below sets each of its uplinks in turn
  cloud:
    role: splittracer.builtin:SplitTail
    # torch_device: cuda      # compute on the device's GPU (cuda, cuda:N, mps); default cpu
    limits:
      threads: 2
playbook:
  phone:
    - task: Sweep
      params: {splits: all, next: [cloud], uplinks: [3g, lte, wifi]}   # 1.1, 5.85, 18.88 Mbit/s
options:
  repeats: 2                # timed inferences per split point and link (neurosurgeon-paper: 3)
  warmup: 0                 # untimed inferences before them (the 3G link makes each one cost)
"""

_NEUROSURGEON_PAPER = """\
# The quick start's 'neurosurgeon' with more repeats and a warm-up inference per split:
# tighter medians, twice the run time. The phone's CPU limit uses a cgroup where one can be
# written, signals otherwise; 'results show' states how much slower the phone measured.
name: neurosurgeon-paper
description: AlexNet split after every layer, a CPU-limited phone -> cloud over 3G, LTE and Wi-Fi
model:
  source: torchvision:alexnet
participants:
  phone:
    role: splittracer.builtin:SplitHead
    limits:
      threads: 1
      cpu: 0.1              # a tenth of one CPU: about 10x its unthrottled time
      uplink: lte           # the starting link; the sweep sets each of its uplinks in turn
  cloud:
    role: splittracer.builtin:SplitTail
    limits:
      threads: 2
playbook:
  phone:
    - task: Sweep
      params: {splits: all, next: [cloud], uplinks: [3g, lte, wifi]}   # 1.1, 5.85, 18.88 Mbit/s
options:
  repeats: 3
  warmup: 1
"""

_LAB_NEUROSURGEON = """\
# Neurosurgeon across two hosts of the lab that 'sudo splittracer testbed up --hosts 2' builds
# (add --bandwidth 10mbit to shape their link). Run it with the devices it registered:
#   SPLITTRACER_DEVICES=<the devices.yaml it printed> splittracer run lab-neurosurgeon
name: lab-neurosurgeon
description: AlexNet split after every layer, across two lab hosts (splittracer testbed up)
model:
  source: torchvision:alexnet
participants:
  phone:
    device: st-h1
    role: splittracer.builtin:SplitHead
    limits:
      threads: 1
  cloud:
    device: st-h2
    role: splittracer.builtin:SplitTail
    limits:
      threads: 1
playbook:
  phone:
    - task: Sweep
      params: {splits: all, next: [cloud]}
options:
  repeats: 5
  warmup: 1
"""

_FLEET = """\
# A fleet: four cameras share one edge server. Each replica (camera-0 .. camera-3) runs its own
# copy of the playbook; every camera is at stage 0, the edge at stage 1. The run ends when every
# camera has finished; 'results show' counts 4 x 10 inferences, each with its own id.
name: fleet
description: Four cameras (replicas) stream AlexNet frames split after pool5 to one edge
model:
  source: torchvision:alexnet
participants:
  camera:
    role: splittracer.builtin:SplitHead
    replicas: 4             # camera-0 .. camera-3
    limits:
      threads: 1
      uplink: wifi
  edge:
    role: splittracer.builtin:SplitTail
    workers: 2              # serve two cameras at once
    limits:
      threads: 1
playbook:
  camera:
    - task: Stream
      params: {split: 13, next: [edge], count: 10, inflight: 2, deadline: 300ms}
options:
  warmup: 1
"""

_STREAM = """\
# Frames through a pipeline: the phone computes frame n+1 while frame n is on the LTE link and
# at the edge. One frame at a time, then four in flight, then Poisson arrivals at 10 frames/s;
# 'results show' compares each stream's achieved frames/s with its pipeline bound.
name: stream
description: AlexNet frames split after pool5, phone -> edge over LTE, closed and open loop
model:
  source: torchvision:alexnet
participants:
  phone:
    role: splittracer.builtin:SplitHead
    limits:
      threads: 1
      uplink: lte           # 36,864 bytes a frame: 50 ms on the link
  edge:
    role: splittracer.builtin:SplitTail
    limits:
      threads: 1
playbook:
  phone:
    - task: Stream
      params: {split: 13, next: [edge], count: 20, inflight: 1, finish: false}
    - task: Stream
      params: {split: 13, next: [edge], count: 40, inflight: 4, finish: false}
    - task: Stream
      params: {split: 13, next: [edge], count: 40, rate: 10, arrivals: poisson, deadline: 200ms}
options:
  warmup: 2
"""
