"""Tasks: the typed messages participants send each other, and their wire form.

A user declares a task by subclassing :class:`Task` and annotating fields::

    class RunLayers(Task, priority=5):
        start: int
        end: int
        tensors: list[torch.Tensor]
        note: str = ""

    RunLayers(start=0, end=3, tensors=[x])              # priority 5, the class default
    RunLayers(start=0, end=3, tensors=[x], priority=9)  # this one is more urgent

Every subclass becomes a keyword-only dataclass and is registered by name
(its ``__qualname__`` unless ``class X(Task, name="...")``), because a
receiver builds only registered types. Field types are checked when the class
is defined, so a task that cannot be sent fails on the user's laptop, not on a
remote device.

**Priority: a higher number is more urgent.** Every task has ``priority: int``:
0 unless its class says ``class X(Task, priority=5)``, and any instance may
pass ``priority=...``. ``priority`` is the framework's keyword, so a task may
not declare a field of that name. Equal priorities keep arrival order.

The wire form is a msgpack header (type name, priority, field values with
tensors replaced by msgpack ext references, tensor metadata) plus one raw
buffer per tensor. Nothing is pickled or evaluated: decoding only converts
plain values into the declared field types of a registered class.

**Torch only where a tensor is.** This module never imports torch itself:
``torch.Tensor`` is recognised once some code has imported torch, which any
code that holds a tensor has. A task module may import torch for type
checking only (``if TYPE_CHECKING: import torch``); its tensor fields are
then resolved the first time the task is sent or received, so a process that
never handles it (the controller routing the built-in tasks) never pays
torch's seconds of import time.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import inspect
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from splittracer.errors import UserCodeError, WireError
from splittracer.wire.envelope import EncodedTask
from splittracer.wire.tensormeta import TensorMeta

if TYPE_CHECKING:
    import torch

if sys.version_info >= (3, 11):
    from typing import dataclass_transform
else:
    from typing_extensions import dataclass_transform

__all__ = [
    "EncodedTask",
    "Task",
    "decode_task",
    "encode_task",
    "task_name",
    "task_registry",
    "task_type",
]

_FORMAT_VERSION = 1
_TENSOR_EXT = 1  # msgpack ext code marking "the tensor at this index of the buffer list"
_SCALARS: tuple[Any, ...] = (bool, int, float, str, bytes, type(None))
_ALLOWED = (
    "bool, int, float, str, bytes, None, torch.Tensor, "
    "and list[...], tuple[...], dict[str, ...] and X | None built from them"
)
_REGISTRY: dict[str, type[Task]] = {}


@dataclasses.dataclass(frozen=True)
class _TaskSpec:
    """What encoding and decoding need to know about one task type."""

    name: str
    fields: Mapping[str, Any]
    required: frozenset[str]


@dataclass_transform(
    kw_only_default=True,
    eq_default=False,
    field_specifiers=(dataclasses.field, dataclasses.Field),
)
@dataclasses.dataclass(kw_only=True, eq=False)
class Task:
    """Base class of every task: subclass it and annotate fields.

    Instances compare by identity (``eq=False``) because ``==`` on tensors is
    element-wise and cannot give one answer. Class keywords: ``name`` (the
    registry name) and ``priority`` (the class's default priority, higher is
    more urgent).
    """

    priority: int = 0
    _st_spec: ClassVar[_TaskSpec | None] = None
    _st_name: ClassVar[str | None] = None

    def __init_subclass__(
        cls, *, name: str | None = None, priority: int | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        _reject_reserved(cls)
        dataclasses.dataclass(kw_only=True, eq=False)(cls)
        if priority is not None:
            _set_class_priority(cls, priority)
        registered = _registry_name(cls, name)
        cls._st_name = registered
        # Resolved now, so a task that cannot be sent fails where it is defined; later only
        # when its annotations name torch before anything imported it (see the module's docs).
        cls._st_spec = _initial_spec(cls, registered)
        _register(cls, registered)


class _Header(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True):
    version: int
    type: str
    priority: int
    tensors: list[TensorMeta]
    # Pre-encoded separately, so tensor metadata is known before the header is written.
    fields: msgspec.Raw


def task_registry() -> Mapping[str, type[Task]]:
    """Every registered task type by name (a read-only view)."""
    return MappingProxyType(_REGISTRY)


def task_type(name: str) -> type[Task]:
    """The task type registered as ``name``; UserCodeError with a 'did you mean' if none is."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "import the module that defines it"
        raise UserCodeError(f"no task type is registered as '{name}'", hint=hint) from None


