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

:func:`load_manifest` reads it into frozen objects in this order: YAML,
schema, checks that need no user code, then (unless ``check_code=False``)
the workspace's ``tasks.py`` and every role are imported and the playbook's
task names and parameters are checked against the registered task types.
Every mistake is reported with the file, line and key path before anything
starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import re
import sys
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from pydantic import (
    Field,
    JsonValue,
    NonNegativeInt,
    PositiveInt,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .config import KeyPath, LocatedYaml, Strict, did_you_mean, load_typed, read_yaml
from .errors import ConfigError, SplitTracerError, UserCodeError
from .units import parse_duration, parse_rate, parse_size
from .wire.codecs import CODECS

if TYPE_CHECKING:  # user code, roles and tasks import torch: loaded only when the code is checked
    from .roles import Role
    from .tasks import Task

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
]

WORKSPACE_FILE = "splittracer.yaml"
"""The file that marks a workspace's root directory."""

_EXPERIMENT_NAME = re.compile(r"^[a-z0-9_-]+$")
_PARTICIPANT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_ROLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_TORCH_DEVICE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MODEL_SOURCE = re.compile(r"^[A-Za-z_][\w.]*:\S+$")
_GRANULARITY = re.compile(r"^(leaf|block|depth=[1-9][0-9]*)$")


# --- schema ----------------------------------------------------------------------------------


