"""Roles: how a participant reacts to each task type.

A user writes one :class:`Role` subclass and marks its handlers::

    class Server(Role):
        def setup(self, ctx: Context) -> None:
            self.model = ...

        @handles(RunLayers)
        def run(self, task: RunLayers, ctx: Context) -> None:
            ctx.send("CLIENT1", Result(...))

**Handlers are synchronous functions** taking exactly ``(self, task, ctx)``.
Nothing in :class:`Context` needs awaiting (``send`` only queues), so one way
to write a handler is enough, and the participant decides where handlers run
(off its network loop) instead of every role author. ``async def`` handlers
are rejected when the class is defined, like every other misuse below, so
mistakes show up on the user's laptop and not on a remote device.

Handlers are inherited. A subclass takes over a task type by defining its own
handler for it; a method that overrides a parent's handler *without*
``@handles`` keeps handling what the parent's method handled, and one *with*
``@handles`` handles exactly the types it names. A handler for a task type
also receives that type's subclasses unless they have their own handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar, final, overload

from splittracer.errors import UserCodeError
from splittracer.tasks import Task
from splittracer.wire.messages import RunOptions

if TYPE_CHECKING:  # loading a model's graph machinery is the participant's business, not an import's
    from typing import TypeAlias

    import torch

    from splittracer.split.model import SplitModel

    Tensors: TypeAlias = tuple[torch.Tensor, ...]

__all__ = ["Context", "Handler", "Role", "RunOptions", "Tensors", "handles"]


def __getattr__(name: str) -> Any:
    """``Tensors``: the tensors live across one cut, as :meth:`Context.run_layers` returns them.

    Built on first use, so importing roles (the controller does, for the task types its
    playbook names) does not import torch.
    """
    if name != "Tensors":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import torch

    value = tuple[torch.Tensor, ...]
    globals()[name] = value
    return value


_MARK = "__splittracer_handles__"  # attribute @handles leaves on a function
_HOOKS = ("setup", "teardown")

F = TypeVar("F", bound=Callable[..., Any])


class Context(Protocol):
    """What a handler (and ``setup``/``teardown``) receives as ``ctx``: its view of the run.

    The participant implements it (:class:`splittracer.participant.context.ParticipantContext`);
    user code only calls it. Everything done through it is measured: compute
    spans for ``run_layers``, serialize/send/receive/transfer spans for
    ``send`` and ``call``, an end-to-end span for each ``inference``.
    """

    @property
    def participant(self) -> str:
        """This participant's name in the manifest, e.g. ``"phone"``."""
        ...

    @property
    def stage(self) -> int:
        """Position in the manifest's participant list (0 = the first device)."""
        ...

    @property
    def peers(self) -> Sequence[str]:
        """Names of the other participants in the run."""
        ...

    @property
    def run_id(self) -> str:
        """Id of the current run, as stored in the results."""
        ...

    @property
    def params(self) -> Mapping[str, Any]:
        """This participant's ``params`` from the manifest."""
        ...

    @property
    def options(self) -> RunOptions:
        """The run's options: ``repeats``, ``warmup``, ``compression``, ``seed``."""
        ...

    @property
    def model(self) -> SplitModel:
        """The model this participant runs (its own ``model:``, else the manifest's), captured and
        ready to split (its ``points`` say what crosses each cut); SplitError when it has none."""
        ...

    @property
    def num_layers(self) -> int:
        """L of this participant's model: split points are 0..L."""
        ...

    def example(self, index: int) -> torch.Tensor:
        """Input number ``index`` (synthetic and seeded, or from the manifest's dataset)."""
        ...

    def label(self, index: int) -> int | None:
        """The label of input ``index``: its class folder's output index; None when unlabelled."""
        ...

    @overload
    def run_layers(self, start: int, end: int, *tensors: torch.Tensor, final: Literal[False]) -> Tensors: ...

    @overload
    def run_layers(self, start: int, end: int, *tensors: torch.Tensor, final: bool | None = None) -> Any: ...

    def run_layers(self, start: int, end: int, *tensors: torch.Tensor, final: bool | None = None) -> Any:
        """Run layers ``start+1..end`` of the model on the tensors live across cut ``start``.

        With ``final=False`` it returns the tensors live across cut ``end``
        (:data:`Tensors`); a final part (by default: when ``end`` is the last
        layer) returns the model's own output, whatever type the model gives.
        """
        ...

    def run_placed(self, placement: str, device: int, *tensors: torch.Tensor) -> Any:
        """Run one device's layers of a placement (``1-5,7``: the first device's layers).

        ``device`` 0 runs the first device's layers on the model's input and
        returns the tensors crossing to the second (:data:`Tensors`); ``device``
        1 runs the rest on those and returns the model's output. A chain
        (``1-3|4-6``: every device's layers but the last's) has devices 0..N-1.
        Recorded as a compute span, as :meth:`run_layers` is.
        """
        ...

    def inference(
        self,
        index: int,
        *,
        split: int = -1,
        warmup: bool = False,
        attrs: Mapping[str, str | int | float | bool] | None = None,
        since_ns: int | None = None,
    ) -> AbstractContextManager[None]:
        """Time one end-to-end inference; everything inside, on every peer, carries its id.

        ``attrs`` are recorded on its ``inference`` span (``{"uplink": "3g"}``).
        ``since_ns`` (a :func:`splittracer.clock.now_ns` reading) starts it
        earlier: a frame that arrived before a thread took it up.
        """
        ...

    @property
    def batch(self) -> tuple[int, float] | None:
        """The participant's ``batch:`` as (max requests, window in seconds); None without one."""
        ...

    def computing(
        self, start: int, end: int, **attrs: str | int | float | bool
    ) -> AbstractContextManager[None]:
        """Time the block as a ``compute`` span of layers ``start+1..end`` for the inference in
        progress, computed elsewhere on this participant (its share of a batch)."""
        ...

    def waiting(self, *, since_ns: int | None = None) -> AbstractContextManager[None]:
        """Time the block as a ``queue`` span: the inference in progress waiting for this
        participant (a stream's frame waiting for the head's processor), from ``since_ns``
        (a :func:`splittracer.clock.now_ns` reading) when given."""
        ...

    def send(self, peer: str, task: Task, *, codec: str | None = None) -> None:
        """Deliver ``task`` to ``peer``'s inbox; returns once it arrived.

        ``codec`` encodes its tensors (``fp16``, ``int8``, ``jpeg:90``, ...)
        instead of the run's ``options.compression``.
        """
        ...

    def call(self, peer: str, task: Task, *, timeout: float = 600.0, codec: str | None = None) -> Task:
        """Send ``task`` to ``peer`` and wait for the task its handler returns (``codec`` as for send)."""
        ...

    def set_uplink(self, rate_bps: float) -> None:
        """Change this participant's emulated uplink rate (bit/s) from now on."""
        ...

    def record(self, name: str, value: float, **attrs: object) -> None:
        """Record a custom metric ``name`` = ``value`` with optional attributes."""
        ...

    def record_for(self, index: int, split: int, name: str, value: float, **attrs: object) -> None:
        """Record a metric of inference ``index`` (at ``split``) after its timed block ended:
        what is worked out about an inference (its prediction's accuracy) without adding to its time."""
        ...

    def progress(self, done: int, total: int, label: str = "") -> None:
        """Report progress to the controller (drives its progress bar)."""
        ...

    def log(self, message: str) -> None:
        """A line for the controller's log."""
        ...

    def finish(self, *, everyone: bool = False) -> None:
        """This participant is done: the run ends once every participant with a playbook is.

        From a participant without a playbook, or with ``everyone=True``, it
        ends the run at once: the controller stops every participant and saves the results.
        """
        ...


