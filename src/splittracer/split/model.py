"""The split engine's public face: :class:`SplitModel`."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import fx, nn

from ..config import did_you_mean
from ..errors import ConfigError, ModelError, SplitError
from .capture import METHODS, Attempt, Captured, capture
from .eager import EagerCapture
from .layers import Granularity, LayerGraph, build_layer_graph, crossing, group_key
from .macs import node_macs
from .override import SplitOverride, load_override
from .parts import Part, build_layer_part, build_part, compact
from .placement import PlacementSpec, check_closed, closure, layer_set
from .sequence import Step, check_chain
from .structure import tensors_in


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape, dtype and size of one tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    bytes: int


@dataclass(frozen=True)
class Layer:
    """One layer: a module call (or group of them) in execution order, 1-based."""

    index: int
    name: str
    type: str
    output: TensorInfo | None
    params: int
    macs: int | None


@dataclass(frozen=True)
class SplitPoint:
    """The cut after layer ``index`` (0 = before the first layer) and what crosses it."""

    index: int
    after: str
    tensors: tuple[TensorInfo, ...]
    allowed: bool = True
    reason: str = ""

    @property
    def bytes(self) -> int:
        """Bytes of every tensor crossing the cut."""
        return sum(t.bytes for t in self.tensors)


@dataclass(frozen=True)
class Placement:
    """The layers each of two devices runs and the tensors crossing between them.

    ``first`` is closed under data dependencies (its layers read only values
    it makes, the input or parameters); ``second`` is the rest. ``tensors``
    is every value the first device (or the input) makes and the second
    reads, in execution order.
    """

    first: tuple[int, ...]
    second: tuple[int, ...]
    tensors: tuple[TensorInfo, ...]

    @property
    def bytes(self) -> int:
        """Bytes of every tensor crossing."""
        return sum(t.bytes for t in self.tensors)

    @property
    def split(self) -> int | None:
        """``k`` when the first device runs exactly layers ``1..k`` (an ordinary split), else None."""
        return len(self.first) if self.first == tuple(range(1, len(self.first) + 1)) else None

    @property
    def label(self) -> str:
        """The first device's layers as ranges, e.g. ``1-5,7``: a placement the engine reads back."""
        return compact(self.first)


@dataclass(frozen=True)
class GraphValues:
    """The captured graph after one run on the example input: what analysis tools read.

    ``graph_module`` is the captured ``torch.fx`` graph, ``layers`` its nodes
    grouped into layers (``layers.layer_of[node]`` is a node's 1-based layer,
    0 for the inputs), ``tensors`` the shape, dtype and bytes of every node
    that produced a tensor, and ``macs`` each call's multiply-accumulates
    (None where they are unknown). The nodes are the split engine's own:
    read them, do not edit the graph.
    """

    graph_module: fx.GraphModule
    layers: LayerGraph
    tensors: Mapping[fx.Node, TensorInfo]
    macs: Mapping[fx.Node, int | None]


