"""Layer placements a playbook names, checked against the model before anything starts.

(Not where participants run: that is :mod:`.placement`.) An ``Infer``'s
``placement`` and a ``Sweep``'s ``placements`` name the first device's
layers: ``1-5,7``, a list of indices, ranges and names, or a YAML/JSON file
(relative to the manifest) holding either, or a mapping with ``first``.
Each is checked against the captured model (known layers, closed under data
dependencies, only tensors crossing) and replaced by its label, the ranges
the participants read back; a mistake is a ConfigError at its line naming
the offending layer, exit 2. ``dag: true`` is checked here too: it places
by minimum cut, so it needs ``split: auto``, two participants and the
latency objective.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..builtin import Infer, Sweep
from ..config import KeyPath
from ..errors import ConfigError, SplitTracerError
from ..manifest import Manifest, find_workspace_root, on_sys_path
from ..plan.chain import Link
from ..tasks import Task
from .autosplit import planned_costs

if TYPE_CHECKING:  # placements load the model (torch) only for a playbook that names one
    from ..split.model import SplitModel
    from ..split.placement import PlacementSpec

__all__ = ["resolve_placements"]

_FILES = (".yaml", ".yml", ".json")


def resolve_placements(
    manifest: Manifest, playbook: Sequence[tuple[str, Task]], workspace: Path | None = None
) -> tuple[tuple[str, Task], ...]:
    """``playbook`` (built from ``manifest``, in its order) with every placement checked and
    written as its label, a sweep's ``top`` placements added; ConfigError for a mistake, at its line."""
    # Each head places layers of the model it runs (its own ``model:``, else the manifest's).
    resolvers = {name: _Resolver(manifest.as_seen_by(name), workspace) for name in manifest.playbook}
    keys = [
        ("playbook", name, i, "params")
        for name, entries in manifest.playbook.items()
        for i in range(len(entries))
    ]
    return tuple((name, resolvers[name].resolve(key, task)) for key, (name, task) in zip(keys, playbook))


@dataclasses.dataclass
class _Resolver:
    manifest: Manifest
    workspace: Path | None = None

    def resolve(self, key: KeyPath, task: Task) -> Task:
        if isinstance(task, Infer):
            self._check_dag(key, task)
            if task.placement is not None:
                self._check_infer(key, task)
                label = self._label((*key, "placement"), task.placement)
                self._check_route((*key, "next"), task.next, label)
                return dataclasses.replace(task, placement=label)
        if isinstance(task, Sweep) and (task.placements or task.top):
            if task.cuts is not None or task.splits != "all":
                field = "cuts" if task.cuts is not None else "splits"
                raise self._error((*key, field), "give placements or splits (cuts), not both", None)
            labels = [self._label((*key, "placements", i), spec) for i, spec in enumerate(task.placements)]
            for label in labels or [""]:
                self._check_route((*key, "next"), task.next, label)
            labels += [label for label in self._top(key, task) if label not in labels]
            return dataclasses.replace(task, placements=list(labels), top=0)
        return task

    def _top(self, key: KeyPath, task: Sweep) -> list[str]:
        """The planner's ``top`` placements predicted fastest on the head's emulated uplink."""
        if task.top == 0:
            return []
        where = (*key, "top")
        if task.top < 0:
            raise self._error(where, f"top {task.top} is no count", "E.g. top: 3.")
        if task.uplinks:
            raise self._error(where, "top plans for one link, but the sweep has uplinks", "Drop one of them.")
        self._check_route((*key, "next"), task.next)
        head = self.manifest.participants[str(key[1])]
        if not math.isfinite(head.limits.uplink_bps):
            raise self._error(
                where,
                f"top plans for the link '{head.name}' sends over, but its uplink is not emulated",
                f"Set participants.{head.name}.limits.uplink (e.g. 20mbit), or list the placements.",
            )
        from ..plan.dag import top_placements

        tail = self.manifest.participants.get(task.next[0])
        reply = Link(tail.limits.uplink_bps, tail.limits.latency_s) if tail else Link()
        graph, costs = planned_costs(self.manifest, self.workspace, key, [head.name, *task.next])
        link = Link(head.limits.uplink_bps, head.limits.latency_s)
        return [
            p.placement for p in top_placements(graph, costs[0].ms, costs[1].ms, link, task.top, reply=reply)
        ]

    def _check_infer(self, key: KeyPath, task: Infer) -> None:
        if isinstance(task.split, str) or task.split >= 0 or task.cuts is not None:
            field = "cuts" if task.cuts is not None else "split"
            raise self._error(
                (*key, field),
                "give placement or a split, not both",
                "Drop split to run the placement, or placement to run the split.",
            )

    def _check_dag(self, key: KeyPath, task: Infer) -> None:
        if not task.dag:
            return
        if task.split != "auto":
            raise self._error(
                (*key, "dag"),
                "dag: true places the model by minimum cut, which split: auto plans",
                "Write split: auto beside dag: true (adaptive re-planning is for split points).",
            )
        if task.objective != "latency":
            raise self._error((*key, "objective"), "the minimum-cut placement minimises latency only", None)
        self._check_route((*key, "next"), task.next)

    def _check_route(self, key: KeyPath, route: list[str], label: str = "") -> None:
        """A placement needs a participant per device after the first: one, or one per '|' more."""
        from ..placed import devices

        if len(route) != devices(label) - 1:
            raise self._error(
                key,
                f"placement {label or '(planned)'} runs on {devices(label)} participants, "
                f"but next names {len(route) + 1} with this one",
                f"Name {devices(label) - 1} participant(s) in next.",
            )

    def _label(self, key: KeyPath, spec: PlacementSpec) -> str:
        from ..placed import placed

        try:
            return placed(self._model, self._read(key, spec)).label
        except ConfigError:
            raise
        except SplitTracerError as exc:
            raise self._error(key, f"placement: {exc.message}", exc.hint) from None

    def _read(self, key: KeyPath, spec: PlacementSpec) -> PlacementSpec:
        """A file named by the spec is read (relative to the manifest); anything else is the spec."""
        if not (isinstance(spec, str) and spec.strip().endswith(_FILES)):
            return spec
        path = Path(spec.strip())
        if not path.is_absolute() and self.manifest.path is not None:
            path = self.manifest.path.parent / path
        if not path.is_file():
            raise self._error(
                key, f"no placement file {path}", "Give a YAML or JSON file, or the layers inline."
            )
        from ..split.placement import read_placement

        return read_placement(str(path))

    @cached_property
    def _model(self) -> SplitModel:
        from ..split.capture import muffled
        from ..split.load import load_split_model

        m = self.manifest.model
        if m is None:
            raise self._error(("model",), "a placement needs the manifest's model", "Add a 'model:' section.")
        root = None if self.manifest.path is None else find_workspace_root(self.manifest.path.parent)
        code = contextlib.nullcontext() if root is None else on_sys_path(root)
        try:
            with muffled(), code:
                loaded = load_split_model(
                    m.source, input_shape=m.input_shape, granularity=m.granularity, override=m.override
                )
        except SplitTracerError as exc:
            raise self.manifest.error_at(("model", "source"), exc.message, hint=exc.hint) from None
        return loaded.split

    def _error(self, key: KeyPath, message: str, hint: str | None) -> ConfigError:
        return self.manifest.error_at(key, message, hint=hint)
