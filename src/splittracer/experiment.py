"""Experiments from Python: what ``splittracer run NAME`` does, as one call::

    from splittracer import Experiment

    result = Experiment.load("lab", "neurosurgeon").run(repeats=1)
    print(result.summary.rows[0].total.median, len(result.spans))

Keyword overrides set a field of every task in the playbook that has it
(``repeats`` and ``warmup`` of ``Sweep``, ``count`` of ``Infer``, a field of
one of the workspace's own tasks) for this run only: the manifest file stays
as it is and the run's metadata keeps the overrides under ``overrides``. A
name no task of the playbook takes is a ConfigError listing those that are.

Errors are the :class:`~splittracer.errors.SplitTracerError` tree the command
line reports; a run that starts and then fails raises :class:`RunFailedError`,
which carries the result of what it measured. ``splittracer run`` goes through
:meth:`Experiment.plan` and :func:`execute` too.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from .config import did_you_mean
from .controller.resolve import ResolvedRun, resolve_run
from .controller.run import RunObserver, run_experiment
from .errors import INTERRUPTED_EXIT, ConfigError, RunError
from .manifest import Manifest, PlaybookEntry
from .metrics.spans import Span
from .metrics.store import ResultsStore
from .report.export import several_models, spans_to_frame
from .report.runs import RunSummary, run_summary
from .tasks import Task, task_registry
from .workspace import Workspace, find_workspace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Experiment", "RunFailedError", "RunResult", "execute", "overridable", "with_overrides"]


@dataclass(frozen=True, eq=False)  # eq=False: a DataFrame has no single truth value to compare by
class RunResult:
    """One finished run: its id, how it ended, the per-split summary and every span.

    ``summary`` is the table ``splittracer results show`` prints; ``spans``
    has one row per span, the columns of :data:`splittracer.report.export.COLUMNS`,
    built on first use (pandas costs a noticeable import that the CLI, which
    prints the summary only, does not pay); ``span_records`` are the same spans
    as typed records.
    """

    run_id: str
    experiment: str
    status: str  # "succeeded", "failed" or "interrupted" (Ctrl-C)
    error: str | None
    elapsed_s: float
    summary: RunSummary
    span_records: tuple[Span, ...]

    @functools.cached_property
    def spans(self) -> pd.DataFrame:
        """Every span of the run as a DataFrame, one row per span (and a ``model`` column when its
        participants ran different models)."""
        return spans_to_frame(self.span_records, several_models(self.summary.run.record))

    @property
    def succeeded(self) -> bool:
        """Whether the run ended without an error."""
        return self.status == "succeeded"


class RunFailedError(RunError):
    """A run started and then failed or was interrupted; ``result`` holds what it measured until then.

    An interrupted run (Ctrl-C) exits with 130, as shells expect; a failed one with 1.
    """

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"run {result.run_id} {result.status}: {result.error}")
        self.result = result
        if result.status == "interrupted":
            self.exit_code = INTERRUPTED_EXIT


@dataclass(frozen=True)
class Experiment:
    """One experiment of a workspace: its validated manifest, ready to run."""

    workspace: Workspace
    manifest: Manifest
    # Model files given for this run only (``--weights``, ``--dataset``): recorded with its overrides.
    model_files: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, workspace: str | Path | Workspace | None, name: str) -> Experiment:
        """Experiment ``name`` of ``workspace`` (a directory, or None: the one at or above the cwd).

        The workspace's roles and tasks are imported and the manifest checked
        against them, as ``splittracer run`` does before it starts anything.
        """
        if not isinstance(workspace, Workspace):
            workspace = find_workspace(explicit=None if workspace is None else Path(workspace))
        return cls(workspace, workspace.load_manifest(name))

    @property
    def name(self) -> str:
        """The experiment's name in its manifest."""
        return self.manifest.name

    def overridable(self) -> dict[str, tuple[str, ...]]:
        """Each name :meth:`run` takes as an override, and the playbook tasks that have it."""
        return overridable(self.manifest)

    def with_model_files(self, *, weights: Path | None = None, dataset: Path | None = None) -> Experiment:
        """This experiment with the model's weights file and/or dataset replaced, for its runs only.

        Paths are taken as given (relative to the current directory) and checked
        here: ConfigError for a missing weights file or a dataset with a mistake,
        or for an experiment without a model.
        """
        named = {"weights": weights, "dataset": dataset}
        given = {k: v.resolve() for k, v in named.items() if v is not None}
        if not given:
            return self
        model = self.manifest.model
        option = "/".join(f"--{k}" for k in given)
        own = "They replace the top-level model's files; a participant's own model: names its files."
        if model is None:
            raise ConfigError(
                f"experiment '{self.name}' has no model section: {option} has nothing to apply to",
                hint=own if self.manifest.has_models_per_participant else None,
            )
        if all(p.model is not None for p in self.manifest.participants.values()):
            raise ConfigError(
                f"every participant of '{self.name}' runs its own model: {option} applies to none", hint=own
            )
        if "weights" in given and not given["weights"].is_file():
            raise ConfigError(
                f"--weights: weights file '{given['weights']}' does not exist",
                hint="Give a state_dict saved with torch.save (nothing is downloaded).",
            )
        if "dataset" in given:
            _check_dataset(given["dataset"], model.label_indices())
        manifest = self.manifest.model_copy(update={"model": model.model_copy(update=given)})
        files = {**self.model_files, **{f"model.{k}": str(v) for k, v in given.items()}}
        return dataclasses.replace(self, manifest=manifest, model_files=files)

    def plan(self, **overrides: object) -> ResolvedRun:
        """What the controller runs: the manifest resolved, with ``overrides`` applied."""
        plan = resolve_run(with_overrides(self.manifest, overrides), self.workspace.root)
        if not overrides and not self.model_files:
            return plan
        recorded = {**msgspec.to_builtins(dict(overrides), str_keys=True), **self.model_files}
        provenance = msgspec.structs.replace(plan.provenance, overrides=recorded)
        return dataclasses.replace(plan, provenance=provenance)

    def run(self, **overrides: object) -> RunResult:
        """Run the experiment once and return its result; RunFailedError if the run fails."""
        result = execute(self.workspace, self.plan(**overrides))
        if not result.succeeded:
            raise RunFailedError(result)
        return result


