"""Group graph nodes into layers and find the tensors live across each cut.

A *layer* is a maximal run of consecutive nodes (in execution order) that
belong to the same module at the chosen granularity:

``leaf`` (default)
    every leaf-module call is a layer (AlexNet: 21 layers).
``block``
    descend from the model through plain containers (``nn.Sequential``,
    ``nn.ModuleList``, ``nn.ModuleDict``); the first module that is not a
    container is a layer (ResNet's residual blocks, YOLO's ``model.N``).
``depth=N``
    modules at depth N of the dotted path (``layer1.0`` is depth 2).

Nodes run by a non-leaf module's own code (``torch.flatten`` in AlexNet's
``forward``, the residual ``+`` in a ResNet block) are glue: they join the
layer before them, or the first layer when nothing precedes them. Split
point ``k`` is the cut after layer ``k``; split 0 sends the model's input and
split ``L`` sends its output.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from torch import fx, nn

from ..errors import SplitError
from .capture import node_owner

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class Granularity:
    """How coarse layers are: ``leaf``, ``block`` or a module-path ``depth``."""

    kind: str = "leaf"
    depth: int = 0

    @classmethod
    def parse(cls, text: str) -> Granularity:
        """Parse ``leaf``, ``block`` or ``depth=N`` (also plain ``N``)."""
        value = text.strip().lower().removeprefix("depth=")
        if value in ("leaf", "block"):
            return cls(value)
        if value.isdigit() and int(value) > 0:
            return cls("depth", int(value))
        raise SplitError(
            f"granularity '{text}' is not one of leaf, block or depth=N",
            hint="Use --granularity leaf (every leaf module), block (residual blocks, "
            "YOLO's model.N) or depth=2 (modules two levels down).",
        )


@dataclass(frozen=True)
class LayerGraph:
    """Compute nodes in order, the layer of each, and the live set at every cut."""

    nodes: tuple[fx.Node, ...]
    layer_of: Mapping[fx.Node, int]
    names: tuple[str, ...]  # names[i - 1] is layer i's name
    owners: tuple[str, ...]  # module path that owns each layer
    live: tuple[tuple[fx.Node, ...], ...]  # live[k]: values crossing the cut after layer k
    inputs: tuple[fx.Node, ...]
    output: fx.Node

    @property
    def count(self) -> int:
        """Number of layers L (there are L + 1 split points)."""
        return len(self.names)


def build_layer_graph(
    gm: fx.GraphModule,
    model: nn.Module,
    granularity: Granularity = Granularity(),
    groups: Mapping[str, Sequence[str]] | None = None,
) -> LayerGraph:
    """Assign every compute node of ``gm`` to a layer and compute live sets."""
    inputs = tuple(n for n in gm.graph.nodes if n.op == "placeholder")
    output = next(n for n in gm.graph.nodes if n.op == "output")
    nodes = tuple(n for n in gm.graph.nodes if n.op in ("call_function", "call_method", "call_module"))
    keys = _attach_glue([_node_key(n, model, granularity, groups) for n in nodes])
    layer_of: dict[fx.Node, int] = {n: 0 for n in inputs}
    names: list[str] = []
    previous: str | None = None
    for node, key in zip(nodes, keys):
        if key != previous:
            names.append(key)
            previous = key
        layer_of[node] = len(names)
    live = _live_sets(inputs, nodes, layer_of, output, len(names))
    return LayerGraph(nodes, layer_of, _unique(names), tuple(names), live, inputs, output)


def _node_key(
    node: fx.Node, model: nn.Module, granularity: Granularity, groups: Mapping[str, Sequence[str]] | None
) -> str | None:
    """The layer a node belongs to; a module called as one opaque node is always a layer of its own."""
    key = group_key(node_owner(node), model, granularity, groups)
    return str(node.target) if key is None and node.op == "call_module" else key


def group_key(
    owner: str,
    model: nn.Module,
    granularity: Granularity,
    groups: Mapping[str, Sequence[str]] | None,
) -> str | None:
    """The layer a module path belongs to at ``granularity`` (None: glue of the layer before)."""
    for name, prefixes in (groups or {}).items():
        if any(owner == p or owner.startswith(p + ".") for p in prefixes):
            return name
    if not owner:
        return None
    module = _submodule(model, owner)
    if granularity.kind == "block":
        return _block_of(model, owner)
    if granularity.kind == "depth":
        parts = owner.split(".")
        if len(parts) >= granularity.depth:
            return ".".join(parts[: granularity.depth])
    return owner if module is None or not any(True for _ in module.children()) else None


def _block_of(model: nn.Module, owner: str) -> str | None:
    module: nn.Module = model
    path: list[str] = []
    for part in owner.split("."):
        if module is not model and not isinstance(module, CONTAINERS):
            break
        child = module._modules.get(part)
        if child is None:
            break
        module = child
        path.append(part)
    if not path or isinstance(module, CONTAINERS):
        return None
    return ".".join(path)


def _submodule(model: nn.Module, path: str) -> nn.Module | None:
    try:
        return model.get_submodule(path)
    except AttributeError:
        return None


def _attach_glue(keys: list[str | None]) -> list[str]:
    """Give each glue node (key None) the layer before it, or the first layer."""
    first = next((k for k in keys if k is not None), "(model)")
    result: list[str] = []
    for key in keys:
        result.append(key if key is not None else (result[-1] if result else first))
    return result


def crossing(graph: LayerGraph, first: AbstractSet[int]) -> tuple[fx.Node, ...]:
    """Values a placement sends: made by a layer in ``first`` (or the input), used outside it.

    The model's output counts as a user outside ``first``. This is the live-set
    rule of the prefix cuts: with ``first`` = layers ``1..k`` it is ``live[k]``,
    in the same order (execution order).
    """
    uses = _uses(graph.inputs, graph.nodes, graph.layer_of, graph.output, graph.count)
    return _crossing(uses, graph.layer_of, lambda layer: layer == 0 or layer in first)


def _live_sets(
    inputs: tuple[fx.Node, ...],
    nodes: tuple[fx.Node, ...],
    layer_of: Mapping[fx.Node, int],
    output: fx.Node,
    count: int,
) -> tuple[tuple[fx.Node, ...], ...]:
    """Values produced at or before each cut and used after it (the output counts as L+1)."""
    uses = _uses(inputs, nodes, layer_of, output, count)
    on_first = (functools.partial(operator.ge, k) for k in range(count + 1))  # layer <= k
    return tuple(_crossing(uses, layer_of, first) for first in on_first)


def _uses(
    inputs: tuple[fx.Node, ...],
    nodes: tuple[fx.Node, ...],
    layer_of: Mapping[fx.Node, int],
    output: fx.Node,
    count: int,
) -> dict[fx.Node, frozenset[int]]:
    """The layers that read each value, in execution order (the output is layer L+1)."""
    uses = {}
    for value in (*inputs, *nodes):
        layers = frozenset(count + 1 if u is output else layer_of.get(u, 0) for u in value.users)
        if layers:
            uses[value] = layers
    return uses


def _crossing(
    uses: Mapping[fx.Node, frozenset[int]], layer_of: Mapping[fx.Node, int], on_first: Callable[[int], bool]
) -> tuple[fx.Node, ...]:
    """Values made on the first side and read by some layer on the second."""
    return tuple(
        v for v, used in uses.items() if on_first(layer_of[v]) and not all(on_first(u) for u in used)
    )


def _unique(names: list[str]) -> tuple[str, ...]:
    """Repeated calls of one module (ResNet's shared ReLU) get #2, #3, ..."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return tuple(result)
