"""Task classes: definition checks, registry, priority, wire round trips and hostile headers."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
import types
from typing import Any, Optional

import msgspec
import pytest
import torch

from splittracer.errors import UserCodeError, WireError
from splittracer.tasks import (
    EncodedTask,
    Task,
    decode_task,
    encode_task,
    task_name,
    task_registry,
    task_type,
)

# Explicit names: the registry is process-wide and other test modules define tasks too.


class RunLayers(Task, name="test_tasks.RunLayers"):
    start: int
    end: int
    tensors: list[torch.Tensor]
    note: str = ""


class Urgent(Task, name="test_tasks.Urgent", priority=5):
    payload: bytes


class MoreUrgent(Urgent, name="test_tasks.MoreUrgent"):
    extra: int = 0


class Rich(Task, name="test_tasks.Rich"):
    flag: bool
    ratio: float
    blob: bytes
    maybe: torch.Tensor | None
    grid: dict[str, list[torch.Tensor]]
    pair: tuple[int, str]
    sizes: tuple[int, ...]
    nested: list[dict[str, Optional[torch.Tensor]]]  # noqa: UP045 - the old spelling must work
    empty: list[torch.Tensor] = dataclasses.field(default_factory=list)


class RunLayersWithTrace(RunLayers, name="test_tasks.RunLayersWithTrace"):
    trace: str = "t0"


def _round_trip(task: Task, wrap: type = bytes) -> Any:
    encoded = encode_task(task)
    return decode_task(encoded.header, [wrap(b) for b in encoded.buffers])


def _header(
    type_name: str,
    fields: dict[str, Any],
    tensors: list[list[Any]] | None = None,
    priority: int = 0,
    version: int = 1,
) -> bytes:
    """A hand-written header in the wire layout, for messages encode_task would never make."""
    return msgspec.msgpack.encode([version, type_name, priority, tensors or [], fields])


def _ref(index: int) -> msgspec.msgpack.Ext:
    return msgspec.msgpack.Ext(1, index.to_bytes(4, "little"))


# --- definition ------------------------------------------------------------------------------


def test_subclass_is_a_keyword_only_dataclass() -> None:
    task = RunLayers(start=1, end=4, tensors=[])
    assert dataclasses.is_dataclass(task)
    assert (task.start, task.end, task.note) == (1, 4, "")
    with pytest.raises(TypeError):
        RunLayers(1, 4, [])  # type: ignore[misc]


def test_tasks_compare_by_identity_because_tensor_equality_is_elementwise() -> None:
    a = RunLayers(start=0, end=1, tensors=[torch.ones(3)])
    b = RunLayers(start=0, end=1, tensors=[torch.ones(3)])
    assert a == a and a != b


def test_default_name_is_the_qualname() -> None:
    class Local(Task):
        value: int

    assert task_name(Local) == Local.__qualname__
    assert task_type(Local.__qualname__) is Local
    assert task_registry()[Local.__qualname__] is Local


def test_custom_name_registers_under_that_name() -> None:
    assert task_type("test_tasks.RunLayers") is RunLayers
    assert task_name(RunLayers(start=0, end=0, tensors=[])) == "test_tasks.RunLayers"
    # Its class name is not registered by it (the built-in RunLayers may hold that name).
    assert task_registry().get("RunLayers") is not RunLayers


def test_registry_view_is_read_only() -> None:
    with pytest.raises(TypeError):
        task_registry()["x"] = RunLayers  # type: ignore[index]


def test_unknown_task_type_lookup_suggests_a_close_name() -> None:
    with pytest.raises(UserCodeError, match=r"test_tasks.RunLayer'") as info:
        task_type("test_tasks.RunLayer")
    assert "did you mean 'test_tasks.RunLayers'?" in (info.value.hint or "")


def test_two_classes_with_one_name_are_rejected() -> None:
    class First(Task, name="test_tasks.taken"):
        value: int

    with pytest.raises(UserCodeError, match=r"both registered as 'test_tasks.taken'"):

        class Second(Task, name="test_tasks.taken"):
            value: int

    assert task_type("test_tasks.taken") is First


def test_running_the_same_definition_again_replaces_it() -> None:
    def define() -> type[Task]:
        class Again(Task, name="test_tasks.again"):
            value: int

        return Again

    first, second = define(), define()
    assert first is not second
    assert task_type("test_tasks.again") is second


@pytest.mark.parametrize(
    "annotation",
    [
        object,
        Any,
        list,
        "set[int]",
        "dict[int, str]",
        "torch.nn.Module",
        "torch.Tensor | int",
        "list[int] | tuple[int, ...]",
        "Unsupported",
    ],
)
def test_unsupported_field_type_is_rejected_naming_class_and_field(annotation: Any) -> None:
    namespace = {"__annotations__": {"bad_field": annotation}, "__module__": __name__}
    with pytest.raises(UserCodeError, match="task BadTask: field 'bad_field'") as info:
        type("BadTask", (Task,), namespace)
    assert "torch.Tensor" in (info.value.hint or "")


class Unsupported:
    """A user class: not a type that can travel."""


def test_unresolvable_annotation_is_a_user_code_error() -> None:
    namespace = {"__annotations__": {"value": "NoSuchType"}, "__module__": __name__}
    with pytest.raises(UserCodeError, match="cannot resolve"):
        type("Unresolvable", (Task,), namespace)


def test_declaring_priority_as_a_field_is_rejected() -> None:
    with pytest.raises(UserCodeError, match="declares 'priority'") as info:

        class Clash(Task):
            priority: int = 3  # type: ignore[misc]

    assert "priority=5" in (info.value.hint or "")


def test_defining_init_is_rejected() -> None:
    with pytest.raises(UserCodeError, match="defines __init__"):

        class Custom(Task):
            def __init__(self) -> None:
                pass


def test_failed_definition_is_not_registered() -> None:
    with pytest.raises(UserCodeError):
        type("NeverRegistered", (Task,), {"__annotations__": {"x": object}})
    assert "NeverRegistered" not in task_registry()


# --- priority --------------------------------------------------------------------------------


def test_priority_defaults_to_zero() -> None:
    assert RunLayers(start=0, end=0, tensors=[]).priority == 0
    assert RunLayers.priority == 0


def test_class_keyword_sets_the_default_priority() -> None:
    assert Urgent.priority == 5
    assert Urgent(payload=b"").priority == 5


def test_instance_keyword_overrides_the_class_priority() -> None:
    assert Urgent(payload=b"", priority=9).priority == 9
    assert Urgent(payload=b"", priority=0).priority == 0


def test_subclass_inherits_the_class_priority_and_the_parent_keeps_its_own() -> None:
    class Calm(Urgent, name="test_tasks.Calm", priority=-1):
        pass

    assert MoreUrgent(payload=b"").priority == 5
    assert Calm(payload=b"").priority == -1
    assert Urgent(payload=b"").priority == 5
    assert RunLayers(start=0, end=0, tensors=[]).priority == 0


def test_priority_travels_on_the_wire() -> None:
    assert _round_trip(Urgent(payload=b"x", priority=7)).priority == 7
    assert _round_trip(MoreUrgent(payload=b"x")).priority == 5


def test_class_priority_must_be_an_int() -> None:
    with pytest.raises(UserCodeError, match="priority must be an int"):

        class Bad(Task, priority="high"):  # type: ignore[arg-type]
            value: int


# --- round trips -----------------------------------------------------------------------------


def test_round_trip_keeps_fields_and_tensors() -> None:
    original = RunLayers(start=2, end=5, tensors=[torch.randn(2, 3), torch.arange(4)], note="warm-up")
    decoded = _round_trip(original)
    assert type(decoded) is RunLayers
    assert (decoded.start, decoded.end, decoded.note) == (2, 5, "warm-up")
    assert all(torch.equal(a, b) for a, b in zip(decoded.tensors, original.tensors, strict=True))


def test_nested_containers_of_tensors_round_trip() -> None:
    original = Rich(
        flag=True,
        ratio=0.25,
        blob=b"\x00\xff",
        maybe=None,
        grid={"skip": [torch.ones(2, dtype=torch.bfloat16)], "none": []},
        pair=(3, "three"),
        sizes=(1, 2, 3),
        nested=[{"a": torch.zeros(0, 4), "b": None}, {}],
    )
    decoded = _round_trip(original, wrap=bytearray)
    assert (decoded.flag, decoded.ratio, decoded.blob, decoded.maybe) == (True, 0.25, b"\x00\xff", None)
    assert decoded.pair == (3, "three") and decoded.sizes == (1, 2, 3)
    assert torch.equal(decoded.grid["skip"][0], original.grid["skip"][0])
    assert decoded.grid["skip"][0].dtype is torch.bfloat16
    assert decoded.grid["none"] == [] and decoded.empty == []
    assert decoded.nested[0]["a"].shape == (0, 4) and decoded.nested[0]["b"] is None
    assert decoded.nested[1] == {}


def test_buffers_are_in_reference_order_and_share_tensor_memory() -> None:
    first, second = torch.arange(3, dtype=torch.float32), torch.arange(5, dtype=torch.int64)
    encoded = encode_task(RunLayers(start=0, end=1, tensors=[first, second]))
    assert isinstance(encoded, EncodedTask)
    assert [memoryview(b).nbytes for b in encoded.buffers] == [12, 40]
    first[0] = 9.0  # zero-copy: the buffer sees the change
    assert bytes(encoded.buffers[0])[:4] == torch.tensor([9.0]).numpy().tobytes()
    assert encoded.nbytes == len(encoded.header) + 52


def test_the_same_tensor_twice_is_sent_once_and_decoded_as_one() -> None:
    shared = torch.ones(4)
    encoded = encode_task(RunLayers(start=0, end=1, tensors=[shared, shared]))
    assert len(encoded.buffers) == 1
    decoded: Any = decode_task(encoded.header, encoded.buffers)
    assert decoded.tensors[0] is decoded.tensors[1]


def test_subclassed_task_round_trips_with_inherited_fields() -> None:
    decoded = _round_trip(RunLayersWithTrace(start=1, end=2, tensors=[], trace="t9"))
    assert type(decoded) is RunLayersWithTrace
    assert (decoded.start, decoded.trace) == (1, "t9")


def test_field_with_a_default_may_be_left_out_of_the_header() -> None:
    decoded: Any = decode_task(_header("test_tasks.RunLayers", {"start": 1, "end": 2, "tensors": []}), [])
    assert decoded.note == ""


def test_int_is_accepted_for_a_float_field() -> None:
    fields = {
        "flag": False,
        "ratio": 1,
        "blob": b"",
        "maybe": None,
        "grid": {},
        "pair": [1, "a"],
        "sizes": [],
        "nested": [],
    }
    decoded: Any = decode_task(_header("test_tasks.Rich", fields), [])
    assert decoded.ratio == 1.0 and isinstance(decoded.ratio, float)
    assert decoded.pair == (1, "a")


# --- encoding errors -------------------------------------------------------------------------


def test_value_of_the_wrong_type_is_caught_before_sending() -> None:
    task = RunLayers(start="zero", end=1, tensors=[])  # type: ignore[arg-type]
    with pytest.raises(UserCodeError, match=r"task test_tasks.RunLayers: field 'start'") as info:
        encode_task(task)
    # The field, its type and the type given, in the user's terms (msgspec's text adds nothing here).
    assert info.value.message == "task test_tasks.RunLayers: field 'start' must be int, got str"


def test_non_tensor_in_a_tensor_list_is_caught_before_sending() -> None:
    task = RunLayers(start=0, end=1, tensors=[torch.ones(1), [1.0]])  # type: ignore[list-item]
    with pytest.raises(UserCodeError, match=r"field 'tensors'.*\$\[1\]"):
        encode_task(task)


def test_base_task_cannot_be_sent() -> None:
    with pytest.raises(UserCodeError, match="not a task type"):
        encode_task(Task())


# --- decoding errors -------------------------------------------------------------------------


def test_unknown_task_type_is_a_wire_error_listing_known_ones() -> None:
    with pytest.raises(WireError, match=r"unknown task type 'Evil'; known: .*test_tasks.RunLayers"):
        decode_task(_header("Evil", {}), [])


def test_unknown_field_is_a_wire_error() -> None:
    fields = {"start": 1, "end": 2, "tensors": [], "rm_rf": True}
    with pytest.raises(WireError, match=r"test_tasks.RunLayers: unknown field 'rm_rf'"):
        decode_task(_header("test_tasks.RunLayers", fields), [])


def test_missing_required_field_is_a_wire_error() -> None:
    with pytest.raises(WireError, match=r"test_tasks.RunLayers: missing required field 'end'"):
        decode_task(_header("test_tasks.RunLayers", {"start": 1, "tensors": []}), [])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start", "1"),
        ("start", True),
        ("start", 1.5),
        ("tensors", [3]),
        ("tensors", {"a": 1}),
        ("note", b"bytes"),
    ],
)
def test_value_of_the_wrong_type_is_a_wire_error(field: str, value: Any) -> None:
    fields = {"start": 1, "end": 2, "tensors": [], field: value}
    with pytest.raises(WireError, match=f"test_tasks.RunLayers: field '{field}' does not match"):
        decode_task(_header("test_tasks.RunLayers", fields), [])


def test_tensor_reference_where_a_number_belongs_is_a_wire_error() -> None:
    fields = {"start": _ref(0), "end": 2, "tensors": []}
    with pytest.raises(WireError, match="field 'start'"):
        decode_task(_header("test_tasks.RunLayers", fields, [["float32", [1]]]), [bytes(4)])


def test_out_of_range_tensor_reference_is_a_wire_error() -> None:
    fields = {"start": 1, "end": 2, "tensors": [_ref(3)]}
    with pytest.raises(WireError, match="tensor reference 3 is out of range"):
        decode_task(_header("test_tasks.RunLayers", fields, [["float32", [1]]]), [bytes(4)])


def test_buffer_count_must_match_the_header() -> None:
    encoded = encode_task(RunLayers(start=0, end=1, tensors=[torch.ones(2)]))
    with pytest.raises(WireError, match="describes 1 tensors, got 0 buffers"):
        decode_task(encoded.header, [])


def test_unknown_dtype_in_header_is_a_wire_error() -> None:
    fields = {"start": 1, "end": 2, "tensors": [_ref(0)]}
    with pytest.raises(WireError, match="unknown tensor dtype 'object'"):
        decode_task(_header("test_tasks.RunLayers", fields, [["object", [1]]]), [bytes(8)])


def test_other_format_version_is_a_wire_error() -> None:
    with pytest.raises(WireError, match="format version 2"):
        decode_task(_header("test_tasks.RunLayers", {}, version=2), [])


@pytest.mark.parametrize("header", [b"", b"\xc1", b"not msgpack", msgspec.msgpack.encode([1, 2])])
def test_malformed_header_is_a_wire_error(header: bytes) -> None:
    with pytest.raises(WireError, match="malformed task header"):
        decode_task(header, [])


# --- hostile input: nothing a peer sends is ever executed ------------------------------------

_EXECUTED: list[str] = []


def _pwn(tag: str) -> None:
    _EXECUTED.append(tag)


class _Exploit:
    def __reduce__(self) -> tuple[Any, ...]:
        return (_pwn, ("pwned",))


def _live_payload() -> bytes:
    """A pickle that runs code when loaded; checked to really do so, then reset."""
    payload = pickle.dumps(_Exploit())
    pickle.loads(payload)
    assert _EXECUTED == ["pwned"]
    _EXECUTED.clear()
    return payload


def test_pickle_instead_of_a_header_is_rejected_not_executed() -> None:
    payload = _live_payload()
    with pytest.raises(WireError):
        decode_task(payload, [])
    assert _EXECUTED == []


def test_pickle_inside_a_bytes_field_stays_inert_bytes() -> None:
    payload = _live_payload()
    decoded: Any = decode_task(_header("test_tasks.Urgent", {"payload": payload}), [])
    assert decoded.payload == payload and isinstance(decoded.payload, bytes)
    assert _EXECUTED == []


def test_pickle_inside_a_foreign_ext_is_rejected_not_executed() -> None:
    smuggled = msgspec.msgpack.Ext(2, _live_payload())
    fields = {"start": 1, "end": 2, "tensors": [smuggled]}
    with pytest.raises(WireError, match="ext code 2 is not a tensor reference"):
        decode_task(_header("test_tasks.RunLayers", fields), [])
    assert _EXECUTED == []


def test_pickle_where_a_string_belongs_is_rejected() -> None:
    fields = {"start": 1, "end": 2, "tensors": [], "note": _live_payload()}
    with pytest.raises(WireError, match="field 'note'"):
        decode_task(_header("test_tasks.RunLayers", fields), [])
    assert _EXECUTED == []


class Plain(Task, name="test_tasks.Plain"):
    count: int
    ratio: float
    data: torch.Tensor


def test_values_of_another_type_than_the_field_are_still_converted_or_refused() -> None:
    # Values exactly of their field's type skip msgspec.convert; everything else still goes through it.
    back = _round_trip(Plain(count=3, ratio=2, data=torch.ones(2)))
    assert type(back.ratio) is float and back.ratio == 2.0 and back.count == 3
    assert torch.equal(back.data, torch.ones(2))
    with pytest.raises(UserCodeError, match="field 'count' must be int, got bool"):
        encode_task(Plain(count=True, ratio=1.0, data=torch.ones(1)))
    with pytest.raises(UserCodeError, match="field 'data'"):
        encode_task(Plain(count=1, ratio=1.0, data=[1.0]))  # type: ignore[arg-type]


def test_a_tensor_field_holding_no_tensor_reference_is_refused() -> None:
    encoded = encode_task(Plain(count=1, ratio=1.0, data=torch.ones(1)))
    fields = msgspec.msgpack.encode({"count": 1, "ratio": 1.0, "data": msgspec.msgpack.Ext(9, b"\0\0\0\0")})
    header = msgspec.msgpack.decode(encoded.header)  # an array: version, type, priority, tensors, fields
    header[-1] = msgspec.Raw(fields)
    with pytest.raises(WireError, match="field 'data' does not match"):
        decode_task(msgspec.msgpack.encode(header), [bytes(b) for b in encoded.buffers])


# --- torch only where a tensor is --------------------------------------------------------------

# A task module that imports torch for type checking only, as the built-in tasks do: its
# annotations name ``torch`` although its namespace has none.
_TYPE_CHECKING_ONLY = """
from __future__ import annotations
from typing import TYPE_CHECKING
from splittracer.tasks import Task
if TYPE_CHECKING:
    import torch

