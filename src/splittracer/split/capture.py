"""Turn a model into an FX graph whose nodes know which module they belong to.

Four methods, tried in order:

1. ``torch.export`` — captures nearly every model, including data-dependent
   Python such as YOLO's routing; nodes carry ``nn_module_stack``.
2. ``torch.fx.symbolic_trace`` — for models ``torch.export`` rejects; leaf
   modules stay ``call_module`` nodes.
3. forward hooks on the model's top-level modules — a last resort for models
   neither can trace: a real forward records the order in which the
   top-level modules run, and the capture is accepted only when they form a
   chain (each one's input is the previous one's output, the model's output
   is the last one's output).
4. eager execution (:mod:`.eager`) — for everything else: the model's own
   forward runs with its leaf (or block) modules as layers; a head stops
   after layer k and the tail resumes with the banked outputs. It yields no
   graph, so only cuts (not arbitrary placements) are possible.

Whatever traced, the result is one ``torch.fx.GraphModule`` plus a function
giving each node's *owner* (the dotted path of the module that ran it), so
everything downstream treats the three the same way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from ..errors import CaptureError
from .eager import EagerCapture, capture_eager, hooked_paths
from .sequence import Step, chain_graph

METHODS = ("export", "fx", "hooks", "eager")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """One capture method tried, and why it failed (empty when it worked)."""

    method: str
    error: str = ""


@dataclass
class Captured:
    """A captured graph: which method worked and why the earlier ones did not."""

    graph_module: fx.GraphModule | None
    method: str
    attempts: list[Attempt] = field(default_factory=list)
    out_spec: Any = None
    eager: EagerCapture | None = None
    dynamic_batch: bool = False  # the graph runs any batch size, not only the example's


def capture(
    model: nn.Module,
    example: torch.Tensor,
    *,
    methods: Sequence[str] = METHODS,
    sequence: Sequence[Step] | None = None,
    override_hint: str = "",
    layer_key: Callable[[str], str | None] = lambda path: path,
    dynamic_batch: bool = False,
) -> Captured:
    """Capture ``model`` on ``example`` with the first method that works.

    ``dynamic_batch`` asks for a graph that runs any batch size (export with
    a symbolic batch dimension; fx, hooks and sequence graphs record no
    shapes); when export cannot keep the batch free, the attempt says why
    and a fixed-batch export is tried next. ``layer_key`` maps a leaf
    module's path to its layer's (the granularity), for eager capture.
    ``sequence`` (module calls and functional steps in execution order)
    replaces automatic capture with an explicit chain, for models no method
    can trace.
    """
    if sequence is not None:
        gm = chain_graph(model, sequence)
        return Captured(gm, "sequence", dynamic_batch=dynamic_batch)
    attempts: list[Attempt] = []
    for method in methods:
        if method == "eager":
            try:
                eager = capture_eager(model, example, hooked_paths(model, layer_key))
            except Exception as exc:
                attempts.append(Attempt(method, _describe_failure(exc)))
                continue
            return Captured(None, method, [*attempts, Attempt(method)], eager=eager)
        try:
            batched = dynamic_batch
            if dynamic_batch and method == "export":
                gm, out_spec, batched = _export_batched(model, example, attempts)
            else:
                gm, out_spec = _CAPTURERS[method](model, example)
        except Exception as exc:
            attempts.append(Attempt(method, _describe_failure(exc)))
            continue
        return Captured(gm, method, [*attempts, Attempt(method)], out_spec, dynamic_batch=batched)
    lines = "\n".join(f"  {a.method}: {a.error}" for a in attempts)
    raise CaptureError(
        f"no capture method could split {type(model).__name__}{_construct(attempts)}:\n{lines}",
        hint="Write an override file and pass it with --override (see 'Split overrides' in the README): "
        "an explicit `sequence:` of modules with the functional steps between them (`- flatten: 1`, "
        "`- call: pkg.mod:fn`), or `capture:` listing `eager` once the forward's work is done by "
        "sub-modules it calls (each becomes a layer; `granularity:` leaf or block)." + override_hint,
    )


def _construct(attempts: list[Attempt]) -> str:
    """The construct that stopped the tracers, and where: the first line a user wrote that failed."""
    for attempt in attempts:
        where = attempt.error.partition(" (at ")[2].rstrip(")")
        if not where:
            continue
        error = attempt.error
        what = (
            "branches on a tensor's value"
            if "data-dependent" in error or "control flow" in error
            else "iterates over a tensor"
            if "iterated" in error
            else "has code no tracer follows"
        )
        return f": its forward {what} ({where})"
    return ""


@contextlib.contextmanager
def muffled() -> Iterator[None]:
    """Keep what torch prints while it tries to capture a model off the terminal.

    A failed ``torch.export`` prints graph dumps to stderr, logs through its own
    handlers and raises warnings before SplitTracer can say what went wrong; a
    user needs the one paragraph that follows, not those. What was printed is
    kept in this module's log at DEBUG level (``splittracer --debug`` shows it).
    Python-level only: it is meant for a command's foreground work, not for a
    participant whose other threads write while it captures.
    """
    printed = io.StringIO()
    torch_log = logging.getLogger("torch")
    was_disabled, torch_log.disabled = torch_log.disabled, True
    caught: list[warnings.WarningMessage] = []
    try:
        with (
            contextlib.redirect_stdout(printed),
            contextlib.redirect_stderr(printed),
            warnings.catch_warnings(record=True) as caught,
        ):
            warnings.simplefilter("always")
            yield
    finally:
        torch_log.disabled = was_disabled
        for warning in caught:
            log.debug("warning during capture: %s", warning.message)
        if printed.getvalue():
            log.debug("printed during capture:\n%s", printed.getvalue())


def node_owner(node: fx.Node) -> str:
    """Dotted path of the innermost module that ran ``node`` ('' for the model itself)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    path, _type = list(stack.values())[-1]
    return _clean_path(str(path))


