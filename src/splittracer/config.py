"""Read YAML files into typed, frozen objects with errors that point at lines.

Every YAML file SplitTracer reads (manifests, split overrides, settings)
goes through :func:`load_typed`: the file is composed with PyYAML to keep
each key's line, validated with a pydantic model that forbids unknown keys,
and any problem becomes a :class:`ConfigError` naming the file, the line,
the key path, what was expected and, for a misspelt key, what was meant.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)
KeyPath = tuple[str | int, ...]


class Strict(BaseModel):
    """Base for config models: unknown keys rejected, instances frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class LocatedYaml:
    """Parsed YAML data and the 1-based line of every key path in it."""

    data: Any
    lines: Mapping[KeyPath, int]
    path: str

    def line_of(self, key: KeyPath) -> int | None:
        """Line of ``key``, or of its nearest ancestor that has one."""
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


def read_yaml(path: str | Path, text: str | None = None) -> LocatedYaml:
    """Parse a YAML file, keeping the line of every key."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror}", path=name) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", path=name) from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            f"YAML syntax error: {exc.problem or exc.context}",
            path=name,
            line=mark.line + 1 if mark else None,
            hint="Check indentation and that every 'key: value' has a space after the colon.",
        ) from exc
    except yaml.YAMLError as exc:  # unmarked: a character YAML does not allow, say
        raise ConfigError(f"not readable as YAML: {exc}", path=name) from exc
    lines: dict[KeyPath, int] = {}
    if node is not None:
        _collect_lines(node, (), lines)
    return LocatedYaml(data, lines, name)


def load_typed(model: type[Model], source: LocatedYaml, *, context: Mapping[str, Any] | None = None) -> Model:
    """Validate ``source`` into ``model``; the first problem becomes a ConfigError.

    ``context`` reaches the model's validators (e.g. the directory that
    relative paths in the file are relative to).
    """
    if not isinstance(source.data, dict):
        raise ConfigError(
            "expected a mapping of keys to values at the top of the file",
            path=source.path,
            line=1,
        )
    try:
        return model.model_validate(source.data, context=dict(context or {}))
    except ValidationError as exc:
        raise _to_config_error(exc, model, source) from None


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str | None:
    """A 'Did you mean X?' sentence when a close match exists."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"Did you mean '{close[0]}'?" if close else None


def _collect_lines(node: yaml.Node, key: KeyPath, lines: dict[KeyPath, int]) -> None:
    lines[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            child = (*key, key_node.value)
            _collect_lines(value_node, child, lines)
            lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _collect_lines(item, (*key, index), lines)


def _to_config_error(exc: ValidationError, model: type[BaseModel], source: LocatedYaml) -> ConfigError:
    errors = exc.errors()
    # A misspelt key also makes the real one missing; the unknown key is the one to report.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    # A key that only looks like a union tag ('0[') keeps its place: loc is never emptied.
    loc: KeyPath = tuple(p for p in error["loc"] if not _is_union_tag(p)) or tuple(error["loc"])
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    hint = None
    if kind == "extra_forbidden":
        known = _fields_at(model, loc[:-1])
        message = f"unknown key '{loc[-1]}'"
        hint = did_you_mean(str(loc[-1]), known)
        if known:
            hint = f"{hint + ' ' if hint else ''}Allowed keys here: {', '.join(sorted(known))}."
    elif kind == "missing":
        message = f"missing required key '{loc[-1]}'"
        hint = f"Add '{loc[-1]}:' here."
    elif kind == "value_error":
        # A validator's own sentence, without pydantic's "Value error, " prefix.
        reason = str(error.get("ctx", {}).get("error", error["msg"]))
        got = error.get("input")
        message = reason if str(got) in reason else f"{reason} (got {_short(got)})"
    else:
        got = error.get("input")
        message = f"{error['msg']} (got {_short(got)})"
    return ConfigError(message, path=source.path, line=source.line_of(loc), key=dotted, hint=hint)


def _is_union_tag(part: str | int) -> bool:
    # pydantic adds the tried type's name (e.g. 'int', 'list[str]') to the location of union errors
    return isinstance(part, str) and ("[" in part or part in ("int", "str", "float", "bool"))


def _fields_at(model: type[BaseModel], loc: KeyPath) -> list[str]:
    """Field names of the pydantic model found by walking ``loc`` from ``model``."""
    current: Any = model
    for part in loc:
        current = _step(current, part)
        if current is None:
            return []
    current = _unwrap_optional(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [info.alias or name for name, info in current.model_fields.items()]
    return []


def _step(annotation: Any, part: str | int) -> Any:
    annotation = _unwrap_optional(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(str(part))
        return field.annotation if field else None
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    if origin in (list, tuple) and args:
        return args[0]
    return None


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