def task_name(task: Task | type[Task]) -> str:
    """The registry name of a task or task type."""
    return _spec(task if isinstance(task, type) else type(task)).name


def encode_task(task: Task) -> EncodedTask:
    """The wire form of ``task``; UserCodeError if a value does not match its field's type."""
    spec = _spec(type(task))
    values = {name: _checked_value(spec, name, getattr(task, name)) for name in spec.fields}
    collector = _TensorCollector()
    fields = msgspec.msgpack.Encoder(enc_hook=collector.reference).encode(values)
    header = _Header(
        version=_FORMAT_VERSION,
        type=spec.name,
        priority=_checked_priority(spec, task.priority),
        tensors=collector.metas,
        fields=msgspec.Raw(fields),
    )
    return EncodedTask(
        header=msgspec.msgpack.encode(header),
        buffers=list(collector.buffers),
        name=spec.name,
        metas=list(collector.metas),
    )


def decode_task(header: bytes | memoryview, buffers: Sequence[bytes | bytearray | memoryview]) -> Task:
    """Rebuild a registered task from its wire form; WireError for anything malformed."""
    head = _parse_header(header)
    cls = _REGISTRY.get(head.type)
    if cls is None:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise WireError(f"unknown task type '{head.type}'; known: {known}")
    tensors = _decode_tensors(head, buffers)
    values = _converted_fields(_spec(cls), _parse_fields(head), tensors)
    return cls(**values, priority=head.priority)


# --- class definition ------------------------------------------------------------------------


def _reject_reserved(cls: type[Task]) -> None:
    if "priority" in vars(cls) or "priority" in inspect.get_annotations(cls):
        raise UserCodeError(
            f"task {cls.__qualname__} declares 'priority', which every task already has",
            hint=f"set the default with: class {cls.__name__}(Task, priority=5)",
        )
    if "__init__" in vars(cls):
        raise UserCodeError(
            f"task {cls.__qualname__} defines __init__; tasks get theirs from their fields",
            hint="declare fields as annotations; put extra checks in __post_init__",
        )


def _set_class_priority(cls: type[Task], priority: int) -> None:
    """Make ``priority`` the default of this class (and its subclasses) without a new field."""
    if type(priority) is not int:
        raise UserCodeError(
            f"task {cls.__qualname__}: priority must be an int, got {priority!r}",
            hint=f"write class {cls.__name__}(Task, priority=5)",
        )
    # Subclasses inherit the Field object, so replace it rather than mutate the parent's.
    field = copy.copy(cls.__dataclass_fields__["priority"])
    field.default = priority
    cls.__dataclass_fields__["priority"] = field
    # The __init__ dataclass just generated already holds the old default.
    init_defaults: dict[str, Any] = vars(cls)["__init__"].__kwdefaults__
    init_defaults["priority"] = priority
    cls.priority = priority


def _build_spec(cls: type[Task], name: str, hints: dict[str, Any]) -> _TaskSpec:
    fields = _field_types(cls, hints)
    required = frozenset(f.name for f in dataclasses.fields(cls) if f.name in fields and _is_required(f))
    return _TaskSpec(name=name, fields=fields, required=required)