class SplitModel:
    """A model captured as a graph, cut into layers, ready to split anywhere.

    >>> sm = SplitModel(model, torch.randn(1, 3, 224, 224))
    >>> head, tail = sm.cut(5)
    >>> out = tail(*head(x))            # same as model(x)
    """

    def __init__(
        self,
        model: nn.Module,
        example: torch.Tensor,
        *,
        granularity: str | Granularity = "leaf",
        override: SplitOverride | str | Path | None = None,
    ) -> None:
        self.model = model.eval()
        self.example = example
        override_file = None
        if isinstance(override, (str, Path)):
            override_file = str(override)
            override, located = load_override(override)
        self._check_runs(example)
        ov = override or SplitOverride()
        if isinstance(granularity, str):
            granularity = Granularity.parse(ov.granularity or granularity)
        self.granularity = granularity
        steps = ov.steps()
        if steps is not None:
            _check_sequence(model, steps, example, override_file, locals().get("located"))
        key = functools.partial(group_key, model=model, granularity=granularity, groups=ov.groups)
        self.captured: Captured = capture(
            model,
            example,
            methods=ov.capture or METHODS,
            sequence=steps,
            layer_key=key,
            dynamic_batch=ov.batch == "dynamic",
        )
        self._layer_graph: LayerGraph | None = None
        self._tensors: dict[fx.Node, TensorInfo] = {}
        if self.captured.eager is not None:
            self.layers, self.points = _describe_eager(self.captured.eager)
        else:
            self._layer_graph = build_layer_graph(self._gm, model, granularity, ov.groups)
            probe = _Probe(self._gm)
            with torch.no_grad():
                probe.run(example)
            self._tensors = dict(probe.info)
            self.layers, self.points = _describe(self._gm, model, self._graph, probe)
        if ov.splits is not None:
            allowed = self._resolve_splits(ov.splits, override_file, locals().get("located"))
            self.points = [_restrict(p, allowed) for p in self.points]

    @property
    def device(self) -> torch.device:
        """Where the model computes: the device of the example it was captured on."""
        return self.example.device

    @property
    def method(self) -> str:
        """The capture method that worked: export, fx, hooks or sequence."""
        return self.captured.method

    @property
    def dynamic_batch(self) -> bool:
        """Whether the parts run any batch size (the override's ``batch: dynamic``, where capture allows)."""
        return self.captured.dynamic_batch

    @property
    def attempts(self) -> list[Attempt]:
        """Every capture method tried, with why it failed."""
        return self.captured.attempts

    @property
    def num_layers(self) -> int:
        """L: split points are 0..L."""
        return len(self.layers)

    @property
    def _gm(self) -> fx.GraphModule:
        if self.captured.graph_module is None:
            raise self._no_graph()
        return self.captured.graph_module

    @property
    def _graph(self) -> LayerGraph:
        if self._layer_graph is None:
            raise self._no_graph()
        return self._layer_graph

    def _no_graph(self) -> SplitError:
        return SplitError(
            f"{type(self.model).__name__} was captured eagerly (no tracer could capture it), so it has "
            "no graph: it can be cut between layers (splits, chains), not placed layer by layer",
            hint="Use a split point k, or give the model a traceable forward.",
        )

    def graph_values(self) -> GraphValues:
        """Run the captured graph once on the example input and describe every value.

        The planner uses it to learn which layer makes each tensor, which
        layers read it, how big it is and what each operation costs.
        """
        probe = _Probe(self._gm)
        with torch.no_grad():
            probe.run(self.example)
        return GraphValues(self._gm, self._graph, dict(probe.info), dict(probe.macs))

    def part(self, start: int, end: int, *, final: bool | None = None) -> Part:
        """Layers ``start+1..end`` as a module taking cut ``start``'s tensors.

        It returns the tensors live across cut ``end`` as a tuple, or the
        model's output when it is ``final`` (by default: when ``end`` is the
        last layer).
        """
        self._check_index(start)
        self._check_index(end)
        if start > end:
            raise SplitError(f"part start {start} is after its end {end}")
        if self.captured.eager is not None:
            return self.captured.eager.part(
                start, end, final=end == self.num_layers if final is None else final
            )
        return build_part(self._gm, self._graph, start, end, self.captured.out_spec, final=final)

    def input_mismatch(self, start: int, tensors: Sequence[torch.Tensor]) -> str | None:
        """How ``tensors`` differ from what crossed cut ``start`` when the model was captured
        (count, then shapes); None when they match or nothing is known of the cut.

        For messages after a part failed: a model traced shape-agnostic may run
        other shapes, so a difference alone is no error.
        """
        if not 0 <= start < len(self.points) or not self.points[start].tensors:
            return None
        expected = self.points[start].tensors
        given = [tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__ for t in tensors]
        wanted = [t.shape for t in expected]
        if given == wanted:
            return None

        def listed(shapes: Sequence[object]) -> str:
            return ", ".join(str(list(s)) if isinstance(s, tuple) else str(s) for s in shapes)

        return (
            f"cut {start} of this model carries {len(wanted)} tensor{'s' * (len(wanted) != 1)} "
            f"({listed(wanted)}); it was given {len(given)} ({listed(given)})"
        )

    def cut(self, k: int) -> tuple[Part, Part]:
        """Head (input .. layer k, returning a tuple) and tail (layer k+1 .. output)."""
        self.check_split(k)
        return self.part(0, k, final=False), self.part(k, self.num_layers)

    def chain(self, cuts: Sequence[int]) -> list[Part]:
        """Parts between increasing cuts k1 < k2 < ...: one per device of a chain."""
        for k in cuts:
            self.check_split(k)
        bounds = [0, *cuts, self.num_layers]
        if any(a >= b for a, b in itertools.pairwise(bounds)):
            raise SplitError(f"cuts {list(cuts)} must be strictly increasing")
        last = len(bounds) - 2
        return [self.part(a, b, final=i == last) for i, (a, b) in enumerate(itertools.pairwise(bounds))]

    def placement(self, spec: PlacementSpec) -> Placement:
        """The placement ``spec`` names (indices, ranges, names: see :mod:`.placement`), checked.

        Raises SplitError naming the offending layer when a layer is unknown,
        when the first device's layers read a value made on the second, or
        when a value that is not a tensor would cross.
        """
        first = layer_set(spec, self._graph.names)
        check_closed(self._graph, first)
        sent = crossing(self._graph, first)
        odd = [v.name for v in sent if v not in self._tensors]
        if odd:
            raise SplitError(
                f"placement {compact(first)} is not allowed: non-tensor values cross it ({', '.join(odd)})"
            )
        second = tuple(i for i in range(1, self.num_layers + 1) if i not in first)
        return Placement(tuple(sorted(first)), second, tuple(self._tensors[v] for v in sent))

    def close(self, spec: PlacementSpec) -> Placement:
        """The least valid placement holding the layers ``spec`` names: they and all they read from."""
        return self.placement(sorted(closure(self._graph, layer_set(spec, self._graph.names))))

    def place(self, spec: PlacementSpec | Placement) -> tuple[Part, Part]:
        """Head (the first device's layers, returning what crosses) and tail (the rest: the output).

        Built from the captured graph as :meth:`cut` builds its parts: the
        placement of layers ``1..k`` gives the same head and tail as ``cut(k)``.
        """
        placement = self.placement(list(spec.first) if isinstance(spec, Placement) else spec)
        graph, first = self._graph, set(placement.first)
        sent = crossing(graph, first)
        top = max(placement.first, default=0)
        head = build_layer_part(self._gm, graph, first, graph.live[0], sent, final=False, span=(0, top))
        bottom = min(placement.second, default=self.num_layers + 1) - 1
        tail = build_layer_part(
            self._gm,
            graph,
            placement.second,
            sent,
            graph.live[-1],
            self.captured.out_spec,
            final=True,
            span=(bottom, self.num_layers),
        )
        return head, tail

    def place_chain(self, specs: Sequence[PlacementSpec]) -> list[Part]:
        """Parts for a chain of ``len(specs) + 1`` devices: ``specs`` name the layers of every
        device but the last, in chain order; the last runs the rest.

        Every device's layers together with those before it must be closed
        under data dependencies, so each device sends on what it made and all
        that later devices still need of what it received. One spec is
        :meth:`place`. SplitError naming the offending layer otherwise.
        """
        graph, names = self._graph, self._graph.names
        held: set[int] = set()
        takes, parts = graph.live[0], []
        for device, spec in enumerate(specs, start=1):
            own = layer_set(spec, names)
            again = sorted(own & held)
            if again:
                raise SplitError(
                    f"layer {again[0]} ({names[again[0] - 1]}) is placed on device {device} and before it"
                )
            held |= own
            try:
                check_closed(graph, held)
            except SplitError as exc:
                raise SplitError(f"devices 1..{device} together: {exc.message}", hint=exc.hint) from None
            sends = crossing(graph, held)
            odd = [v.name for v in sends if v not in self._tensors]
            if odd:
                raise SplitError(f"device {device} would send values that are not tensors ({', '.join(odd)})")
            span = (min(own, default=1) - 1, max(own, default=0))
            parts.append(build_layer_part(self._gm, graph, own, takes, sends, final=False, span=span))
            takes = sends
        rest = [i for i in range(1, self.num_layers + 1) if i not in held]
        span = (min(rest, default=self.num_layers + 1) - 1, self.num_layers)
        out = self.captured.out_spec
        parts.append(
            build_layer_part(self._gm, graph, rest, takes, graph.live[-1], out, final=True, span=span)
        )
        return parts

    def run_placement(self, spec: PlacementSpec | Placement, x: torch.Tensor) -> Any:
        """Run head then tail of a placement on ``x``."""
        head, tail = self.place(spec)
        with torch.no_grad():
            return tail(*head(x))

    def check_split(self, k: int) -> SplitPoint:
        """The split point ``k``, or a SplitError saying why it cannot be used."""
        self._check_index(k)
        point = self.points[k]
        if not point.allowed:
            raise SplitError(f"split {k} (after {point.after}) is not allowed: {point.reason}")
        return point

    def run_split(self, k: int, x: torch.Tensor) -> Any:
        """Run head then tail at split ``k`` on ``x``."""
        head, tail = self.cut(k)
        with torch.no_grad():
            return tail(*head(x))

    def _check_index(self, k: int) -> None:
        if not 0 <= k <= self.num_layers:
            raise SplitError(
                f"split index {k} is out of range: this model has {self.num_layers} layers, "
                f"so split points are 0..{self.num_layers}",
                hint="Run 'splittracer model inspect' to see them.",
            )

    def _check_runs(self, example: torch.Tensor) -> None:
        try:
            with torch.no_grad():
                self.model(example)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelError(
                f"{type(self.model).__name__} fails on an input of shape {tuple(example.shape)}: {first}",
                hint="Give the input shape the model expects, e.g. --input-shape 1,3,224,224.",
            ) from exc

    def _resolve_splits(self, splits: list[int | str], file: str | None, located: Any) -> set[int]:
        names = {layer.name: layer.index for layer in self.layers}
        names["input"] = 0
        allowed = set()
        for i, item in enumerate(splits):
            line = located.line_of(("splits", i)) if located else None
            if isinstance(item, int):
                if not 0 <= item <= self.num_layers:
                    raise ConfigError(
                        f"split {item} is out of range 0..{self.num_layers}",
                        path=file,
                        line=line,
                        key=f"splits.{i}",
                    )
                allowed.add(item)
            elif item in names:
                allowed.add(names[item])
            else:
                raise ConfigError(
                    f"no layer named '{item}'",
                    path=file,
                    line=line,
                    key=f"splits.{i}",
                    hint=did_you_mean(item, names) or "Use 'splittracer model inspect' for names.",
                )
        return allowed