Handler = Callable[[Task, Context], Task | None]
"""A bound handler method, as :meth:`Role.handler_for` returns it.

A handler may return a task: that is the reply a peer's :meth:`Context.call` waits for.
"""


def handles(*task_types: type[Task]) -> Callable[[F], F]:
    """Mark a method of a :class:`Role` as the handler of ``task_types`` (one or more).

    It only records; :class:`Role` checks the mark when the class is defined.
    """
    if len(task_types) == 1 and inspect.isfunction(task_types[0]):
        # Bare ``@handles`` above a def: record the function itself, so the Role says so.
        return _mark(task_types, task_types[0])

    def decorate(func: F) -> F:
        return _mark(task_types, func)

    return decorate


def _mark(task_types: tuple[Any, ...], func: F) -> F:
    setattr(func, _MARK, (*getattr(func, _MARK, ()), *task_types))
    return func


class Role:
    """Base class of every role: subclass it and write ``@handles`` methods.

    ``setup`` and ``teardown`` are optional hooks. ``handler_for`` and
    ``handled_task_types`` belong to the framework and are not meant to be
    overridden.

    ``parallel = True`` says the role's handlers may run on several threads at
    once, so a participant may have ``workers: N`` (the built-in tail does).
    """

    parallel: ClassVar[bool] = False
    _st_handlers: ClassVar[Mapping[type[Task], str]] = MappingProxyType({})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_hooks(cls)
        cls._st_handlers = MappingProxyType(_collect_handlers(cls))

    def setup(self, ctx: Context) -> None:
        """Called once before the first task arrives. Does nothing unless overridden."""

    def teardown(self, ctx: Context) -> None:
        """Called once after the last task. Does nothing unless overridden."""

    @final
    def handler_for(self, task: Task | type[Task]) -> Handler | None:
        """The bound handler for a task or task type, or None if this role has none.

        A type without its own handler falls back to its nearest parent task type's.
        """
        task_type = task if isinstance(task, type) else type(task)
        for candidate in task_type.__mro__:
            name = self._st_handlers.get(candidate)
            if name is not None:
                handler: Handler = getattr(self, name)
                return handler
        return None

    @final
    @classmethod
    def handled_task_types(cls) -> tuple[type[Task], ...]:
        """The task types this role has a handler for (not counting subclasses of them)."""
        return tuple(cls._st_handlers)


