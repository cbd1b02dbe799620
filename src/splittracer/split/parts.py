"""Build runnable parts of a captured graph: layers ``start+1 .. end``.

A part takes the tensors live across cut ``start`` as positional arguments
and returns the tensors live across cut ``end`` as a tuple — or, when it
ends at the last layer, the model's own output structure. Parameters are
shared with the captured model, never copied.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import torch
from torch import fx, nn
from torch.utils import _pytree as pytree

if TYPE_CHECKING:  # the eager engine's parts import this module, and layers imports capture
    from .layers import LayerGraph


class Part(nn.Module):
    """Layers ``start + 1 .. end`` of a split model, as a module.

    ``layers`` lists the layers it runs: every one of ``start + 1 .. end`` for
    a part between two cuts; a part of a placement may skip some of them.
    """

    def __init__(
        self,
        graph_module: fx.GraphModule,
        start: int,
        end: int,
        input_names: tuple[str, ...],
        output_names: tuple[str, ...],
        out_spec: Any = None,
        *,
        layers: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__()
        self.graph_module = graph_module
        self.start, self.end = start, end
        self.layers = tuple(range(start + 1, end + 1)) if layers is None else layers
        self.input_names, self.output_names = input_names, output_names
        self.out_spec = out_spec

    def forward(self, *tensors: torch.Tensor) -> Any:
        """Run the part on the tensors named by ``input_names``."""
        result = self.graph_module(*tensors)
        if self.out_spec is not None:
            return pytree.tree_unflatten(list(result), self.out_spec)
        return result

    def extra_repr(self) -> str:
        if self.layers == tuple(range(self.start + 1, self.end + 1)):
            return f"layers {self.start + 1}..{self.end}"
        return f"layers {compact(self.layers)}" if self.layers else "no layers"


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
    is_last = end == layers.count if final is None else final
    members = range(start + 1, end + 1)
    return build_layer_part(
        gm, layers, members, layers.live[start], layers.live[end], out_spec, final=is_last, span=(start, end)
    )


def build_layer_part(
    gm: fx.GraphModule,
    layers: LayerGraph,
    members: Collection[int],
    takes: tuple[fx.Node, ...],
    sends: tuple[fx.Node, ...],
    out_spec: Any = None,
    *,
    final: bool,
    span: tuple[int, int],
) -> Part:
    """Copy the nodes of the layers in ``members`` into a new graph module.

    The part takes the values ``takes`` as positional arguments and returns
    the tuple ``sends``, or the model's output structure when it is
    ``final``. Every value its layers read must be one of ``takes``, a parameter
    or made by one of ``members``: the caller checks that.
    """
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for value in takes:
        env[value] = graph.placeholder(value.name)

    def lookup(node: fx.Node) -> fx.Node:
        if node not in env and node.op == "get_attr":
            env[node] = graph.get_attr(str(node.target))
        return env[node]

    chosen = set(members)
    for node in layers.nodes:
        if layers.layer_of[node] in chosen:
            env[node] = graph.node_copy(node, lookup)
    if final:
        graph.output(fx.map_arg(layers.output.args[0], lookup))
    else:
        graph.output(tuple(env[v] for v in sends))
    start, end = span
    module = fx.GraphModule(gm, graph, class_name=f"Part_{start}_{end}")
    return Part(
        module,
        start,
        end,
        tuple(v.name for v in takes),
        tuple(v.name for v in sends),
        out_spec if final else None,
        layers=tuple(sorted(chosen)),
    )


def compact(indices: Collection[int]) -> str:
    """Layer indices as ranges: ``1-5,7,9-12``; none at all is ``0``, the input alone."""
    ordered = sorted(set(indices))
    runs: list[list[int]] = []
    for i in ordered:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs) or "0"