def _check_sequence(
    model: nn.Module, steps: list[Step], example: torch.Tensor, file: str | None, located: Any
) -> None:
    """A sequence that cannot run, or computes something else, is the override's mistake."""
    problem = check_chain(model, steps, example)
    if problem is not None:
        line = located.line_of(("sequence", problem.index)) if located else None
        key = f"sequence.{problem.index}"
        raise ConfigError(problem.message, path=file, line=line, key=key, hint=problem.hint)


def _describe_eager(cap: EagerCapture) -> tuple[list[Layer], list[SplitPoint]]:
    """Every layer and split point of an eager capture, from its one recorded run."""
    layers = []
    for index, path in enumerate(cap.paths, start=1):
        tensors = list(tensors_in(cap.values[index]))
        module = cap.model.get_submodule(path)
        output = _info(path, tensors[-1]) if tensors else None
        params = sum(p.numel() for p in module.parameters())
        layers.append(
            Layer(index, _unique_name(cap.paths, index), type(module).__name__, output, params, None)
        )
    points = []
    for k in range(cap.count + 1):
        infos = tuple(_info(name, t) for name, t in cap.tensors_at(k))
        points.append(SplitPoint(k, "input" if k == 0 else layers[k - 1].name, infos))
    return layers, points


def _unique_name(paths: tuple[str, ...], index: int) -> str:
    """A module called again (a shared activation) is ``path#2``, ``path#3``, ... as in traced layers."""
    seen = paths[:index].count(paths[index - 1])
    return paths[index - 1] if seen == 1 else f"{paths[index - 1]}#{seen}"


