"""Roles: handler collection, inheritance, lookup, and misuse rejected at class creation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from splittracer.errors import UserCodeError
from splittracer.roles import Context, Role, handles
from splittracer.tasks import Task


class Ping(Task, name="test_roles.Ping"):
    n: int


class LoudPing(Ping, name="test_roles.LoudPing"):
    volume: int = 11


class Pong(Task, name="test_roles.Pong"):
    n: int


class FakeContext:
    """The smallest thing that satisfies Context; records what handlers do."""

    def __init__(self) -> None:
        self.participant = "EDGE1"
        self.peers: Sequence[str] = ("CLIENT1",)
        self.run_id = "run-1"
        self.sent: list[tuple[str, Task]] = []
        self.metrics: list[tuple[str, float, dict[str, object]]] = []
        self.finished = False

    def send(self, peer: str, task: Task) -> None:
        self.sent.append((peer, task))

    def record(self, name: str, value: float, **attrs: object) -> None:
        self.metrics.append((name, value, attrs))

    def finish(self) -> None:
        self.finished = True


class Echo(Role):
    @handles(Ping)
    def on_ping(self, task: Ping, ctx: Context) -> None:
        ctx.send(ctx.peers[0], Pong(n=task.n))
        ctx.record("pings", 1.0, participant=ctx.participant)


def _ctx() -> Context:
    return FakeContext()


# --- lookup ----------------------------------------------------------------------------------


def test_handler_for_returns_the_bound_method_and_it_runs() -> None:
    role, ctx = Echo(), FakeContext()
    handler = role.handler_for(Ping(n=3))
    assert handler is not None and getattr(handler, "__self__", None) is role
    handler(Ping(n=3), ctx)
    assert [(peer, type(task), task.n) for peer, task in ctx.sent] == [("CLIENT1", Pong, 3)]  # type: ignore[attr-defined]
    assert ctx.metrics == [("pings", 1.0, {"participant": "EDGE1"})]


def test_handler_for_accepts_a_type_and_returns_none_when_unhandled() -> None:
    assert Echo().handler_for(Ping) is not None
    assert Echo().handler_for(Pong) is None
    assert Echo().handler_for(Pong(n=1)) is None


def test_subclassed_task_falls_back_to_the_parent_task_handler() -> None:
    role = Echo()
    assert role.handler_for(LoudPing(n=1)) == role.on_ping


def test_exact_task_type_handler_wins_over_the_parent_task_handler() -> None:
    class Picky(Echo):
        @handles(LoudPing)
        def on_loud(self, task: LoudPing, ctx: Context) -> None: ...

    role = Picky()
    assert role.handler_for(LoudPing) == role.on_loud
    assert role.handler_for(Ping) == role.on_ping


def test_handler_for_the_task_base_catches_everything() -> None:
    class Catchall(Role):
        @handles(Task)
        def anything(self, task: Task, ctx: Context) -> None: ...

    role = Catchall()
    assert role.handler_for(Pong(n=0)) == role.anything


def test_one_method_may_handle_several_task_types() -> None:
    class Both(Role):
        @handles(Ping, Pong)
        def either(self, task: Task, ctx: Context) -> None: ...

    role = Both()
    assert set(Both.handled_task_types()) == {Ping, Pong}
    assert role.handler_for(Pong) == role.handler_for(Ping) == role.either


def test_stacked_handles_decorators_add_up() -> None:
    class Stacked(Role):
        @handles(Ping)
        @handles(Pong)
        def either(self, task: Task, ctx: Context) -> None: ...

    assert set(Stacked.handled_task_types()) == {Ping, Pong}


def test_base_role_handles_nothing_and_hooks_are_no_ops() -> None:
    role, ctx = Role(), FakeContext()
    assert Role.handled_task_types() == ()
    assert role.setup(ctx) is None and role.teardown(ctx) is None
    assert ctx.sent == [] and not ctx.finished


def test_handles_only_records_and_returns_the_function() -> None:
    def run(self: Any, task: Ping, ctx: Context) -> None: ...

    assert handles(Ping)(run) is run


# --- inheritance -----------------------------------------------------------------------------


def test_handlers_are_inherited() -> None:
    class Child(Echo):
        pass

    role = Child()
    assert role.handler_for(Ping) == role.on_ping
    assert Child.handled_task_types() == (Ping,)


def test_subclass_takes_over_a_task_type_with_its_own_handler() -> None:
    class Child(Echo):
        @handles(Ping)
        def better(self, task: Ping, ctx: Context) -> None: ...

    child, parent = Child(), Echo()
    assert child.handler_for(Ping) == child.better
    assert parent.handler_for(Ping) == parent.on_ping


def test_plain_override_keeps_handling_what_the_parent_method_handled() -> None:
    calls: list[str] = []

    class Child(Echo):
        def on_ping(self, task: Ping, ctx: Context) -> None:
            calls.append("child")

    Child().handler_for(Ping)(Ping(n=1), _ctx())  # type: ignore[misc]
    assert calls == ["child"]


def test_override_with_handles_handles_exactly_what_it_names() -> None:
    class Child(Echo):
        @handles(Pong)
        def on_ping(self, task: Pong, ctx: Context) -> None: ...  # type: ignore[override]

    assert Child.handled_task_types() == (Pong,)
    assert Child().handler_for(Ping) is None


def test_handlers_merge_from_several_parent_roles() -> None:
    class Ponger(Role):
        @handles(Pong)
        def on_pong(self, task: Pong, ctx: Context) -> None: ...

    class Both(Echo, Ponger):
        pass

    assert set(Both.handled_task_types()) == {Ping, Pong}


# --- misuse, rejected when the class is defined ----------------------------------------------


def _rejected(match: str) -> Any:
    return pytest.raises(UserCodeError, match=match)


@pytest.mark.parametrize(
    "source",
    [
        "def run(self, task): ...",
        "def run(self, task, ctx, extra): ...",
        "def run(self, *args): ...",
        "def run(self, task, *, ctx): ...",
        "def run(self, task, ctx, **kwargs): ...",
    ],
)
def test_handler_with_the_wrong_parameters_is_rejected(source: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with _rejected(r"role .*Bad: method 'run' takes \(.*\), not \(self, task, ctx\)") as info:
        type("Bad", (Role,), {"run": handles(Ping)(namespace["run"])})
    assert "def run(self, task: MyTask, ctx: Context) -> None" in (info.value.hint or "")


def test_async_handler_is_rejected() -> None:
    with _rejected("role .*Bad: method 'run' is async"):

        class Bad(Role):
            @handles(Ping)
            async def run(self, task: Ping, ctx: Context) -> None: ...


def test_generator_handler_is_rejected() -> None:
    with _rejected("role .*Bad: method 'run' is a generator"):

        class Bad(Role):
            @handles(Ping)
            def run(self, task: Ping, ctx: Context) -> Any:
                yield task


@pytest.mark.parametrize("target", ["test_roles.Ping", int, FakeContext, None])
def test_handles_something_that_is_not_a_task_class_is_rejected(target: Any) -> None:
    with _rejected("role .*Bad: method 'run' has @handles(.*), which is not a Task subclass") as info:

        class Bad(Role):
            @handles(target)
            def run(self, task: Any, ctx: Context) -> None: ...

    assert "@handles(MyTask)" in (info.value.hint or "")


def test_bare_handles_without_a_task_type_is_rejected() -> None:
    with _rejected("role .*Bad: method 'run' has @handles.*not a Task subclass"):

        class Bad(Role):
            @handles  # type: ignore[arg-type]
            def run(self, task: Any, ctx: Context) -> None: ...


def test_handles_with_no_task_type_is_rejected() -> None:
    with _rejected(r"method 'run' has @handles\(\) with no task type"):

        class Bad(Role):
            @handles()
            def run(self, task: Any, ctx: Context) -> None: ...


def test_two_methods_handling_one_task_type_are_rejected() -> None:
    with _rejected("role .*Bad: methods 'first' and 'second' both handle Ping"):

        class Bad(Role):
            @handles(Ping)
            def first(self, task: Ping, ctx: Context) -> None: ...

            @handles(Ping)
            def second(self, task: Ping, ctx: Context) -> None: ...


def test_static_method_handler_is_rejected() -> None:
    with _rejected("role .*Bad: method 'run' is a static or class method"):

        class Bad(Role):
            @staticmethod
            @handles(Ping)
            def run(task: Ping, ctx: Context) -> None: ...


def test_plain_override_with_the_wrong_parameters_is_rejected() -> None:
    with _rejected("role .*Child: method 'on_ping' takes"):

        class Child(Echo):
            def on_ping(self, task: Ping) -> None:  # type: ignore[override]
                pass


def test_override_of_a_handler_with_a_non_method_is_rejected() -> None:
    with _rejected("role .*Child: method 'on_ping' is a handler but not a plain method"):

        class Child(Echo):
            on_ping = None  # type: ignore[assignment]


def test_async_setup_is_rejected() -> None:
    with _rejected("role .*Bad: method 'setup' must be a plain"):

        class Bad(Role):
            async def setup(self, ctx: Context) -> None: ...  # type: ignore[override]


def test_teardown_with_the_wrong_parameters_is_rejected() -> None:
    with _rejected(r"role .*Bad: method 'teardown' takes \(self\), not \(self, ctx\)"):

        class Bad(Role):
            def teardown(self) -> None: ...  # type: ignore[override]


def test_rejected_role_is_not_half_built() -> None:
    class Fine(Role):
        @handles(Ping)
        def run(self, task: Ping, ctx: Context) -> None: ...

    with _rejected("both handle"):

        class Broken(Fine):
            @handles(Pong)
            def a(self, task: Pong, ctx: Context) -> None: ...

            @handles(Pong)
            def b(self, task: Pong, ctx: Context) -> None: ...

    assert Fine.handled_task_types() == (Ping,)
