"""The captured graph of a :class:`SplitModel`, as the planner needs it.

:func:`model_graph` runs the model's graph once and returns plain data:
every layer with its units' features (for the latency regression) and
every tensor value with the layer that makes it, the layers that use it and
its size (for the DAG min-cut). It reads the split engine only through
:meth:`SplitModel.graph_values`, so the rest of ``splittracer.plan`` works
on frozen records that a test can also write by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import fx, nn

from ..split.capture import node_owner
from ..split.layers import LayerGraph
from ..split.model import GraphValues, SplitModel, TensorInfo
from .features import UnitFeatures, kind_of_module, kind_of_ops, op_name

__all__ = ["LayerInfo", "ModelGraph", "ValueInfo", "granularity_name", "model_graph"]


@dataclass(frozen=True)
class LayerInfo:
    """One layer (1-based, as in the split engine) and the units it is made of."""

    index: int
    name: str
    type: str
    units: tuple[UnitFeatures, ...]


@dataclass(frozen=True)
class ValueInfo:
    """A value made by layer ``layer`` (0: the model's input) and used by later layers.

    ``consumers`` are the other layers that read it; ``L + 1`` stands for
    the model's output. ``bytes`` is None for a value that is not a tensor
    (it cannot cross a device boundary).
    """

    name: str
    layer: int
    consumers: tuple[int, ...]
    bytes: int | None


@dataclass(frozen=True)
class ModelGraph:
    """Layers, the values flowing between them, and what crosses each chain cut.

    ``split_bytes[k]`` is what the cut after layer ``k`` sends;
    ``allowed[k]`` says whether that cut can be used.
    """

    layers: tuple[LayerInfo, ...]
    values: tuple[ValueInfo, ...]
    split_bytes: tuple[int, ...]
    allowed: tuple[bool, ...]

    @property
    def num_layers(self) -> int:
        """L: split points are 0..L."""
        return len(self.layers)

    @property
    def output_bytes(self) -> int:
        """Bytes of the model's output (what the last device sends back)."""
        return self.split_bytes[-1]


def model_graph(sm: SplitModel) -> ModelGraph:
    """Run ``sm``'s graph on its example input and describe layers and values."""
    probe = sm.graph_values()
    layers = tuple(
        LayerInfo(layer.index, layer.name, layer.type, _units(sm.model, probe, layer.index))
        for layer in sm.layers
    )
    return ModelGraph(
        layers=layers,
        values=_values(probe.layers, probe.tensors),
        split_bytes=tuple(p.bytes for p in sm.points),
        allowed=tuple(p.allowed for p in sm.points),
    )


def granularity_name(sm: SplitModel) -> str:
    """``leaf``, ``block`` or ``depth=N``: the granularity as profiles record it."""
    g = sm.granularity
    return g.kind if g.kind != "depth" else f"depth={g.depth}"


def _values(graph: LayerGraph, info: Mapping[fx.Node, TensorInfo]) -> tuple[ValueInfo, ...]:
    out_layer = graph.count + 1
    values = []
    for node in (*graph.inputs, *graph.nodes):
        own = graph.layer_of[node]
        consumers = sorted(
            {out_layer if u is graph.output else graph.layer_of.get(u, own) for u in node.users} - {own}
        )
        if consumers:
            size = info[node].bytes if node in info else None
            values.append(ValueInfo(node.name, own, tuple(consumers), size))
    return tuple(values)


def _units(model: nn.Module, probe: GraphValues, index: int) -> tuple[UnitFeatures, ...]:
    graph = probe.layers
    nodes = [n for n in graph.nodes if graph.layer_of[n] == index]
    runs: list[list[fx.Node]] = []
    for node in nodes:
        if runs and node_owner(runs[-1][-1]) == node_owner(node):
            runs[-1].append(node)
        else:
            runs.append([node])
    return tuple(_unit(model, run, probe) for run in runs)


def _unit(model: nn.Module, nodes: Sequence[fx.Node], probe: GraphValues) -> UnitFeatures:
    gm = probe.graph_module
    members = set(nodes)
    module = _leaf(model, gm, nodes[0])
    ops = [_node_op(gm, n) for n in nodes]
    kind = (kind_of_module(module) if module is not None else None) or kind_of_ops(ops)
    inputs = {a for n in nodes for a in n.all_input_nodes if a not in members}
    outputs = [n for n in nodes if any(u not in members for u in n.users)]
    return UnitFeatures(
        kind=kind,
        op=type(module).__name__ if module is not None else "+".join(dict.fromkeys(ops)),
        macs=sum(probe.macs.get(n) or 0 for n in nodes),
        in_bytes=sum(_bytes(probe, a) for a in inputs if a.op != "get_attr"),
        out_bytes=sum(_bytes(probe, n) for n in outputs),
        param_bytes=_param_bytes(module, inputs, probe),
        **_conv_shape(module),
    )


def _leaf(model: nn.Module, gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The leaf module that ran ``node``, if any (glue belongs to none)."""
    try:
        if node.op == "call_module":
            module = gm.get_submodule(str(node.target))
        else:
            module = model.get_submodule(node_owner(node))
    except AttributeError:
        return None
    return None if module is model or any(True for _ in module.children()) else module


def _node_op(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return type(gm.get_submodule(str(node.target))).__name__.lower()
    return op_name(node.target)


def _bytes(probe: GraphValues, node: fx.Node) -> int:
    info = probe.tensors.get(node)
    return info.bytes if info else 0


def _param_bytes(module: nn.Module | None, inputs: set[fx.Node], probe: GraphValues) -> int:
    attrs = sum(_bytes(probe, a) for a in inputs if a.op == "get_attr")
    if attrs or module is None:
        return attrs
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _conv_shape(module: nn.Module | None) -> dict[str, Any]:
    if not isinstance(module, nn.modules.conv._ConvNd):
        return {}
    return {
        "kernel": tuple(module.kernel_size),
        "stride": tuple(module.stride),
        "in_channels": module.in_channels,
        "out_channels": module.out_channels,
        "groups": module.groups,
    }