def _info(name: str, tensor: torch.Tensor) -> TensorInfo:
    dtype = str(tensor.dtype).removeprefix("torch.")
    return TensorInfo(name, tuple(tensor.shape), dtype, tensor.numel() * tensor.element_size())


def _restrict(point: SplitPoint, allowed: set[int]) -> SplitPoint:
    if point.index in allowed or not point.allowed:
        return point
    return SplitPoint(point.index, point.after, point.tensors, False, "not listed in the override")


def _describe(
    gm: fx.GraphModule, model: nn.Module, graph: LayerGraph, probe: _Probe
) -> tuple[list[Layer], list[SplitPoint]]:
    """Every layer and split point, from one run's shapes and MACs."""
    layers = []
    for index, (name, owner) in enumerate(zip(graph.names, graph.owners), start=1):
        nodes = [n for n in graph.nodes if graph.layer_of[n] == index]
        tensors = [probe.info[n] for n in nodes if n in probe.info]
        macs = [probe.macs.get(n) for n in nodes]
        layers.append(
            Layer(
                index,
                name,
                _type_name(model, owner),
                tensors[-1] if tensors else None,
                _param_count(gm, nodes),
                None if any(m is None for m in macs) else sum(m or 0 for m in macs),
            )
        )
    points = []
    for k, live in enumerate(graph.live):
        infos = tuple(probe.info[v] for v in live if v in probe.info)
        after = "input" if k == 0 else graph.names[k - 1]
        if len(infos) == len(live):
            points.append(SplitPoint(k, after, infos))
        else:
            bad = ", ".join(v.name for v in live if v not in probe.info)
            points.append(SplitPoint(k, after, infos, False, f"non-tensor values cross it ({bad})"))
    return layers, points


class _Probe(fx.Interpreter):
    """Records shape, dtype and bytes of every tensor value, and each node's MACs."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.graph_module = gm
        self.info: dict[fx.Node, TensorInfo] = {}
        self.macs: dict[fx.Node, int | None] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.info[n] = _info(n.name, result)
        if n.op in ("call_function", "call_method", "call_module"):
            args, _kwargs = self.fetch_args_kwargs_from_env(n)
            self.macs[n] = node_macs(n, self.graph_module, tuple(args), result)
        return result


def _type_name(model: nn.Module, owner: str) -> str:
    try:
        return type(model.get_submodule(owner)).__name__
    except AttributeError:
        return "group"


def _param_count(gm: fx.GraphModule, nodes: list[fx.Node]) -> int:
    seen: dict[int, int] = {}
    for node in nodes:
        if node.op == "call_module":
            for p in gm.get_submodule(str(node.target)).parameters():
                seen[id(p)] = p.numel()
        for arg in node.all_input_nodes:
            if arg.op == "get_attr":
                value = _fetch_attr(gm, str(arg.target))
                if isinstance(value, nn.Parameter):
                    seen[id(value)] = value.numel()
    return sum(seen.values())


def _fetch_attr(gm: fx.GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value
