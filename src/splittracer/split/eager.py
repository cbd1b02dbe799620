"""Eager capture: split a model no tracer can capture, by running its own Python.

Why this design. ``torch.export`` and ``torch.fx`` need one graph for every
input; a detector's forward has none (how many boxes survive non-maximum
suppression decides what runs next), and a Python branch on a tensor's value
has two. Three ways were weighed:

* capture the largest traceable sub-modules and run the glue between them
  eagerly: exact, but it needs a second capture per sub-module, and the glue
  between them still has to be split somewhere;
* graph breaks from ``torch.compile``: the pieces between breaks are graphs,
  but where Dynamo breaks is its own business, changes between releases and
  is not addressable by a module name a user knows;
* **run the model's own forward eagerly with its layer modules intercepted**
  (chosen): every leaf module (or block, at ``--granularity block``) is a
  layer, in the order the forward calls it on the example input. The head
  runs the forward until layer ``k`` returns and stops there (a private
  signal raised from the interception); the tail runs the same forward from
  the top, but each of layers ``1..k`` returns the value the head banked
  instead of computing, so no layer is computed twice. Whatever Python the
  forward runs between layers (the glue: flatten, branches, box decoding,
  NMS, post-processing) runs again on identical values, so it takes the same
  path; the glue after the last layer runs on the last participant.

What crosses cut ``k`` is found on the example input: every layer output
(and the input) that a later layer reads, that glue reads by value anywhere
in the forward (the tail re-runs all glue), or that is the model's output. A
tensor mode follows each tensor through the glue back to the layers it came
from. Reading only the input's shape (``img.shape[-2:]`` in a detector) does
not send the input: the tail gets a stand-in of the same shape.

Limits: the input's shape must be the example's; a layer whose output
changes structure from input to input (a list whose length varies) cannot be
banked; placements other than cuts need a graph, so they are refused. A
part routes the model's layer modules through itself while it runs, so one
model runs one part at a time; and since every part replays the forward's
glue, per-layer profiles of an eager model include that glue.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import SplitError
from .parts import Part
from .structure import Spec, flatten, leaves_of, tensors_in, unflatten

# Reading these tells a tensor's metadata, not its values (``__get__``: ``.shape``, ``.dtype``).
METADATA = frozenset(
    {"size", "dim", "numel", "__len__", "is_floating_point", "stride", "ndimension", "__get__"}
)

INPLACE_OPERATORS = frozenset(
    f"__i{op}__" for op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor",
                            "lshift", "rshift", "matmul")
)  # fmt: skip

Unit = tuple[int, int]  # (layer, leaf): leaf j of layer i's output; layer 0 is the input


class _Stop(BaseException):
    """Raised after a part's last layer; a BaseException so the model's ``except Exception`` lets it by."""


@dataclass
class EagerCapture:
    """What one eager run of the example taught: the layers, their outputs and what each cut sends."""

    model: nn.Module
    example: torch.Tensor
    paths: tuple[str, ...]  # module path of layer i + 1
    specs: dict[int, Spec]  # structure of each layer's output (0: the input)
    values: dict[int, Any]  # each layer's output on the example (0: the input)
    sent: tuple[tuple[Unit, ...], ...]  # sent[k]: the leaves crossing cut k, in order
    mutated: frozenset[Unit] = frozenset()  # leaves the glue changes in place: banked as copies

    @property
    def count(self) -> int:
        """Number of layers."""
        return len(self.paths)

    @functools.cached_property
    def index_of(self) -> dict[tuple[str, int], int]:
        """Layer of each module's n-th call (1-based) on the example."""
        seen: dict[str, int] = {}
        index = {}
        for i, path in enumerate(self.paths, start=1):
            seen[path] = seen.get(path, 0) + 1
            index[(path, seen[path])] = i
        return index

    def tensors_at(self, k: int) -> list[tuple[str, torch.Tensor]]:
        """Name and example value of every tensor crossing cut ``k``."""
        return [(f"{self._name(i)}.{j}", leaves_of(self.values[i])[j]) for i, j in self.sent[k]]

    def part(self, start: int, end: int, *, final: bool) -> EagerPart:
        """Layers ``start+1..end``: takes cut ``start``'s tensors, returns cut ``end``'s (or the output)."""
        return EagerPart(self, start, end, final)

    def _name(self, i: int) -> str:
        return "input" if i == 0 else self.paths[i - 1]


def capture_eager(model: nn.Module, example: torch.Tensor, paths: Sequence[str]) -> EagerCapture:
    """Run ``model`` once on ``example`` with the modules ``paths`` as layers, and learn the cuts."""
    recorder = _Recorder(model, set(paths))
    with torch.no_grad():
        recorder.tag(example, 0)
        with _Installed(model, set(paths), recorder.call), _Provenance(recorder):
            output = model(example)
    if not recorder.order:
        raise SplitError("the forward called none of the model's modules, so it has no layers to split")
    return recorder.result(example, output)