def _initial_spec(cls: type[Task], name: str) -> _TaskSpec | None:
    """``cls``'s spec, or None when its annotations name ``torch`` without its module importing it."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        if exc.name == "torch":
            return None
        raise _unresolved(cls, exc) from exc
    except Exception as exc:  # TypeError, SyntaxError: whatever a bad annotation raises
        raise _unresolved(cls, exc) from exc
    return _build_spec(cls, name, hints)


def _unresolved(cls: type[Task], exc: Exception) -> UserCodeError:
    return UserCodeError(
        f"task {cls.__qualname__}: cannot resolve its field annotations: {exc}",
        hint="define every type a field names at module level, before the task",
    )


def _field_types(cls: type[Task], hints: dict[str, Any]) -> Mapping[str, Any]:
    fields: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name == "priority" or not field.init:
            continue
        _check_field_type(cls, field.name, hints[field.name])
        fields[field.name] = hints[field.name]
    return MappingProxyType(fields)


def _check_field_type(cls: type[Task], name: str, hint: Any) -> None:
    problem = None if _is_allowed(hint) else "it cannot be sent"
    if problem is None:
        try:
            msgspec.inspect.type_info(hint)
        except TypeError as exc:  # e.g. torch.Tensor | int: a union msgspec cannot tell apart
            problem = str(exc)
    if problem is not None:
        raise UserCodeError(
            f"task {cls.__qualname__}: field '{name}' has type {_type_text(hint)}: {problem}",
            hint=f"field types may be {_ALLOWED}",
        )


def _is_allowed(hint: Any) -> bool:
    if any(hint is scalar for scalar in _SCALARS) or (hint is not None and hint is _tensor_type()):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return all(_is_allowed(arg) for arg in args)
    if origin is list:
        return len(args) == 1 and _is_allowed(args[0])
    if origin is tuple:
        items = args[:1] if len(args) == 2 and args[1] is Ellipsis else args
        return bool(items) and all(_is_allowed(arg) for arg in items)
    if origin is dict:
        return len(args) == 2 and args[0] is str and _is_allowed(args[1])
    return False


def _type_text(hint: Any) -> str:
    return hint.__qualname__ if isinstance(hint, type) else repr(hint)


def _is_required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _registry_name(cls: type[Task], name: str | None) -> str:
    if name is None:
        return cls.__qualname__
    if not isinstance(name, str) or not name:
        raise UserCodeError(
            f"task {cls.__qualname__}: name must be a non-empty string, got {name!r}",
            hint=f"write class {cls.__name__}(Task, name='{cls.__name__}')",
        )
    return name


def _register(cls: type[Task], name: str) -> None:
    existing = _REGISTRY.get(name)
    # The same module and qualname is the same definition run again (reload, notebook cell).
    if existing is not None and _where(existing) != _where(cls):
        raise UserCodeError(
            f"task {_where(cls)} and task {_where(existing)} are both registered as '{name}'",
            hint=f"give one another name: class {cls.__name__}(Task, name='...')",
        )
    _REGISTRY[name] = cls


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _spec(cls: type[Task]) -> _TaskSpec:
    spec = vars(cls).get("_st_spec")
    if isinstance(spec, _TaskSpec):
        return spec
    name = vars(cls).get("_st_name")
    if not isinstance(name, str):
        raise UserCodeError(
            f"{cls.__qualname__} is not a task type", hint="send an instance of a Task subclass"
        )
    return _deferred_spec(cls, name)


def _deferred_spec(cls: type[Task], name: str) -> _TaskSpec:
    """The spec of a task whose annotations name torch, which is imported now to resolve them."""
    import torch

    try:
        hints = typing.get_type_hints(cls, localns={"torch": torch})
    except Exception as exc:  # as in _initial_spec
        raise _unresolved(cls, exc) from exc
    spec = _build_spec(cls, name, hints)
    cls._st_spec = spec
    return spec


def _tensor_type() -> type | None:
    """``torch.Tensor`` once torch is imported; None before (then no value or field is a tensor)."""
    global _TENSOR
    if _TENSOR is None:
        tensor = getattr(sys.modules.get("torch"), "Tensor", None)
        _TENSOR = tensor if isinstance(tensor, type) else None
    return _TENSOR


_TENSOR: type | None = None


# --- encoding --------------------------------------------------------------------------------


def _checked_value(spec: _TaskSpec, name: str, value: Any) -> Any:
    """``value`` converted to its field type, so what leaves is what a receiver will accept."""
    kind = spec.fields[name]
    exact = type(value) is kind and kind in _EXACT
    if exact or (kind is _tensor_type() and kind is not None and isinstance(value, kind)):
        return value  # already what the field holds: msgspec.convert would return it unchanged, slower
    try:
        return msgspec.convert(value, kind, dec_hook=_keep_tensor)
    except msgspec.ValidationError as exc:
        # msgspec says where inside a container the mismatch is; at the top level it adds nothing.
        inside = f" ({exc})" if " - at " in str(exc) else ""
        raise UserCodeError(
            f"task {spec.name}: field '{name}' must be {_type_text(kind)}, "
            f"got {type(value).__name__}{inside}",
            hint="set the field to a value of its declared type before sending",
        ) from exc


# Field types whose values msgspec.convert returns unchanged when they are of exactly that type
# (a small message's encoding and decoding is mostly these conversions otherwise).
_EXACT = frozenset({int, float, str, bool, bytes})


def _checked_priority(spec: _TaskSpec, priority: object) -> int:
    if type(priority) is not int:
        raise UserCodeError(f"task {spec.name}: priority must be an int, got {priority!r}")
    return priority


def _keep_tensor(kind: type, value: Any) -> Any:
    if kind is _tensor_type() and kind is not None and isinstance(value, kind):
        return value
    raise TypeError(f"Expected `{_type_text(kind)}`, got `{type(value).__name__}`")


class _TensorCollector:
    """msgpack ``enc_hook`` that swaps each tensor for a reference and keeps its bytes."""

    def __init__(self) -> None:
        self.metas: list[TensorMeta] = []
        self.buffers: list[memoryview] = []
        # Keyed by id(): the tensors stay alive in the values being encoded, so ids are stable.
        self._index: dict[int, int] = {}

    def reference(self, value: Any) -> msgspec.msgpack.Ext:
        tensor = _tensor_type()
        if tensor is None or not isinstance(value, tensor):
            raise TypeError(f"cannot encode a {type(value).__name__}")
        index = self._index.get(id(value))
        if index is None:
            index = self._add(typing.cast("torch.Tensor", value))
        return msgspec.msgpack.Ext(_TENSOR_EXT, index.to_bytes(4, "little"))

    def _add(self, tensor: torch.Tensor) -> int:
        from splittracer.wire.tensors import encode_tensor

        meta, data = encode_tensor(tensor)
        self.metas.append(meta)
        self.buffers.append(data)
        self._index[id(tensor)] = len(self.metas) - 1
        return len(self.metas) - 1


# --- decoding --------------------------------------------------------------------------------


def _parse_header(header: bytes | memoryview) -> _Header:
    try:
        head = msgspec.msgpack.decode(header, type=_Header)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec: a str not UTF-8
        raise WireError(f"malformed task header: {exc}") from exc
    if head.version != _FORMAT_VERSION:
        raise WireError(
            f"task header has format version {head.version}; this participant reads "
            f"version {_FORMAT_VERSION}",
            hint="run the same splittracer version on every device",
        )
    return head


def _parse_fields(head: _Header) -> dict[str, Any]:
    try:
        return msgspec.msgpack.decode(head.fields, type=dict[str, Any])
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise WireError(f"task {head.type}: malformed fields: {exc}") from exc


def _decode_tensors(head: _Header, buffers: Sequence[bytes | bytearray | memoryview]) -> list[torch.Tensor]:
    if len(buffers) != len(head.tensors):
        raise WireError(
            f"task {head.type}: header describes {len(head.tensors)} tensors, got {len(buffers)} buffers"
        )
    if not buffers:
        return []
    from splittracer.wire.tensors import decode_tensor  # torch: only where a tensor arrives

    return [decode_tensor(meta, data) for meta, data in zip(head.tensors, buffers, strict=True)]


def _converted_fields(spec: _TaskSpec, raw: dict[str, Any], tensors: list[torch.Tensor]) -> dict[str, Any]:
    unknown = sorted(set(raw) - set(spec.fields))
    if unknown:
        raise WireError(
            f"task {spec.name}: unknown field '{unknown[0]}'; fields: {', '.join(spec.fields)}",
            hint="Run the same task definitions on every device: for a built-in task, the device runs "
            "another version of splittracer (bring it up to date with 'splittracer device setup NAME'); "
            "for your own, the workspace's code differs there.",
        )
    missing = sorted(spec.required - set(raw))
    if missing:
        raise WireError(f"task {spec.name}: missing required field '{missing[0]}'")
    refs = _TensorRefs(tensors)
    return {name: _converted(spec, name, value, refs) for name, value in raw.items()}


def _converted(spec: _TaskSpec, name: str, value: Any, refs: _TensorRefs) -> Any:
    kind = spec.fields[name]
    if type(value) is kind and kind in _EXACT:
        return value
    if kind is _tensor_type() and kind is not None and type(value) is msgspec.msgpack.Ext:
        with contextlib.suppress(TypeError):  # not a valid reference: msgspec says why, below
            return refs.resolve(kind, value)
    try:
        return msgspec.convert(value, kind, dec_hook=refs.resolve)
    except msgspec.ValidationError as exc:
        raise WireError(f"task {spec.name}: field '{name}' does not match {_type_text(kind)}: {exc}") from exc


class _TensorRefs:
    """msgspec ``dec_hook`` that turns tensor references back into decoded tensors."""

    def __init__(self, tensors: list[torch.Tensor]) -> None:
        self._tensors = tensors

    def resolve(self, kind: type, value: Any) -> Any:
        if kind is not _tensor_type() or not isinstance(value, msgspec.msgpack.Ext):
            raise TypeError(f"Expected a tensor reference, got `{type(value).__name__}`")
        data = memoryview(value.data).cast("B")
        if value.code != _TENSOR_EXT or data.nbytes != 4:
            raise TypeError(f"msgpack ext code {value.code} is not a tensor reference")
        index = int.from_bytes(data, "little")
        if index >= len(self._tensors):
            raise TypeError(f"tensor reference {index} is out of range")
        return self._tensors[index]