def execute(workspace: Workspace, plan: ResolvedRun, *, observer: RunObserver | None = None) -> RunResult:
    """Run ``plan`` in ``workspace`` (results into its store) and read the result back.

    A failed run is returned, not raised: the caller decides (the CLI prints
    its summary first).
    """
    with ResultsStore(workspace.results_db) as store:
        outcome = run_experiment(plan, store, workspace=workspace.root, observer=observer)
        return RunResult(
            run_id=outcome.run_id,
            experiment=plan.experiment,
            status=outcome.status,
            error=outcome.error,
            elapsed_s=outcome.elapsed_s,
            summary=run_summary(store, outcome.run_id),
            span_records=tuple(store.spans(outcome.run_id)),
        )


def _check_dataset(path: Path, labels: Mapping[str, int] | None) -> None:
    from .participant.dataset import load_dataset

    try:
        load_dataset(path, dict(labels) if labels is not None else None)
    except ConfigError as exc:
        if exc.path is not None:
            raise
        raise ConfigError(f"--dataset: {exc.detail}", hint=exc.hint) from None


def with_overrides(manifest: Manifest, overrides: Mapping[str, object]) -> Manifest:
    """``manifest`` with each override set on every playbook task that has that field.

    ConfigError names an override no task takes, or a value of the wrong
    type for a task that takes it; the manifest itself is not changed.
    """
    if not overrides:
        return manifest
    known = overridable(manifest)
    _check_names(manifest.name, overrides, known)
    for name, value in overrides.items():
        for task in known[name]:
            _check_value(task, name, value)
    playbook = {
        participant: tuple(_overridden(entry, overrides) for entry in entries)
        for participant, entries in manifest.playbook.items()
    }
    return manifest.model_copy(update={"playbook": playbook})


def overridable(manifest: Manifest) -> dict[str, tuple[str, ...]]:
    """Field name -> the names of the playbook tasks that have it, sorted by field name."""
    found: dict[str, list[str]] = {}
    for entries in manifest.playbook.values():
        for entry in entries:
            cls = task_registry().get(entry.task)
            for name in _fields(cls) if cls else ():
                tasks = found.setdefault(name, [])
                if entry.task not in tasks:
                    tasks.append(entry.task)
    return {name: tuple(tasks) for name, tasks in sorted(found.items())}


def _fields(cls: type[Task]) -> list[str]:
    """The fields a manifest's ``params`` may set (``priority`` included, as there)."""
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _check_names(experiment: str, overrides: Mapping[str, object], known: Mapping[str, object]) -> None:
    unknown = [name for name in overrides if name not in known]
    if not unknown:
        return
    listing = f"Overridable here: {', '.join(known)}." if known else "Its playbook has no task to override."
    close = did_you_mean(unknown[0], known)
    raise ConfigError(
        f"no task in the playbook of '{experiment}' takes the override "
        f"{', '.join(repr(name) for name in unknown)}",
        hint=f"{close} {listing}" if close else listing,
    )


def _check_value(task: str, name: str, value: object) -> None:
    hint: Any = typing.get_type_hints(task_registry()[task])[name]
    try:
        msgspec.convert(value, hint)
    except (msgspec.ValidationError, TypeError) as exc:
        raise ConfigError(f"override {name}={value!r} does not fit task '{task}': {exc}") from exc


def _overridden(entry: PlaybookEntry, overrides: Mapping[str, object]) -> PlaybookEntry:
    cls = task_registry().get(entry.task)
    taken = {name: value for name, value in overrides.items() if cls and name in _fields(cls)}
    if not taken:
        return entry
    # model_copy keeps the entry's place in the file, so a value the task rejects is still located.
    return entry.model_copy(update={"params": {**entry.params, **taken}})