class Lazy(Task, name="test_tasks.Lazy"):
    tensors: list[torch.Tensor]
    label: str = ""

class LazyBad(Task, name="test_tasks.LazyBad"):
    values: set[torch.Tensor]
"""


def _type_checking_only_module(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    module = types.ModuleType("test_tasks_lazy")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # where dataclasses look annotations up
    exec(compile(_TYPE_CHECKING_ONLY, "test_tasks_lazy.py", "exec"), module.__dict__)
    assert "torch" not in module.__dict__
    return module.__dict__


def test_a_task_whose_module_imports_torch_for_type_checking_only_resolves_when_first_sent(monkeypatch):
    lazy = _type_checking_only_module(monkeypatch)["Lazy"]
    assert task_type("test_tasks.Lazy") is lazy and task_name(lazy) == "test_tasks.Lazy"
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    back = _round_trip(lazy(tensors=[x], label="a"))
    assert back.label == "a" and torch.equal(back.tensors[0], x)
    with pytest.raises(UserCodeError, match="field 'tensors' must be list"):
        encode_task(lazy(tensors=["not a tensor"]))


def test_a_deferred_task_with_a_field_that_cannot_be_sent_fails_when_first_used(monkeypatch):
    bad = _type_checking_only_module(monkeypatch)["LazyBad"]
    with pytest.raises(UserCodeError, match="field 'values' has type"):
        encode_task(bad(values=set()))


def test_a_task_without_tensors_is_sent_by_a_process_without_torch(tmp_path):
    # The controller's case: build and encode the built-in tasks it sends, and decode one
    # back, in a fresh interpreter that never imports torch.
    code = (
        "import sys\n"
        "from splittracer.builtin import Infer, Sweep\n"
        "from splittracer.tasks import decode_task, encode_task\n"
        "encoded = encode_task(Sweep(next=['cloud'], splits=[1, 3]))\n"
        "back = decode_task(encoded.header, encoded.buffers)\n"
        "encode_task(Infer(next=['cloud'], split=2))\n"
        "print(back.splits, 'torch' in sys.modules)\n"
    )
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[1,", "3]", "False"]