class ModelSection(Strict):
    """The model to split; relative paths are resolved against the manifest's directory."""

    source: str
    input_shape: tuple[PositiveInt, ...] | None = None
    granularity: str = "leaf"
    override: Path | None = None
    weights: Path | None = None
    dataset: Path | None = None

    @field_validator("source")
    @classmethod
    def _source_form(cls, value: str) -> str:
        if not _MODEL_SOURCE.match(value):
            raise ValueError("expected SOURCE:NAME, e.g. torchvision:alexnet or mymodels:build")
        return value

    @field_validator("granularity")
    @classmethod
    def _granularity_form(cls, value: str) -> str:
        if not _GRANULARITY.match(value):
            raise ValueError("expected leaf, block or depth=N")
        return value

    @field_validator("override", "weights", "dataset")
    @classmethod
    def _relative_to_manifest(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("base_dir")
        if value is None or base is None or value.is_absolute():
            return value
        return Path(base) / value


class Limits(Strict):
    """Emulated limits of one participant; the text is kept as written.

    ``cpu`` (a fraction of one CPU, e.g. 0.1) and ``memory`` (e.g. ``2GiB``)
    are enforced by the kernel with cgroups (:mod:`splittracer.devices.limits`).
    """

    threads: PositiveInt | None = None
    uplink: str = "unlimited"
    latency: str = "0s"
    cpu: float | None = Field(default=None, ge=0.001, le=1024)
    memory: str | None = None

    @field_validator("uplink", "latency", "memory", mode="before")
    @classmethod
    def _valid_text(cls, value: object, info: ValidationInfo) -> object:
        # A bare YAML number reaches the unit parser, which says a unit is needed.
        text = str(value) if isinstance(value, int | float) else value
        if isinstance(text, str):
            _UNIT_PARSERS[info.field_name or ""](text)
        return text

    @property
    def uplink_bps(self) -> float:
        """Uplink in bit/s; ``math.inf`` when unlimited."""
        return parse_rate(self.uplink)

    @property
    def latency_s(self) -> float:
        """One-way latency added to what this participant sends, in seconds."""
        return parse_duration(self.latency)

    @property
    def memory_bytes(self) -> int | None:
        """The memory limit in bytes; None when there is none."""
        return None if self.memory is None else parse_size(self.memory)


_UNIT_PARSERS = {"uplink": parse_rate, "latency": parse_duration, "memory": parse_size}


class Participant(Strict):
    """One participant: where it runs, which role it plays, its limits and role parameters.

    ``profile`` names the stored device profile (``splittracer profile``) that
    describes it, for ``split: auto`` and ``split: adaptive``.
    """

    device: str = "local"
    role: str
    torch_device: str = "cpu"
    limits: Limits = Field(default_factory=Limits)
    params: dict[str, JsonValue] = Field(default_factory=dict)
    profile: str | None = None
    keep_warm: bool = False  # its CPU kept busy while it waits, unlike an idle device (participant/warm.py)
    _name: str = PrivateAttr(default="")
    _stage: int = PrivateAttr(default=-1)

    @field_validator("torch_device")
    @classmethod
    def _torch_device_form(cls, value: str) -> str:
        if not _TORCH_DEVICE.match(value):
            raise ValueError("expected 'cpu', 'cuda', 'cuda:N' or 'mps' (where this participant computes)")
        return value

    @field_validator("profile")
    @classmethod
    def _profile_form(cls, value: str | None) -> str | None:
        if value is not None and not _PROFILE.match(value):
            raise ValueError("expected a profile name: letters, digits, '-', '_' and '.', e.g. local-1t")
        return value

    @field_validator("role")
    @classmethod
    def _role_form(cls, value: str) -> str:
        if not _ROLE.match(value):
            raise ValueError("expected module:Class, e.g. roles:MyHead or splittracer.builtin:SplitHead")
        return value

    @property
    def name(self) -> str:
        """The participant's name in the manifest."""
        return self._name

    @property
    def stage(self) -> int:
        """Position in the manifest: 0 for the first device of the pipeline."""
        return self._stage


@dataclasses.dataclass(frozen=True)
class _Where:
    """Where a playbook entry sits in its manifest, for errors raised when it is built."""

    source: LocatedYaml | None
    key: KeyPath


class PlaybookEntry(Strict):
    """One initial task: a registered task name and its field values."""

    task: str
    params: dict[str, JsonValue] = Field(default_factory=dict)
    _where: _Where | None = PrivateAttr(default=None)


class Options(Strict):
    """Run-wide options."""

    repeats: PositiveInt = 10
    warmup: NonNegativeInt = 2
    compression: str = "none"
    seed: int = 0
    timeout: str | None = None
    sample_interval: str = "100ms"  # system and energy sampling on every participant

    @field_validator("sample_interval", mode="before")
    @classmethod
    def _valid_interval(cls, value: object) -> object:
        if parse_duration(str(value)) <= 0:
            raise ValueError("expected a positive duration such as 100ms")
        return str(value)

    @property
    def sample_interval_s(self) -> float:
        """System-metric sampling interval in seconds."""
        return parse_duration(self.sample_interval)

    @field_validator("compression")
    @classmethod
    def _known_codec(cls, value: str) -> str:
        if value not in CODECS:
            close = did_you_mean(value, CODECS)
            raise ValueError(f"expected one of {', '.join(CODECS)}.{' ' + close if close else ''}")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _valid_timeout(cls, value: object) -> object:
        if value is not None:
            parse_duration(str(value))
        return value if value is None else str(value)

    @property
    def timeout_s(self) -> float:
        """The whole-run deadline in seconds; ``math.inf`` when none is set."""
        return math.inf if self.timeout is None else parse_duration(self.timeout)


class Manifest(Strict):
    """A validated experiment manifest. ``participants`` keeps the file's order."""

    name: str
    description: str = ""
    model: ModelSection | None = None
    participants: dict[str, Participant] = Field(min_length=1)
    playbook: dict[str, tuple[PlaybookEntry, ...]]
    options: Options = Field(default_factory=Options)
    _source: LocatedYaml | None = PrivateAttr(default=None)
    _text: str = PrivateAttr(default="")

    @field_validator("name")
    @classmethod
    def _name_form(cls, value: str) -> str:
        if not _EXPERIMENT_NAME.match(value):
            raise ValueError("expected lower-case letters, digits, '_' and '-' only, e.g. neurosurgeon")
        return value

    @model_validator(mode="after")
    def _number_participants(self) -> Manifest:
        for stage, (name, participant) in enumerate(self.participants.items()):
            participant._name, participant._stage = name, stage
        return self

    @property
    def path(self) -> Path | None:
        """The file this manifest was read from, if any."""
        return Path(self._source.path) if self._source else None

    @property
    def manifest_text(self) -> str:
        """The YAML exactly as read, for the run's snapshot."""
        return self._text

    def stage_of(self, name: str) -> int:
        """The stage (index in ``participants``) of participant ``name``."""
        participant = self.participants.get(name)
        if participant is None:
            raise ConfigError(
                f"no participant named '{name}'",
                path=self._source.path if self._source else None,
                hint=_unknown_hint(name, self.participants, "Participants"),
            )
        return participant.stage

    def line_of(self, key: KeyPath) -> int | None:
        """Line of ``key`` (or its nearest ancestor) in the manifest file."""
        return self._source.line_of(key) if self._source else None

    def error_at(self, key: KeyPath, message: str, hint: str | None = None) -> ConfigError:
        """A mistake at ``key``, located by file and line for the user."""
        path = str(self.path) if self.path else None
        return ConfigError(message, path=path, line=self.line_of(key), key=_dotted(key), hint=hint)


# --- loading ---------------------------------------------------------------------------------


def load_manifest(
    path: str | Path, *, check_code: bool = True, workspace: str | Path | None = None
) -> Manifest:
    """Read, validate and check a manifest; the first mistake raises ConfigError or UserCodeError.

    ``workspace`` is the directory holding the user's ``roles.py``/``tasks.py``;
    by default the nearest ancestor with a ``splittracer.yaml``, else the
    manifest's own directory. ``check_code=False`` skips importing user code
    and with it the checks of task names and parameters.
    """
    path = Path(path)
    text = _read_text(path)
    source = read_yaml(path, text)
    manifest = load_typed(Manifest, source, context={"base_dir": path.parent})
    _attach_source(manifest, source, text)
    _check_names(manifest, source)
    _check_playbook_participants(manifest, source)
    if check_code:
        check_user_code(manifest, Path(workspace) if workspace else _default_code_dir(path))
        _check_playbook_tasks(manifest, source)
    return manifest


def find_workspace_root(start: Path) -> Path | None:
    """The nearest directory at or above ``start`` holding a ``splittracer.yaml``."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / WORKSPACE_FILE).is_file():
            return directory
    return None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(path)) from exc


def _attach_source(manifest: Manifest, source: LocatedYaml, text: str) -> None:
    manifest._source, manifest._text = source, text
    for participant, entries in manifest.playbook.items():
        for index, entry in enumerate(entries):
            entry._where = _Where(source, ("playbook", participant, index))


def _default_code_dir(path: Path) -> Path:
    return find_workspace_root(path.parent) or path.parent.resolve()


# --- checks that need no user code -----------------------------------------------------------


def _check_names(manifest: Manifest, source: LocatedYaml) -> None:
    for name in manifest.participants:
        if not _PARTICIPANT_NAME.match(name):
            raise _error(
                source,
                ("participants", name),
                f"participant name '{name}' is not an identifier",
                "Use letters, digits, '_' and '-', starting with a letter or '_' (e.g. CLIENT1).",
            )


def _check_playbook_participants(manifest: Manifest, source: LocatedYaml) -> None:
    for name in manifest.playbook:
        if name not in manifest.participants:
            raise _error(
                source,
                ("playbook", name),
                f"the playbook names participant '{name}', which is not under 'participants'",
                _unknown_hint(name, manifest.participants, "Participants"),
            )


# --- user code -------------------------------------------------------------------------------


def check_user_code(manifest: Manifest, workspace_dir: str | Path) -> dict[str, type[Role]]:
    """Import the workspace's ``tasks.py`` and every participant's role; name -> role class.

    Raises UserCodeError naming the participant, the manifest line of its
    ``role:`` and what was found instead of a Role subclass.
    """
    workspace = Path(workspace_dir).resolve()
    with on_sys_path(workspace):
        _import_workspace_tasks(workspace)
        return {name: _load_role(manifest, p, workspace) for name, p in manifest.participants.items()}


def _import_workspace_tasks(workspace: Path) -> None:
    file = workspace / "tasks.py"
    if not file.is_file():
        return
    _forget_foreign("tasks", workspace)
    try:
        importlib.import_module("tasks")
    except SplitTracerError as exc:
        raise UserCodeError(f"{file}: {exc.message}", hint=exc.hint) from exc
    except Exception as exc:
        raise UserCodeError(f"importing {file} failed: {exc!r}") from exc


def _load_role(manifest: Manifest, participant: Participant, workspace: Path) -> type[Role]:
    from .models import import_object
    from .roles import Role

    module, _, attr = participant.role.partition(":")
    where = _where_text(manifest, ("participants", participant.name, "role"))
    _forget_foreign(module.split(".")[0], workspace)
    try:
        found = import_object(module, attr)
    except UserCodeError as exc:
        missing_module = isinstance(exc.__cause__, ModuleNotFoundError)
        raise UserCodeError(
            f"{where}: participant '{participant.name}' cannot load role '{participant.role}': {exc.message}",
            hint=_module_hint(module, workspace) if missing_module else exc.hint,
        ) from exc
    if not (isinstance(found, type) and issubclass(found, Role)):
        raise UserCodeError(
            f"{where}: participant '{participant.name}' has role '{participant.role}', which is "
            f"{_describe(found)}, not a subclass of splittracer.roles.Role",
            hint=f"Name a class written as: class {attr.split('.')[-1]}(Role) with @handles methods.",
        )
    return found


@contextlib.contextmanager
def on_sys_path(directory: Path) -> Iterator[None]:
    """Put ``directory`` first on sys.path while user code is imported."""
    entry = str(directory)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _forget_foreign(top: str, workspace: Path) -> None:
    """Drop a cached module ``top`` loaded from elsewhere when this workspace has its own."""
    if not ((workspace / f"{top}.py").is_file() or (workspace / top).is_dir()):
        return
    file = getattr(sys.modules.get(top), "__file__", None)
    if file and not Path(file).resolve().is_relative_to(workspace):
        for name in [n for n in sys.modules if n == top or n.startswith(f"{top}.")]:
            del sys.modules[name]


def _module_hint(module: str, workspace: Path) -> str:
    return (
        f"Looked for '{module}' in the workspace {workspace} and in the installed packages. "
        f"A workspace file roles.py is named as roles:MyRole."
    )


def _describe(found: object) -> str:
    if isinstance(found, type):
        return f"the class {found.__module__}.{found.__qualname__}"
    if callable(found):
        return f"the {type(found).__name__} {getattr(found, '__qualname__', found)!s}"
    return f"a {type(found).__name__} value ({found!r:.40})"


# --- playbook tasks --------------------------------------------------------------------------


def _check_playbook_tasks(manifest: Manifest, source: LocatedYaml) -> None:
    from .tasks import task_registry

    for participant, entries in manifest.playbook.items():
        for index, entry in enumerate(entries):
            key: KeyPath = ("playbook", participant, index)
            cls = task_registry().get(entry.task)
            if cls is None:
                raise _error(
                    source,
                    (*key, "task"),
                    f"unknown task '{entry.task}'",
                    _unknown_hint(entry.task, task_registry(), "Registered tasks"),
                )
            _check_params(cls, entry, key, source)


def _check_params(cls: type[Task], entry: PlaybookEntry, key: KeyPath, source: LocatedYaml) -> None:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for name in entry.params:
        if name not in fields:
            raise _error(
                source,
                (*key, "params", name),
                f"task '{entry.task}' has no field '{name}'",
                _unknown_hint(name, fields, "Fields"),
            )
    for name, field in fields.items():
        if name not in entry.params and _required(field):
            raise _error(
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
    from .tasks import task_registry

    where = entry._where or _Where(None, ("playbook",))
    cls = task_registry().get(entry.task)
    if cls is None:
        hint = _unknown_hint(entry.task, task_registry(), "Registered tasks")
        raise _located(where, ("task",), f"unknown task '{entry.task}'", hint)
    hints = typing.get_type_hints(cls)
    values = {name: _converted(cls, hints, name, value, where) for name, value in entry.params.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError, SplitTracerError) as exc:
        raise _located(where, ("params",), f"cannot build task '{entry.task}': {exc}", None) from exc


def _converted(cls: type[Task], hints: Mapping[str, Any], name: str, value: Any, where: _Where) -> Any:
    if name not in {f.name for f in dataclasses.fields(cls)}:
        return value  # the constructor reports it, with the task's own wording
    try:
        return msgspec.convert(value, hints[name])
    except (msgspec.ValidationError, TypeError) as exc:
        raise _located(
            where, ("params", name), f"task '{cls.__qualname__}' field '{name}': {exc}", None
        ) from exc


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


# --- error helpers ---------------------------------------------------------------------------


def _error(source: LocatedYaml, key: KeyPath, message: str, hint: str | None) -> ConfigError:
    return ConfigError(message, path=source.path, line=source.line_of(key), key=_dotted(key), hint=hint)


def _located(where: _Where, suffix: KeyPath, message: str, hint: str | None) -> ConfigError:
    if where.source is None:
        return ConfigError(message, key=_dotted((*where.key, *suffix)), hint=hint)
    return _error(where.source, (*where.key, *suffix), message, hint)


def _where_text(manifest: Manifest, key: KeyPath) -> str:
    line = manifest.line_of(key)
    path = f"{manifest.path}:{line}" if line else str(manifest.path or "<manifest>")
    return f"{path}, key '{_dotted(key)}'"


def _unknown_hint(word: str, known: typing.Iterable[str], label: str) -> str:
    names = sorted(known)
    close = did_you_mean(word, names)
    listing = f"{label}: {', '.join(names)}." if names else f"{label}: none."
    return f"{close} {listing}" if close else listing


def _dotted(key: KeyPath) -> str:
    return ".".join(str(part) for part in key)
