"""Build runnable parts of a captured graph: layers ``start+1 .. end``.

A part takes the tensors live across cut ``start`` as positional arguments
and returns the tensors live across cut ``end`` as a tuple — or, when it
ends at the last layer, the model's own output structure. Parameters are
shared with the captured model, never copied.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

from .layers import LayerGraph


class Part(nn.Module):
    """Layers ``start + 1 .. end`` of a split model, as a module."""

    def __init__(
        self,
        graph_module: fx.GraphModule,
        start: int,
        end: int,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        out_spec: Any = None,
    ) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.start, self.end = start, end
        self.input_names, self.output_names = input_names, output_names
        self.out_spec = out_spec

    def forward(self, *tensors: torch.Tensor) -> Any:
        """Run the part on the live tensors of cut ``start``."""
        result = self.graph_module(*tensors)
        if self.out_spec is not None:
            return pytree.tree_unflatten(list(result), self.out_spec)
        return result

    def extra_repr(self) -> str:
        return f"layers {self.start + 1}..{self.end}"


def build_part(
    gm: fx.GraphModule,
    layers: LayerGraph,
    start: int,
    end: int,
    out_spec: Any = None,
    *,
    final: bool | None = None,
) -> Part:
    """Copy the nodes of layers ``start+1..end`` into a new graph module.

    A ``final`` part returns the model's output structure; any other returns
    the tuple of tensors live across cut ``end`` (by default a part is final
    when it ends at the last layer; a head cut there is not).
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for value in layers.live[start]:
        env[value] = graph.placeholder(value.name)

    def lookup(node: fx.Node) -> fx.Node:
        if node not in env and node.op == "get_attr":
            env[node] = graph.get_attr(str(node.target))
        return env[node]

    for node in layers.nodes:
        if start < layers.layer_of[node] <= end:
            env[node] = graph.node_copy(node, lookup)
    is_last = end == layers.count if final is None else final
    if is_last:
        graph.output(fx.map_arg(layers.output.args[0], lookup))
    else:
        graph.output(tuple(env[v] for v in layers.live[end]))
    module = fx.GraphModule(gm, graph, class_name=f"Part_{start}_{end}")
    return Part(
        module,
        start,
        end,
        tuple(v.name for v in layers.live[start]),
        tuple(v.name for v in layers.live[end]),
        out_spec if is_last else None,
    )