# --- checks at class creation ----------------------------------------------------------------


def _collect_handlers(cls: type[Role]) -> dict[type[Task], str]:
    """Task type -> method name, inherited entries first, then this class's own marks."""
    own = _own_marks(cls)
    inherited: dict[type[Task], str] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited.update(vars(base).get("_st_handlers", {}))
    handlers = {t: name for t, name in inherited.items() if name not in own}
    handlers.update(_by_task_type(cls, own))
    for name in set(handlers.values()):
        _check_handler(cls, name)
    return handlers


def _own_marks(cls: type[Role]) -> dict[str, tuple[Any, ...]]:
    marks: dict[str, tuple[Any, ...]] = {}
    for name, attr in vars(cls).items():
        func = getattr(attr, "__func__", attr)  # see through staticmethod/classmethod
        found = getattr(attr, _MARK, None) or getattr(func, _MARK, None)
        if found is None:
            continue
        if func is not attr:
            raise _misuse(cls, name, "is a static or class method", "drop @staticmethod/@classmethod")
        marks[name] = tuple(dict.fromkeys(found))  # the same type twice on one method is harmless
    return marks


def _by_task_type(cls: type[Role], own: dict[str, tuple[Any, ...]]) -> dict[type[Task], str]:
    result: dict[type[Task], str] = {}
    for name, task_types in own.items():
        if not task_types:
            raise _misuse(cls, name, "has @handles() with no task type", "write @handles(MyTask)")
        for task_type in task_types:
            _check_task_type(cls, name, task_type)
            if task_type in result:
                raise UserCodeError(
                    f"role {cls.__qualname__}: methods '{result[task_type]}' and '{name}' both "
                    f"handle {task_type.__qualname__}",
                    hint="keep one handler per task type in a class (a subclass may override it)",
                )
            result[task_type] = name
    return result


def _check_task_type(cls: type[Role], name: str, task_type: Any) -> None:
    if not (isinstance(task_type, type) and issubclass(task_type, Task)):
        raise _misuse(
            cls,
            name,
            f"has @handles({_text(task_type)}), which is not a Task subclass",
            "pass the task class itself: @handles(MyTask)",
        )


def _check_handler(cls: type[Role], name: str) -> None:
    func = inspect.getattr_static(cls, name, None)
    what = f"def {name}(self, task: MyTask, ctx: Context) -> None"
    if not inspect.isfunction(func):
        raise _misuse(cls, name, "is a handler but not a plain method", f"write: {what}")
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise _misuse(cls, name, "is async; handlers are plain functions", f"write: {what}")
    if inspect.isgeneratorfunction(func):
        raise _misuse(cls, name, "is a generator (it yields)", f"write: {what}")
    if not _takes_exactly(func, 3):
        raise _misuse(cls, name, f"takes {_params(func)}, not (self, task, ctx)", f"write: {what}")


def _check_hooks(cls: type[Role]) -> None:
    for name in _HOOKS:
        func = vars(cls).get(name)
        if func is None:
            continue
        what = f"def {name}(self, ctx: Context) -> None"
        if inspect.iscoroutinefunction(func) or not inspect.isfunction(func):
            raise _misuse(cls, name, "must be a plain (not async) method", f"write: {what}")
        if not _takes_exactly(func, 2):
            raise _misuse(cls, name, f"takes {_params(func)}, not (self, ctx)", f"write: {what}")


def _takes_exactly(func: Callable[..., Any], count: int) -> bool:
    params = inspect.signature(func).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return len(params) == count and all(p.kind in positional for p in params)


def _params(func: Callable[..., Any]) -> str:
    return str(inspect.signature(func).replace(return_annotation=inspect.Signature.empty))


def _text(value: Any) -> str:
    return value.__qualname__ if hasattr(value, "__qualname__") else repr(value)


def _misuse(cls: type[Role], name: str, problem: str, hint: str) -> UserCodeError:
    return UserCodeError(f"role {cls.__qualname__}: method '{name}' {problem}", hint=hint)
