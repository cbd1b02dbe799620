"""An override's ``sequence:``: modules run one after another, with glue between them.

Each item is a module path, or one functional step applied to the value
flowing down the chain::

    sequence:
      - features
      - avgpool
      - flatten: 1                # torch.flatten(x, 1)
      - reshape: [-1, 9216]       # x.reshape(-1, 9216)
      - call: mypkg.glue:squash   # any function of one value, named module:callable
      - classifier

The chain is checked on the example input step by step, so a wrong sequence
is reported as the step that failed, with the shape it was given, instead of
torch's error from deep inside a module.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from ..errors import CaptureError, SplitTracerError
from ..models import import_object

GLUE = ("flatten", "reshape", "call")


@dataclass(frozen=True)
class Step:
    """One item of a sequence: a module call (``module``) or a functional step."""

    kind: str  # "module" or one of GLUE
    arg: Any  # module path, start dim, shape, or "module:callable"

    @property
    def label(self) -> str:
        """How the step reads in the override file."""
        return str(self.arg) if self.kind == "module" else f"{self.kind}: {self.arg}"


@dataclass(frozen=True)
class SequenceProblem:
    """Why step ``index`` of a sequence cannot run (or why the chain is not the model)."""

    index: int
    message: str
    hint: str


def parse_step(item: object) -> Step:
    """A sequence item as written in YAML; a ValueError says what was expected."""
    if isinstance(item, str):
        return Step("module", item)
    if not isinstance(item, dict) or len(item) != 1:
        raise ValueError(f"expected a module path or one of {{{', '.join(GLUE)}: ...}}, got {item!r}")
    ((kind, arg),) = item.items()
    if kind == "flatten" and isinstance(arg, int) and not isinstance(arg, bool):
        return Step(kind, arg)
    if kind == "reshape" and isinstance(arg, list) and arg and all(isinstance(d, int) for d in arg):
        return Step(kind, tuple(arg))
    if kind == "call" and isinstance(arg, str) and ":" in arg:
        return Step(kind, arg)
    raise ValueError(
        f"'{kind}: {arg!r}' is not a step; write 'flatten: START_DIM', 'reshape: [D1, D2, ...]' "
        "or 'call: module:function'"
    )


def chain_graph(model: nn.Module, steps: Sequence[Step]) -> fx.GraphModule:
    """An FX graph running ``steps`` in order; functional steps are glue of the module before them."""
    graph = fx.Graph()
    value = graph.placeholder("x")
    for step in steps:
        if step.kind == "module":
            _module(model, step.arg)
            value = graph.call_module(step.arg, (value,))
        elif step.kind == "flatten":
            value = graph.call_function(torch.flatten, (value, step.arg))
        elif step.kind == "reshape":
            value = graph.call_method("reshape", (value, *step.arg))
        else:
            value = graph.call_function(_function(step.arg), (value,))
    graph.output(value)
    return fx.GraphModule(model, graph)


def check_chain(model: nn.Module, steps: Sequence[Step], example: torch.Tensor) -> SequenceProblem | None:
    """Run ``steps`` one at a time on ``example``; the first that fails, or an output unlike the model's."""
    value: Any = example
    with torch.no_grad():
        for index, step in enumerate(steps):
            try:
                value = _run_step(model, step, value)
            except Exception as exc:
                return _failed(model, steps, index, value, exc)
        expected = model(example)
    if not isinstance(expected, torch.Tensor) or not isinstance(value, torch.Tensor):
        return None  # the split check compares structured outputs leaf by leaf
    if expected.shape != value.shape or not torch.allclose(expected, value, atol=1e-4):
        return SequenceProblem(
            len(steps) - 1,
            f"the sequence computes a {_shape(value)} tensor that is not the model's output "
            f"({_shape(expected)}{_difference(expected, value)})",
            "The steps must do exactly what the model's forward does: add the functional steps "
            "(flatten, reshape, call) its forward applies between these modules.",
        )
    return None


def _run_step(model: nn.Module, step: Step, value: Any) -> Any:
    if step.kind == "module":
        return _module(model, step.arg)(value)
    if step.kind == "flatten":
        return torch.flatten(value, step.arg)
    if step.kind == "reshape":
        return value.reshape(*step.arg)
    return _function(step.arg)(value)


def _failed(
    model: nn.Module, steps: Sequence[Step], index: int, value: Any, exc: Exception
) -> SequenceProblem:
    step = steps[index]
    if isinstance(exc, SplitTracerError):  # no such module or function
        return SequenceProblem(index, exc.message, exc.hint or "")
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    what = (
        f"module '{step.arg}' ({type(_module(model, step.arg)).__name__})"
        if step.kind == "module"
        else step.label
    )
    after = f"the output of '{steps[index - 1].label}'" if index else "the model's input"
    return SequenceProblem(
        index,
        f"step {index} of the sequence, {what}, fails on {after}, a {_shape(value)} tensor: {first}",
        "Add the step the model's forward applies before it, e.g. '- flatten: 1' between a "
        "pooling module and a Linear, or check the order of the modules.",
    )


def _module(model: nn.Module, path: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError as exc:
        names = [name for name, _m in model.named_children()]
        raise CaptureError(
            f"the model has no module '{path}'",
            hint=f"Its top-level modules are: {', '.join(names)}.",
        ) from exc


def _function(name: str) -> Callable[[Any], Any]:
    module_name, _sep, attr = name.partition(":")
    fn = import_object(module_name, attr)
    if not callable(fn):
        raise CaptureError(f"'{name}' in the sequence is not callable")
    return fn


def _difference(expected: torch.Tensor, value: torch.Tensor) -> str:
    if expected.shape != value.shape:
        return _shape(expected)
    return f"{_shape(expected)}, other values: max |diff| {float((expected - value).abs().max()):.3g}"


def _shape(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return "×".join(map(str, value.shape)) or "scalar"
    return type(value).__name__