def hooked_paths(model: nn.Module, key: Callable[[str], str | None]) -> list[str]:
    """The modules that are layers: each leaf's layer module (``key``), when that names a module."""
    names = dict(model.named_modules())
    chosen: set[str] = set()
    for path, module in names.items():
        if path and not any(True for _ in module.children()):
            layer = key(path)
            chosen.add(layer if layer in names and layer else path)
    return sorted(chosen)


class _Recorder:
    """Bookkeeping of the recording run: where each tensor came from, and who read what."""

    def __init__(self, model: nn.Module, paths: set[str]) -> None:
        self.model, self.paths = model, paths
        self.order: list[str] = []
        self.values: dict[int, Any] = {}
        self.sources: dict[int, frozenset[Unit]] = {}  # id(tensor) -> the leaves it came from
        self.alive: list[torch.Tensor] = []  # keeps ids unique while the run lasts
        self.units: list[Unit] = []
        self.always: set[Unit] = set()  # numbers: no tensor to follow, so always sent on
        self.reads: list[frozenset[Unit]] = []  # reads[j - 1]: leaves layer j read
        self.python_reads: set[Unit] = set()  # leaves whose values Python code looked at
        self.mutated: set[Unit] = set()
        self.depth = 0

    def tag(self, value: Any, layer: int) -> None:
        self.values[layer] = value
        leaves, spec = flatten(value)
        for j, (leaf, kind) in enumerate(zip(leaves, spec.kinds())):
            self.units.append((layer, j))
            if kind == "number":
                self.always.add((layer, j))
            # A layer that hands back its input (Identity, Dropout in eval) keeps both origins.
            self.sources[id(leaf)] = self.sources.get(id(leaf), frozenset()) | {(layer, j)}
            self.alive.append(leaf)

    def sources_of(self, value: Any) -> frozenset[Unit]:
        found: frozenset[Unit] = frozenset()
        for leaf in tensors_in(value):
            found |= self.sources.get(id(leaf), frozenset())
        return found

    def call(self, path: str, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.depth:
            return original(*args, **kwargs)
        self.reads.append(self.sources_of((args, kwargs)))
        self.depth += 1
        try:
            out = original(*args, **kwargs)
        finally:
            self.depth -= 1
        self.order.append(path)
        self.tag(out, len(self.order))
        return out

    def glue(self, name: str, args: Any, kwargs: Any, result: Any) -> None:
        """One torch call of the forward's own code (not inside a layer)."""
        sources = self.sources_of((args, kwargs))
        if not sources:
            return
        if (
            (name.endswith("_") and not name.endswith("__"))
            or name in INPLACE_OPERATORS
            or name == "__setitem__"
        ):
            target = next(iter(tensors_in(args[:1])), None)
            if target is not None:  # the changed tensor now also depends on what was written into it
                self.mutated |= self.sources.get(id(target), frozenset())
                self.sources[id(target)] = self.sources.get(id(target), frozenset()) | sources
        made = list(tensors_in(result))
        if not made and name in METADATA:
            self.python_reads |= {u for u in sources if u[0] != 0}
        elif not made:
            self.python_reads |= sources  # item(), bool(), tolist(): control flow may follow
        for leaf in made:
            self.sources.setdefault(id(leaf), sources)
            self.alive.append(leaf)

    def result(self, example: torch.Tensor, output: Any) -> EagerCapture:
        needed = self.sources_of(output) | self.always | self.python_reads
        count = len(self.order)
        later: set[Unit] = set()  # read by a layer after the cut (filled from the last cut down)
        sent: list[tuple[Unit, ...]] = []
        for k in range(count, -1, -1):
            if k < count:
                later |= self.reads[k]
            sent.append(tuple(u for u in self.units if u[0] <= k and (u in needed or u in later)))
        specs = {i: flatten(v)[1] for i, v in self.values.items()}
        return EagerCapture(
            self.model, example, tuple(self.order), specs, self.values, tuple(reversed(sent)),
            frozenset(self.mutated),
        )  # fmt: skip


class _Provenance(TorchFunctionMode):
    """Follows tensors made by glue back to the layer outputs (or the input) they came from."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if not self.recorder.depth:  # inside a layer, its output is tagged when it returns
            self.recorder.glue(getattr(func, "__name__", ""), args, kwargs, result)
        return result


class _Installed:
    """Routes every call of the layer modules through ``call(path, original, ...)`` while active."""

    def __init__(self, model: nn.Module, paths: set[str], call: Callable[..., Any]) -> None:
        self.modules = [(p, model.get_submodule(p)) for p in sorted(paths)]
        self.call = call

    def __enter__(self) -> None:
        self.saved = [module.__dict__.get("forward") for _p, module in self.modules]
        for path, module in self.modules:
            module.forward = functools.partial(self.call, path, module.forward)

    def __exit__(self, *exc: object) -> None:
        for (_path, module), saved in zip(self.modules, self.saved):
            del module.forward  # the class's forward shows through again
            if saved is not None:
                module.forward = saved


@dataclass
class _Replay:
    """One run of a part: which layer call comes next, and what was banked."""

    start: int
    end: int
    final: bool
    given: Callable[[int], Any]  # the stand-in or received value of layer i <= start
    keep: frozenset[int]
    mutated: frozenset[int]
    index_of: dict[tuple[str, int], int]  # (module path, its n-th call) -> layer
    calls: dict[str, int] = field(default_factory=dict)
    depth: int = 0
    banked: dict[int, Any] = field(default_factory=dict)

    def call(self, path: str, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.depth:
            return original(*args, **kwargs)
        # A layer is a module's n-th call, not the n-th call overall: where a branch on a value
        # skips a module this time, the layers after it keep their names.
        self.calls[path] = self.calls.get(path, 0) + 1
        index = self.index_of.get((path, self.calls[path]), self.end + 1)  # one the example skipped
        if index <= self.start:
            return self.given(index)
        self.depth += 1
        try:
            out = original(*args, **kwargs)
        finally:
            self.depth -= 1
        if index in self.keep:
            self.banked[index] = _copy(out) if index in self.mutated else out
        if index == self.end and not self.final:
            raise _Stop
        return out


class EagerPart(Part):
    """Layers ``start + 1 .. end`` of an eagerly captured model, as a module (see the module doc)."""

    def __init__(self, cap: EagerCapture, start: int, end: int, final: bool) -> None:
        nn.Module.__init__(self)  # no graph module: the model's own forward is the graph
        self.cap, self.start, self.end, self.final = cap, start, end, final
        self.layers = tuple(range(start + 1, end + 1))
        self.input_names = tuple(name for name, _t in cap.tensors_at(start))
        self.output_names = () if final else tuple(name for name, _t in cap.tensors_at(end))
        self.out_spec = None
        self._replay: _Replay | None = None

    def forward(self, *tensors: torch.Tensor) -> Any:
        """Run the part on the tensors crossing cut ``start``."""
        received = self._received(tensors)
        if self.start == self.end and not self.final:
            return tuple(received[u] for u in self.cap.sent[self.end])
        given = functools.partial(self._value, received)
        keep = frozenset(i for i, _j in self.cap.sent[self.end])
        mutated = frozenset(i for i, _j in self.cap.mutated)
        replay = _Replay(self.start, self.end, self.final, given, keep, mutated, self.cap.index_of)
        self._replay = replay
        try:
            with _Installed(self.cap.model, set(self.cap.paths), self._route):
                output = self.cap.model(given(0))
        except _Stop:
            return self._sent(received, replay.banked)
        finally:
            self._replay = None
        if not self.final:
            raise SplitError(
                f"the forward ended before layer {self.end} ran: its path changed with the input"
            )
        return output

    def extra_repr(self) -> str:
        return f"layers {self.start + 1}..{self.end} (eager)"

    def _route(self, path: str, original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        assert self._replay is not None
        return self._replay.call(path, original, *args, **kwargs)

    def _received(self, tensors: Sequence[torch.Tensor]) -> dict[Unit, torch.Tensor]:
        units = self.cap.sent[self.start]
        if len(tensors) != len(units):
            raise SplitError(
                f"layers {self.start + 1}..{self.end} take {len(units)} tensors, got {len(tensors)}"
            )
        return dict(zip(units, tensors))

    def _value(self, received: dict[Unit, torch.Tensor], i: int) -> Any:
        """Layer i's output built from the leaves received, stand-ins for the others.

        A leaf not received is one nothing after the cut reads. Its stand-in
        has the example's shape but is NaN, so a read the capture missed shows
        up as a split that differs when it is verified, not as a silent copy
        of the example's values.
        """
        example = leaves_of(self.cap.values[i])
        leaves = [
            received[(i, j)] if (i, j) in received else _stand_in(leaf, (i, j) in self.cap.mutated)
            for j, leaf in enumerate(example)
        ]
        return unflatten(self.cap.specs[i], iter(leaves))

    def _sent(self, received: dict[Unit, torch.Tensor], banked: dict[int, Any]) -> tuple[torch.Tensor, ...]:
        out: list[torch.Tensor] = []
        leaves = {i: leaves_of(value) for i, value in banked.items()}
        for i, j in self.cap.sent[self.end]:
            if (i, j) in received:
                out.append(received[(i, j)])
                continue
            if len(leaves[i]) != self.cap.specs[i].count:
                raise SplitError(
                    f"layer {i} ({self.cap.paths[i - 1]}) returned {len(leaves[i])} tensors where the "
                    f"example gave {self.cap.specs[i].count}: its output's structure changed with the input"
                )
            out.append(leaves[i][j])
        return tuple(out)


def _stand_in(leaf: torch.Tensor, mutated: bool) -> torch.Tensor:
    """NaN of ``leaf``'s shape (no memory unless written to); integers keep the example's values."""
    if not leaf.is_floating_point():
        return leaf.clone() if mutated else leaf
    nan = torch.full((), float("nan"), dtype=leaf.dtype, device=leaf.device).expand(leaf.shape)
    return nan.clone() if mutated else nan


def _copy(value: Any) -> Any:
    leaves, spec = flatten(value)
    return unflatten(spec, iter([t.clone() for t in leaves]))
