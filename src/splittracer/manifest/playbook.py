"""The playbook's tasks: names and parameters checked against the registered task types, and built."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ..config import KeyPath, LocatedYaml
from ..errors import ConfigError, SplitTracerError
from .located import Where, error_at_key, located_error, unknown_hint
from .schema import Manifest, PlaybookEntry

if TYPE_CHECKING:  # tasks import torch: loaded only when the code is checked
    from ..tasks import Task


def check_playbook_tasks(manifest: Manifest, source: LocatedYaml) -> None:
    from ..tasks import task_registry

    for participant, entries in manifest.playbook.items():
        for index, entry in enumerate(entries):
            key: KeyPath = ("playbook", participant, index)
            cls = task_registry().get(entry.task)
            if cls is None:
                raise error_at_key(
                    source,
                    (*key, "task"),
                    f"unknown task '{entry.task}'",
                    unknown_hint(entry.task, task_registry(), "Registered tasks"),
                )
            _check_params(cls, entry, key, source)


def _check_params(cls: type[Task], entry: PlaybookEntry, key: KeyPath, source: LocatedYaml) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in entry.params:
        if name not in fields:
            raise error_at_key(
                source,
                (*key, "params", name),
                f"task '{entry.task}' has no field '{name}'",
                unknown_hint(name, fields, "Fields"),
            )
    for name, field in fields.items():
        if name not in entry.params and _required(field):
            raise error_at_key(
                source,
                (*key, "params"),
                f"task '{entry.task}' needs field '{name}'",
                f"Add '{name}: ...' under params.",
            )


def build_task(entry: PlaybookEntry) -> Task:
    """Construct the task ``entry`` names, its params converted to the field types.

    A value of the wrong type, or a task that rejects its values, becomes a
    ConfigError at the entry's line in the manifest.
    """
    from ..tasks import task_registry

    where = entry._where or Where(None, ("playbook",))
    cls = task_registry().get(entry.task)
    if cls is None:
        hint = unknown_hint(entry.task, task_registry(), "Registered tasks")
        raise located_error(where, ("task",), f"unknown task '{entry.task}'", hint)
    hints = typing.get_type_hints(cls)
    values = {name: _converted(cls, hints, name, value, where) for name, value in entry.params.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        if exc.path is not None or not exc.key:
            raise
        # A task that names the field it refuses: the mistake sits at that field's line.
        field = tuple(exc.key.split("."))
        raise located_error(
            where, ("params", *field), f"{entry.task}.{exc.key}: {exc.detail}", exc.hint
        ) from None
    except (TypeError, ValueError, SplitTracerError) as exc:
        raise located_error(where, ("params",), f"cannot build task '{entry.task}': {exc}", None) from exc


def _converted(cls: type[Task], hints: Mapping[str, Any], name: str, value: Any, where: Where) -> Any:
    if name not in {f.name for f in dataclasses.fields(cls)}:
        return value  # the constructor reports it, with the task's own wording
    try:
        return msgspec.convert(value, hints[name])
    except (msgspec.ValidationError, TypeError) as exc:
        raise located_error(
            where, ("params", name), f"task '{cls.__qualname__}' field '{name}': {exc}", None
        ) from exc


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
