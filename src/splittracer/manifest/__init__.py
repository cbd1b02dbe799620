"""Experiment manifests: who takes part, where, playing what, starting with which tasks.

A manifest is YAML (see ``experiments/neurosurgeon.yaml`` made by
``splittracer init``)::

    name: neurosurgeon
    model: {source: torchvision:alexnet}
    participants:                  # order matters: the index is the stage
      phone:
        role: splittracer.builtin:SplitHead
        limits: {threads: 1, uplink: lte, latency: 20ms, cpu: 0.1, memory: 2GiB}
      cloud: {role: splittracer.builtin:SplitTail, keep_warm: true}
    playbook:
      phone:
        - task: Sweep
          params: {splits: all, next: [cloud]}
    options: {repeats: 10, warmup: 2, compression: none, timeout: 600s}

A participant (or a replicated group) may name its own ``model:`` with the
same keys; one without runs the top-level model (:meth:`Manifest.model_of`).

:func:`load_manifest` reads it into frozen objects in this order: YAML,
schema, checks that need no user code, then (unless ``check_code=False``)
the workspace's ``tasks.py`` and every role are imported and the playbook's
task names and parameters are checked against the registered task types.
Every mistake is reported with the file, line and key path before anything
starts.

Modules: ``schema`` (the typed manifest), ``load`` (reading and the checks
that need no user code), ``usercode`` (importing ``tasks.py`` and roles),
``playbook`` (checking and building the playbook's tasks) and ``located``
(file, line and key of a mistake).
"""

from __future__ import annotations

from .load import WORKSPACE_FILE, find_workspace_root, load_manifest
from .playbook import build_task
from .schema import Limits, Manifest, ModelSection, Options, Participant, PlaybookEntry
from .usercode import check_user_code, on_sys_path

__all__ = [
    "WORKSPACE_FILE",
    "Limits",
    "Manifest",
    "ModelSection",
    "Options",
    "Participant",
    "PlaybookEntry",
    "build_task",
    "check_user_code",
    "find_workspace_root",
    "load_manifest",
    "on_sys_path",
]