def _capture_export(model: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, Any]:
    with torch.no_grad():
        program = torch.export.export(model, (example,))
    gm = program.module()
    _drop_guards(gm)
    return gm, program.call_spec.out_spec


def _export_batched(
    model: nn.Module, example: torch.Tensor, attempts: list[Attempt]
) -> tuple[fx.GraphModule, Any, bool]:
    """Export with dim 0 symbolic; a model that fixes its batch gets a fixed-batch export instead.

    The example is doubled along the batch: export treats a size of 1 as a
    constant, so a batch-1 example could never yield a free batch dimension.
    """
    batch = torch.export.Dim("batch", min=1)
    doubled = torch.cat([example, example]) if example.shape[0] == 1 else example
    try:
        with torch.no_grad():
            program = torch.export.export(model, (doubled,), dynamic_shapes=({0: batch},))
    except Exception as exc:
        attempts.append(Attempt("export", "dynamic batch: " + _describe_failure(exc)))
        return (*_capture_export(model, example), False)
    gm = program.module()
    _drop_guards(gm)
    return gm, program.call_spec.out_spec, True


def _capture_fx(model: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, Any]:
    gm = fx.symbolic_trace(model)
    with torch.no_grad():
        gm(example)  # a graph that traces but cannot run is no capture
    return gm, None


def _capture_hooks(model: nn.Module, example: torch.Tensor) -> tuple[fx.GraphModule, Any]:
    order = _record_chain(model, example)
    return chain_graph(model, [Step("module", path) for path in order]), None


def _record_chain(model: nn.Module, example: torch.Tensor) -> list[str]:
    """Run ``model`` once and return its top-level modules if they form a chain."""
    calls: list[tuple[str, Any, Any]] = []
    handles = [
        child.register_forward_hook(lambda _m, a, o, n=name: calls.append((n, a, o)))
        for name, child in model.named_children()
    ]
    try:
        with torch.no_grad():
            output = model(example)
    finally:
        for handle in handles:
            handle.remove()
    if not calls:
        raise RuntimeError("the model has no child modules to hook")
    previous: Any = example
    for name, args, out in calls:
        if len(args) != 1 or args[0] is not previous:
            raise RuntimeError(
                f"module '{name}' does not take the previous module's output as its only "
                "input: the top-level modules are not a chain"
            )
        previous = out
    if output is not previous:
        raise RuntimeError("the model's output is not the last top-level module's output")
    return [name for name, _a, _o in calls]


def _drop_guards(gm: fx.GraphModule) -> None:
    """Remove export's input-guard call: each part has different inputs."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and str(node.target).startswith("_guards"):
            gm.graph.erase_node(node)
    gm.recompile()


def _clean_path(path: str) -> str:
    # Older exports spell paths as L['self'].features[0]; make them features.0.
    if not path.startswith("L["):
        return path
    path = path.replace("L['self']", "").replace("[", ".").replace("]", "").replace("'", "")
    return path.strip(".")


def _describe_failure(exc: BaseException) -> str:
    """First line of the error, and the user's line of code that caused it."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    frame = _user_frame(exc)
    return f"{type(exc).__name__}: {first}" + (f" (at {frame})" if frame else "")


def _user_frame(exc: BaseException) -> str:
    """``file:line in Class.method: code`` of the last frame of the user's code."""
    frames = [
        (frame, summary)
        for (frame, _line), summary in zip(
            traceback.walk_tb(exc.__traceback__), traceback.extract_tb(exc.__traceback__)
        )
        if "/torch/" not in summary.filename and "splittracer" not in summary.filename
    ]
    if not frames:
        return ""
    frame, last = frames[-1]
    owner = frame.f_locals.get("self")
    name = f"{type(owner).__name__}.{last.name}" if isinstance(owner, nn.Module) else last.name
    code = f": {last.line.strip()}" if last.line else ""
    return f"{last.filename}:{last.lineno} in {name}{code}"


_CAPTURERS = {"export": _capture_export, "fx": _capture_fx, "hooks": _capture_hooks}
